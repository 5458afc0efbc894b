"""A fault-injecting JSON-RPC proxy in front of a node (anvil in tests), scriptable to answer the
way real providers fail.

    python -m tests.support.chaos --upstream http://127.0.0.1:8545 --port 8546 \
        [--fail 0.2] [--faults 429,5xx,timeout] [--latency 0.05] [--max-logs 10000] \
        [--max-range 2000 --shape alchemy] [--seed 1]

Faults, chosen per HTTP request (``script`` first, in order; then at random with probability
``rate`` among ``faults``):

- ``range``: when the request asks eth_getLogs over more than ``range_limit`` blocks, answer
  with a provider's "range too large" shape (``shapes``, cycled; see ``SHAPES``);
- ``429`` (with ``Retry-After``), ``429-bare`` (without), ``429-rpc`` (Infura's -32005 rate
  limit with ``data.backoff_seconds``);
- ``5xx``: HTTP 502/503; ``timeout``: hold the request ``hold`` seconds, then answer;
  ``truncated``: half the body; ``reset``: close the connection without an answer;
- ``empty``: pretend not to have the blocks from a random block of the requested range on:
  their logs are left out of eth_getLogs and their headers are null (a node behind a load
  balancer);
- ``bloom-lag``: leave out the logs of ``toBlock`` but answer its header (a node whose log index
  lags its headers);
- ``wrong-hash``: the logs of one block carry another blockHash (an answer from a stale fork);
- ``outside``: one more log, from the block after the range; ``foreign``: one log's address
  changed to one that was not asked for.

Standing conditions: ``latency`` seconds added to every request; ``max_logs``: an eth_getLogs
over several blocks with more logs is refused (Infura's shape with a hint); ``max_range`` with
``shape``: every eth_getLogs over more blocks is refused in that provider's shape; ``lag``:
eth_blockNumber, "latest" and headers pretend the head is ``lag`` blocks lower; ``syncing``:
eth_syncing says the node is still syncing; ``forge`` (block -> "data" or "topics"): the
logs of those blocks rewritten in eth_getLogs and in receipts alike, block hashes kept
(``forge.py``); ``no_block_receipts``: eth_getBlockReceipts is "method not found"; ``dead``: the
port refuses connections (``kill()``/``revive()``).

Standing lies of eth_getLogs answers: ``block_logs_cap``: an answer with more logs is refused
even for a single block (a block holding more matching logs than the provider serves);
``wrong_timestamps``: every log's ``blockTimestamp`` is off by a day; ``shared_log_index``: in
every block with several logs, the second one carries the first one's ``logIndex``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.support.forge import Rewrite, forge, refuse_block_receipts
from tests.support.services import free_port

# name -> (HTTP status, JSON-RPC code or None, message). {max}: the limit in blocks, {frm}/{to}:
# the requested range (decimal), {hlo}/{hhi}: a suggested range (hex).
SHAPES: dict[str, tuple[int, int | None, str]] = {
    "alchemy": (200, -32602, "Log response size exceeded. You can make eth_getLogs requests with "
                "up to a {max} block range and no limit on the response size, or you can "
                "receive unlimited logs within a 10K block range. Based on your parameters, "
                "this block range should work: [{hlo}, {hhi}]"),
    "infura": (200, -32005, "query returned more than 10000 results. Try with this block range "
               "[{hlo}, {hhi}]."),
    "infura-32602": (200, -32602, "query returned more than 10000 results. Try with this block "
                     "range [{hlo}, {hhi}]."),
    "quicknode": (200, -32614, "eth_getLogs is limited to a {max} range"),
    "quicknode-413": (413, None, "Request Entity Too Large"),
    "ankr": (200, -32600, "block range is too wide"),
    "blockpi": (200, -32000, "eth_getLogs is limited to {max} block range. Please check the "
                "parameter requirements at https://docs.blockpi.io/documentations/request-limit"),
    "chainstack": (200, -32000, "Block range limit exceeded."),
    "drpc": (200, 35, "ranges over {max} blocks are not supported on freetier"),
    "cloudflare": (200, -32047, "Max range: {max}"),
    "publicnode": (200, -32000, "exceed maximum block range: {max}"),
    "avalanche": (200, -32000, "requested too many blocks from {frm} to {to}, maximum is set to "
                  "{max}"),
    "base": (200, -32000, "block range too large"),
    "arbitrum": (200, -32000, "logs matched by query exceeds limit of 10000"),
    "results": (200, -32000, "query returned more than 10000 results"),
    "size": (200, -32000, "response size exceeded"),
}

FAULTS = ("range", "429", "429-bare", "429-rpc", "5xx", "timeout", "truncated", "reset",
          "empty", "bloom-lag", "wrong-hash", "outside", "foreign")


@dataclass
class Chaos:
    """What the proxy does; may be changed while it runs."""

    rate: float = 0.0
    faults: tuple[str, ...] = ()
    script: list[str] = field(default_factory=list)
    seed: int = 0
    shapes: tuple[str, ...] = tuple(SHAPES)
    range_limit: int = 4  # blocks over which the "range" fault refuses
    latency: float = 0.0
    max_logs: int | None = None
    max_range: int | None = None
    shape: str = "infura"
    lag: int = 0
    syncing: bool = False  # eth_syncing answers that the node is still syncing
    hold: float = 2.0  # seconds a "timeout" holds the request
    forge: dict[int, Rewrite] = field(default_factory=dict)  # block -> how its logs are rewritten
    no_block_receipts: bool = False  # eth_getBlockReceipts answered "method not found"
    retry_after: str = "1"
    block_logs_cap: int | None = None
    wrong_timestamps: bool = False
    shared_log_index: bool = False


class ChaosProxy:
    """Runs in a thread; use as a context manager. ``seen`` counts faults injected and
    ``methods`` the JSON-RPC calls forwarded."""

    def __init__(self, upstream: str, chaos: Chaos | None = None, port: int | None = None) -> None:
        self.upstream = upstream
        self.chaos = chaos or Chaos()
        self.port = port or free_port()
        self.seen: Counter[str] = Counter()
        self._owed: str | None = None  # a log rewrite chosen but not yet applied
        self.methods: Counter[str] = Counter()
        self.requests = 0
        self.dead = False
        self._rng = random.Random(self.chaos.seed)
        self._shapes = itertools.cycle(self.chaos.shapes)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> ChaosProxy:
        self._thread.start()
        self._run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def kill(self) -> None:
        """The endpoint dies: the port refuses connections and open ones are dropped."""
        self.dead = True
        self._run(self._close_site())

    def revive(self) -> None:
        self.dead = False
        self._run(self._open_site())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        app = web.Application(client_max_size=1 << 30)
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await self._open_site()

    async def _open_site(self) -> None:
        assert self._runner is not None
        if self._site is None:
            self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            await self._site.start()

    async def _close_site(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def _stop(self) -> None:
        await self._close_site()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- answering -------------------------------------------------------------------------

    def _choose(self) -> str | None:
        c = self.chaos
        if c.script:
            return c.script.pop(0)
        if c.faults and self._rng.random() < c.rate:
            return self._rng.choice(c.faults)
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.dead:  # a kept-alive connection of a dead endpoint: drop it
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        self.requests += 1
        c = self.chaos
        if c.latency:
            await asyncio.sleep(c.latency)
        try:
            raw = await request.read()
        except ConnectionResetError:  # the client went away during the latency (it stopped)
            return web.Response(status=499)
        body = orjson.loads(raw)
        calls = body if isinstance(body, list) else [body]
        for call in calls:
            self.methods[call.get("method", "")] += 1
        fault = self._choose()
        if fault in _LOG_REWRITES and not any(c.get("method") == "eth_getLogs" for c in calls):
            self._owed, fault = fault, None  # owed to the next eth_getLogs answer
        early = await self._early(fault, request, calls)
        if early is not None:
            return early
        replies = await self._forward(calls)
        rng = _logs_range(calls)
        cut = self._rng.randint(*rng) if fault == "empty" and rng is not None else None
        for call, reply in zip(calls, replies, strict=True):
            self._rewrite(call, reply, fault, cut)
        refusal = self._limits(calls, replies)
        if refusal is not None:
            return refusal
        out = orjson.dumps(replies if isinstance(body, list) else replies[0])
        if fault == "truncated":
            self.seen[fault] += 1
            out = out[: len(out) // 2]
        return web.Response(body=out, content_type="application/json")

    async def _early(
        self, fault: str | None, request: web.Request, calls: list[dict[str, Any]]
    ) -> web.StreamResponse | None:
        """Faults answered without asking upstream."""
        c = self.chaos
        if fault is None:
            return None
        if fault == "range":
            rng = _logs_range(calls)
            if rng is None or rng[1] - rng[0] + 1 <= c.range_limit:
                return None
            self.seen[fault] += 1
            return _shape(next(self._shapes), rng, c.range_limit)
        if fault in ("429", "429-bare"):
            self.seen[fault] += 1
            headers = {"Retry-After": c.retry_after} if fault == "429" else {}
            return web.Response(status=429, text="Too Many Requests", headers=headers)
        if fault == "429-rpc":
            self.seen[fault] += 1
            error = {"code": -32005, "message": "project ID request rate exceeded",
                     "data": {"see": "https://infura.io/docs/ethereum/jsonrpc/ratelimits",
                              "current_rps": 13.3, "allowed_rps": 10.0, "backoff_seconds": 0.2}}
            return _errors(calls, error)
        if fault == "5xx":
            self.seen[fault] += 1
            return web.Response(status=self._rng.choice([502, 503]), text="upstream unavailable")
        if fault == "timeout":
            self.seen[fault] += 1
            await asyncio.sleep(c.hold)
            return None
        if fault == "reset":
            self.seen[fault] += 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)  # never sent: the connection is gone
        return None

    async def _forward(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert self._session is not None
        c = self.chaos
        head = await self._head() - c.lag if c.lag else 0
        sent = [_lag_request(call, head) for call in calls] if c.lag else calls
        async with self._session.post(self.upstream, data=orjson.dumps(sent),
                                      headers={"content-type": "application/json"}) as r:
            replies: list[dict[str, Any]] = orjson.loads(await r.read())
        by_id = {reply.get("id"): reply for reply in replies}
        ordered = [by_id[call.get("id")] for call in calls]
        if c.lag:
            for call, reply in zip(calls, ordered, strict=True):
                _lag(call, reply, head)
        for call, reply in zip(calls, ordered, strict=True):
            if c.no_block_receipts and refuse_block_receipts(call, reply):
                self.seen["no_block_receipts"] += 1
            elif c.forge:
                self.seen["forge"] += forge(call, reply, c.forge)
        if c.syncing:
            for call, reply in zip(calls, ordered, strict=True):
                if call.get("method") == "eth_syncing":
                    reply["result"] = {"startingBlock": "0x0", "currentBlock": hex(max(0, head)),
                                       "highestBlock": hex(max(0, head + c.lag))}
        return ordered

    async def _head(self) -> int:
        assert self._session is not None
        async with self._session.post(self.upstream, data=orjson.dumps(
                {"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber", "params": []}),
                headers={"content-type": "application/json"}) as r:
            return int(orjson.loads(await r.read())["result"], 16)

    def _rewrite(
        self, call: dict[str, Any], reply: dict[str, Any], fault: str | None, cut: int | None
    ) -> None:
        method = call.get("method")
        logs = reply.get("result")
        if method == "eth_getLogs" and isinstance(logs, list):
            self._standing_lies(logs)
            if fault == "empty" and cut is not None:
                self.seen[fault] += 1
                reply["result"] = [lg for lg in logs if int(lg["blockNumber"], 16) < cut]
            else:
                # A rewrite chosen for an answer it cannot apply to (no logs, no log in the
                # last block) is owed to the next eth_getLogs answer, so a chosen fault is
                # always injected sooner or later.
                if fault is None and self._owed is not None:
                    fault = self._owed
                applied = self._rewrite_logs(call, reply, logs, fault)
                if fault in _LOG_REWRITES:
                    self._owed = None if applied else fault
        elif method == "eth_getBlockByNumber" and cut is not None:
            number = call["params"][0]
            if number.startswith("0x") and int(number, 16) >= cut:
                reply["result"] = None

    def _standing_lies(self, logs: list[dict[str, Any]]) -> None:
        c = self.chaos
        if c.wrong_timestamps:
            for lg in logs:
                ts = lg.get("blockTimestamp")
                if isinstance(ts, str):
                    self.seen["wrong_timestamps"] += 1
                    lg["blockTimestamp"] = hex(int(ts, 16) + 86_400)
        if c.shared_log_index:
            for i in range(1, len(logs)):  # the second log of a block takes the first's index
                bn = logs[i]["blockNumber"]
                if logs[i - 1]["blockNumber"] == bn and (i < 2 or logs[i - 2]["blockNumber"] != bn):
                    self.seen["shared_log_index"] += 1
                    logs[i]["logIndex"] = logs[i - 1]["logIndex"]

    def _rewrite_logs(
        self, call: dict[str, Any], reply: dict[str, Any], logs: list[dict[str, Any]],
        fault: str | None,
    ) -> bool:
        _, hi = _logs_range([call]) or (0, 0)
        if fault == "bloom-lag" and any(int(lg["blockNumber"], 16) == hi for lg in logs):
            reply["result"] = [lg for lg in logs if int(lg["blockNumber"], 16) != hi]
        elif fault == "wrong-hash" and logs:
            victim = logs[self._rng.randrange(len(logs))]["blockNumber"]
            for lg in logs:
                if lg["blockNumber"] == victim:
                    lg["blockHash"] = "0x" + "ee" * 32
        elif fault == "outside" and logs:
            logs.append({**logs[-1], "blockNumber": hex(hi + 1), "logIndex": "0x0"})
        elif fault == "foreign" and logs:
            logs[self._rng.randrange(len(logs))]["address"] = "0x" + "de" * 20
        else:
            return False
        self.seen[fault] += 1
        return True

    def _limits(
        self, calls: list[dict[str, Any]], replies: list[dict[str, Any]]
    ) -> web.Response | None:
        """The standing limits of a provider: logs per answer and blocks per request."""
        c = self.chaos
        for call, reply in zip(calls, replies, strict=True):
            rng = _logs_range([call])
            logs = reply.get("result")
            if (rng is not None and c.block_logs_cap is not None and isinstance(logs, list)
                    and len(logs) > c.block_logs_cap):
                self.seen["block_logs_cap"] += 1
                return _shape("results", rng, c.block_logs_cap)
            if rng is None or rng[0] == rng[1]:
                continue
            if c.max_range is not None and rng[1] - rng[0] + 1 > c.max_range:
                self.seen["max_range"] += 1
                return _shape(c.shape, rng, c.max_range)
            logs = reply.get("result")
            if c.max_logs is not None and isinstance(logs, list) and len(logs) > c.max_logs:
                self.seen["max_logs"] += 1
                last_ok = int(logs[c.max_logs]["blockNumber"], 16) - 1
                hint = (rng[0], max(rng[0], last_ok))
                return _shape("infura", rng, hint[1] - hint[0] + 1)
        return None


_LOG_REWRITES = ("bloom-lag", "wrong-hash", "outside", "foreign")


def _logs_range(calls: list[dict[str, Any]]) -> tuple[int, int] | None:
    for call in calls:
        if call.get("method") == "eth_getLogs":
            flt = call["params"][0]
            return int(flt["fromBlock"], 16), int(flt["toBlock"], 16)
    return None


def _shape(name: str, rng: tuple[int, int], limit: int) -> web.Response:
    status, code, template = SHAPES[name]
    frm, to = rng
    limit = max(1, limit)
    message = template.format(max=f"{limit:,}", frm=frm, to=to, hlo=hex(frm),
                              hhi=hex(min(to, frm + limit - 1)))
    if code is None:
        return web.Response(status=status, text=message)
    doc = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")


def _errors(calls: list[dict[str, Any]], error: dict[str, Any]) -> web.Response:
    replies = [{"jsonrpc": "2.0", "id": call.get("id"), "error": error} for call in calls]
    body = replies if len(calls) > 1 else replies[0]
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _lag_request(call: dict[str, Any], head: int) -> dict[str, Any]:
    """The call as a node whose head is ``head`` would see it: "latest" means ``head``."""
    params = call.get("params") or []
    if call.get("method") == "eth_getBlockByNumber" and params and params[0] in (
            "latest", "safe", "finalized"):
        return {**call, "params": [hex(max(0, head)), *params[1:]]}
    return call


def _lag(call: dict[str, Any], reply: dict[str, Any], head: int) -> None:
    method, params = call.get("method"), call.get("params") or []
    if method == "eth_blockNumber":
        reply["result"] = hex(max(0, head))
    elif method == "eth_getBlockByNumber" and params:
        ref = params[0]
        if ref.startswith("0x") and int(ref, 16) > head:
            reply["result"] = None
    elif method == "eth_getLogs" and isinstance(reply.get("result"), list):
        reply["result"] = [lg for lg in reply["result"] if int(lg["blockNumber"], 16) <= head]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/rpc-chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="the node to put faults in front of")
    p.add_argument("--port", type=int, default=8546)
    p.add_argument("--fail", type=float, default=0.0, help="share of requests that fail")
    p.add_argument("--faults", default=",".join(FAULTS), help=f"among {','.join(FAULTS)}")
    p.add_argument("--shapes", default=",".join(SHAPES), help="range shapes to cycle")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    p.add_argument("--max-logs", type=int, default=None, help="logs per eth_getLogs at most")
    p.add_argument("--max-range", type=int, default=None, help="blocks per eth_getLogs at most")
    p.add_argument("--shape", default="infura", choices=sorted(SHAPES),
                   help="how --max-range refusals look")
    p.add_argument("--lag", type=int, default=0, help="blocks the head pretends to lag")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    chaos = Chaos(rate=a.fail, faults=tuple(f for f in a.faults.split(",") if f),
                  shapes=tuple(s for s in a.shapes.split(",") if s), seed=a.seed,
                  latency=a.latency, max_logs=a.max_logs, max_range=a.max_range, shape=a.shape,
                  lag=a.lag)
    with ChaosProxy(a.upstream, chaos, a.port) as proxy:
        print(f"rpc-chaos: {proxy.url} -> {a.upstream}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        print(f"rpc-chaos: {proxy.requests} requests, faults {dict(proxy.seen)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
