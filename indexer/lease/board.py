"""The lease board: which worker works on which blocks right now.

A lease covers an inclusive block range of one *group* of a chain (the main sources, or the
children of one factory). Claiming is atomic: the board picks the first blocks of the caller's
candidate ranges that no live lease or recent-done marker covers, and leases at most ``size`` of
them. A lease carries a random token, a TTL renewed by heartbeats, and a fencing token that only
grows. Extend and release act only while the token still matches; a lost lease raises LeaseLost
and the worker drops that unit without committing.

The board only coordinates: Postgres (``indexer.ranges``) stays the record of what is done, and
its overlap check refuses a second commit of any block, so a board that lost everything (Redis
FLUSHALL or restart) costs at most some repeated fetching, never a row.

Three implementations: ``MemoryLeaseBoard`` (one process, here), ``RedisLeaseBoard`` (many
processes and hosts, scripts run atomically inside Redis: ``redis.py``) and ``HttpLeaseBoard``
(the workers of one ``--workers`` parent, which serves its memory board: ``http.py``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from indexer.types import BlockRange

DEFAULT_TTL = 30.0  # seconds; heartbeats renew every TTL / 3
DONE_TTL = 15.0  # seconds a released range stays marked done, while workers refresh their plans
LIVE_GROUP = "live"  # the group of the live follower's leadership lease (one block: 0)
LIVE_TTL = 6.0  # a short TTL: another process takes the live tail over within seconds


def ttl_of(group: str, ttl: float) -> float:
    """The TTL of a lease of ``group`` on a board whose TTL is ``ttl``."""
    return min(ttl, LIVE_TTL) if group == LIVE_GROUP else ttl


class LeaseLost(Exception):
    """The lease expired or was taken over: the unit must not be committed."""


@dataclass(frozen=True, slots=True)
class Lease:
    chain: str
    group: str
    range: BlockRange
    token: str
    fence: int
    worker: str


@dataclass(frozen=True, slots=True)
class Holding:
    """One entry of the board, as ``held`` reports it."""

    group: str
    range: BlockRange
    worker: str
    fence: int
    done: bool


class LeaseBoard(Protocol):
    async def claim(
        self, chain: str, group: str, candidates: Sequence[BlockRange], size: int, worker: str
    ) -> Lease | None: ...

    async def extend(self, lease: Lease) -> None: ...

    async def release(self, lease: Lease, done: bool) -> None: ...

    async def held(self, chain: str) -> list[Holding]: ...

    async def heartbeat(self, chain: str, worker: str) -> None: ...

    async def workers(self, chain: str) -> list[str]: ...

    async def raise_fence(self, chain: str, floor: int) -> None: ...

    async def forget_done(self, chain: str, above: int) -> int: ...

    async def close(self) -> None: ...


def pick(
    busy: Sequence[tuple[int, int]], candidates: Sequence[BlockRange], size: int
) -> BlockRange | None:
    """The first run of at most ``size`` blocks inside ``candidates`` (in order) that overlaps
    no ``busy`` interval (inclusive). Pure; the Redis script implements the same walk."""
    spans = sorted(busy)
    for cand in candidates:
        start = cand.start
        for s, e in spans:
            if e < start:
                continue
            if s <= start:
                start = e + 1
                continue
            break
        if start > cand.end:
            continue
        end = min(cand.end, start + max(1, size) - 1)
        for s, _ in spans:
            if start < s <= end:
                end = s - 1
                break
        return BlockRange(start, end)
    return None


def new_token() -> str:
    return secrets.token_hex(16)


@dataclass
class _Entry:
    start: int
    end: int
    token: str
    fence: int
    worker: str
    expires: float
    done: bool = False


@dataclass
class MemoryLeaseBoard:
    """The board of one process (no ``REDIS_URL``). ``clock`` is injectable for tests."""

    ttl: float = DEFAULT_TTL
    done_ttl: float = DONE_TTL
    clock: Callable[[], float] = time.monotonic
    _entries: dict[tuple[str, str], dict[str, _Entry]] = field(default_factory=dict)
    _fence: dict[str, int] = field(default_factory=dict)
    _workers: dict[str, dict[str, float]] = field(default_factory=dict)

    def _live(self, chain: str, group: str) -> dict[str, _Entry]:
        entries = self._entries.setdefault((chain, group), {})
        now = self.clock()
        for token in [t for t, e in entries.items() if e.expires <= now]:
            del entries[token]
        return entries

    async def claim(
        self, chain: str, group: str, candidates: Sequence[BlockRange], size: int, worker: str
    ) -> Lease | None:
        entries = self._live(chain, group)
        got = pick([(e.start, e.end) for e in entries.values()], candidates, size)
        if got is None:
            return None
        fence = self._fence.get(chain, 0) + 1
        self._fence[chain] = fence
        token = new_token()
        entries[token] = _Entry(got.start, got.end, token, fence, worker,
                                self.clock() + ttl_of(group, self.ttl))
        return Lease(chain, group, got, token, fence, worker)

    async def extend(self, lease: Lease) -> None:
        entry = self._live(lease.chain, lease.group).get(lease.token)
        if entry is None or entry.done:
            raise LeaseLost(f"lease on {lease.group} {lease.range} of {lease.chain} is lost")
        entry.expires = self.clock() + ttl_of(lease.group, self.ttl)

    async def release(self, lease: Lease, done: bool) -> None:
        entries = self._live(lease.chain, lease.group)
        entry = entries.get(lease.token)
        if entry is None:
            return
        if done:
            entry.done = True
            entry.expires = self.clock() + self.done_ttl
        else:
            del entries[lease.token]

    async def held(self, chain: str) -> list[Holding]:
        out = []
        for (c, group) in list(self._entries):
            if c != chain:
                continue
            for e in self._live(c, group).values():
                out.append(Holding(group, BlockRange(e.start, e.end), e.worker, e.fence, e.done))
        return sorted(out, key=lambda h: (h.group, h.range))

    async def heartbeat(self, chain: str, worker: str) -> None:
        self._workers.setdefault(chain, {})[worker] = self.clock() + self.ttl

    async def workers(self, chain: str) -> list[str]:
        now = self.clock()
        return sorted(w for w, t in self._workers.get(chain, {}).items() if t > now)

    async def raise_fence(self, chain: str, floor: int) -> None:
        self._fence[chain] = max(self._fence.get(chain, 0), floor)

    async def forget_done(self, chain: str, above: int) -> int:
        """Drop the done markers of ``chain`` reaching above block ``above`` (a reorg repair
        deleted those blocks' rows): their blocks can be claimed again at once."""
        dropped = 0
        for (c, group) in list(self._entries):
            if c != chain:
                continue
            entries = self._live(c, group)
            for token in [t for t, e in entries.items() if e.done and e.end > above]:
                del entries[token]
                dropped += 1
        return dropped

    async def close(self) -> None:
        return None
