"""The lease board shared by every worker that uses the same ``REDIS_URL`` (see ``board.py`` for
the protocol): each operation is one Lua script, run atomically inside Redis. Every Redis key
of the project is named in ``RedisKeys``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from indexer.lease.board import (
    DEFAULT_TTL,
    DONE_TTL,
    Holding,
    Lease,
    LeaseLost,
    new_token,
    ttl_of,
)
from indexer.types import BlockRange


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Every Redis key of the project (defined here and nowhere else): namespaced by the
    database's instance id, so databases sharing a Redis stay apart, then by chain."""

    namespace: str = ""

    @property
    def prefix(self) -> str:
        return f"indexer:{self.namespace}" if self.namespace else "indexer"

    def leases(self, chain: str, group: str) -> str:
        return f"{self.prefix}:{chain}:leases:{group}"

    def groups(self, chain: str) -> str:
        return f"{self.prefix}:{chain}:groups"

    def fence(self, chain: str) -> str:
        return f"{self.prefix}:{chain}:fence"

    def workers(self, chain: str) -> str:
        return f"{self.prefix}:{chain}:workers"

    def pattern(self, chain: str) -> str:
        return f"{self.prefix}:{chain}:*"


# An entry is "start end fence worker expires_ms done"; time is the server's (TIME).
_LUA_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function fields(v)
  local f = {}
  for x in string.gmatch(v, '%S+') do f[#f + 1] = x end
  return f
end
local function entry(s, e, fence, worker, expires, done)
  return string.format('%d %d %d %s %d %s', s, e, fence, worker, expires, done)
end
"""

_CLAIM = _LUA_COMMON + """
local ttl, size, worker, token = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local busy = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f = fields(all[i + 1])
  if tonumber(f[5]) <= now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    busy[#busy + 1] = {tonumber(f[1]), tonumber(f[2])}
  end
end
table.sort(busy, function(a, b) return a[1] < b[1] end)
for c = 5, #ARGV - 1, 2 do
  local start, last = tonumber(ARGV[c]), tonumber(ARGV[c + 1])
  for _, b in ipairs(busy) do
    if b[2] >= start then
      if b[1] <= start then start = b[2] + 1 else break end
    end
  end
  if start <= last then
    local e = math.min(last, start + size - 1)
    for _, b in ipairs(busy) do
      if b[1] > start and b[1] <= e then e = b[1] - 1; break end
    end
    local fence = redis.call('INCR', KEYS[2])
    redis.call('HSET', KEYS[1], token, entry(start, e, fence, worker, now + ttl, '0'))
    redis.call('PEXPIRE', KEYS[1], 86400000)
    redis.call('SADD', KEYS[3], ARGV[#ARGV])
    return {start, e, fence}
  end
end
return false
"""

_EXTEND = _LUA_COMMON + """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local f = fields(v)
if tonumber(f[5]) <= now or f[6] == '1' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], entry(f[1], f[2], f[3], f[4], now + tonumber(ARGV[2]), '0'))
return 1
"""

_RELEASE = _LUA_COMMON + """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local f = fields(v)
if ARGV[2] == '1' and tonumber(f[5]) > now then
  redis.call('HSET', KEYS[1], ARGV[1], entry(f[1], f[2], f[3], f[4], now + tonumber(ARGV[3]), '1'))
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""

_HEARTBEAT = _LUA_COMMON + """
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
  redis.call('PEXPIRE', KEYS[1], 86400000)
end
local alive = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) <= now then redis.call('HDEL', KEYS[1], all[i])
  else alive[#alive + 1] = all[i] end
end
return alive
"""

_LIVE = _LUA_COMMON + """
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f = fields(all[i + 1])
  if tonumber(f[5]) > now then out[#out + 1] = all[i + 1] end
end
return out
"""

_FORGET_DONE = _LUA_COMMON + """
local n = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f = fields(all[i + 1])
  if f[6] == '1' and tonumber(f[2]) > tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], all[i])
    n = n + 1
  end
end
return n
"""

_RAISE_FENCE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


class RedisLeaseBoard:
    """The board shared by every worker that uses the same ``REDIS_URL``."""

    def __init__(
        self, url: str, *, namespace: str = "", ttl: float = DEFAULT_TTL,
        done_ttl: float = DONE_TTL,
    ) -> None:
        import redis.asyncio as aioredis

        self.keys = RedisKeys(namespace)
        self.redis = aioredis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self.ttl_ms = int(ttl * 1000)
        self.done_ttl_ms = int(done_ttl * 1000)
        self._claim = self.redis.register_script(_CLAIM)
        self._extend = self.redis.register_script(_EXTEND)
        self._release = self.redis.register_script(_RELEASE)
        self._heartbeat = self.redis.register_script(_HEARTBEAT)
        self._live = self.redis.register_script(_LIVE)
        self._raise = self.redis.register_script(_RAISE_FENCE)
        self._forget_done = self.redis.register_script(_FORGET_DONE)

    async def claim(
        self, chain: str, group: str, candidates: Sequence[BlockRange], size: int, worker: str
    ) -> Lease | None:
        if not candidates:
            return None
        token = new_token()
        worker = _clean(worker)
        args: list[str | int] = [self._ttl_ms(group), max(1, size), worker, token]
        for c in candidates:
            args += [c.start, c.end]
        args.append(group)
        got = await self._claim(
            keys=[self.keys.leases(chain, group), self.keys.fence(chain), self.keys.groups(chain)],
            args=args,
        )
        if not got:
            return None
        start, end, fence = (int(x) for x in got)
        return Lease(chain, group, BlockRange(start, end), token, fence, worker)

    async def extend(self, lease: Lease) -> None:
        ok = await self._extend(keys=[self.keys.leases(lease.chain, lease.group)],
                                args=[lease.token, self._ttl_ms(lease.group)])
        if not ok:
            raise LeaseLost(f"lease on {lease.group} {lease.range} of {lease.chain} is lost")

    def _ttl_ms(self, group: str) -> int:
        return int(ttl_of(group, self.ttl_ms / 1000) * 1000)

    async def release(self, lease: Lease, done: bool) -> None:
        await self._release(keys=[self.keys.leases(lease.chain, lease.group)],
                            args=[lease.token, "1" if done else "0", self.done_ttl_ms])

    async def held(self, chain: str) -> list[Holding]:
        out: list[Holding] = []
        for group in await self._groups(chain):
            for v in await self._live(keys=[self.keys.leases(chain, group)], args=[]):
                s, e, fence, worker, _, done = bytes(v).decode().split()
                out.append(Holding(group, BlockRange(int(s), int(e)), worker, int(fence), done == "1"))
        return sorted(out, key=lambda h: (h.group, h.range))

    async def heartbeat(self, chain: str, worker: str) -> None:
        await self._heartbeat(keys=[self.keys.workers(chain)], args=[_clean(worker), self.ttl_ms])

    async def workers(self, chain: str) -> list[str]:
        alive = await self._heartbeat(keys=[self.keys.workers(chain)], args=["", 0])
        return sorted(w.decode() for w in alive if w)

    async def raise_fence(self, chain: str, floor: int) -> None:
        await self._raise(keys=[self.keys.fence(chain)], args=[floor])

    async def forget_done(self, chain: str, above: int) -> int:
        """Drop the done markers of ``chain`` reaching above block ``above`` (see
        ``MemoryLeaseBoard.forget_done``)."""
        dropped = 0
        for group in await self._groups(chain):
            dropped += int(await self._forget_done(
                keys=[self.keys.leases(chain, group)], args=[above]))
        return dropped

    async def _groups(self, chain: str) -> list[str]:
        return [g.decode() if isinstance(g, bytes) else g
                for g in await self.redis.smembers(self.keys.groups(chain))]

    async def forget(self, chain: str) -> int:
        """Delete every key of ``chain`` (after ``indexer reset``)."""
        keys = [k async for k in self.redis.scan_iter(self.keys.pattern(chain))]
        return int(await self.redis.delete(*keys)) if keys else 0

    async def close(self) -> None:
        await self.redis.aclose()


def _clean(worker: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.:@" else "_" for ch in worker) or "worker"
