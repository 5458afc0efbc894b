"""What ``indexer chain add`` asks of the endpoints: the chain id (all must agree), the block
time from recent headers, the ``finalized`` and ``safe`` tags, the largest ``eth_getLogs``
range and JSON-RPC batch each accepts, and whether a websocket takes ``eth_subscribe``.

Each probe is one plain request (no retries: a refusal is the answer), its body built by the
same envelope as every other request (``rpc.wire``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from indexer.rpc import wire
from indexer.rpc.transport import endpoint_label

LOG_RANGES = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)
BATCH_SIZES = (10, 25, 50, 100)
HEADER_SAMPLE = 100  # blocks back from the head used to measure the block time
PLACEHOLDER_ADDRESS = "0x0000000000000000000000000000000000000000"


class ProbeError(RuntimeError):
    pass


@dataclass(slots=True)
class Probe:
    """What the endpoints answered."""

    chain_id: int
    head: int
    block_time: float | None  # seconds, from recent headers; None when they cannot tell
    sample_blocks: int  # headers spanned by the measurement
    finalized: int | None  # block number of the `finalized` tag; None: not supported
    safe: int | None
    logs_range: dict[str, int | None] = field(default_factory=dict)  # label -> largest range
    logs_refusal: dict[str, str] = field(default_factory=dict)  # label -> first refusal
    batch: dict[str, int | None] = field(default_factory=dict)  # label -> largest batch size
    ws: str | None = None  # outcome of the websocket check, None when not asked
    ws_url: str | None = None  # the websocket endpoint, when newHeads works there


class _Rpc:
    def __init__(self, session: aiohttp.ClientSession, url: str, label: str) -> None:
        self.session, self.url, self.label = session, url, label

    async def post(self, body: Any, timeout: float = 20.0) -> Any:
        try:
            async with self.session.post(self.url, data=orjson.dumps(body),
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                raw = await r.read()
                if r.status >= 400:
                    raise ProbeError(f"{self.label}: HTTP {r.status} {_short(raw)}")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise ProbeError(f"{self.label}: unreachable ({type(e).__name__})") from None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProbeError(f"{self.label}: not a JSON-RPC answer: {_short(raw)}") from None

    async def call(self, method: str, params: list[Any], timeout: float = 20.0) -> Any:
        reply = await self.post(wire.request(1, method, params), timeout)
        if not isinstance(reply, dict):
            raise ProbeError(f"{self.label}: {method}: unexpected answer {_short(reply)}")
        if reply.get("error") is not None:
            raise ProbeError(f"{self.label}: {method}: {_short(reply['error'])}")
        return reply.get("result")


def _short(value: Any) -> str:
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    text = " ".join(text.split())
    return text[:160] + ("..." if len(text) > 160 else "")


async def probe_endpoints(urls: list[str], ws: str | None) -> Probe:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as session:
        rpcs = [_Rpc(session, u, endpoint_label(u, i)) for i, u in enumerate(urls)]
        ids = [int(await r.call("eth_chainId", []), 16) for r in rpcs]
        if len(set(ids)) > 1:
            seen = ", ".join(f"{r.label}: {i}" for r, i in zip(rpcs, ids, strict=True))
            raise ProbeError(f"the endpoints serve different chains ({seen})")
        first = rpcs[0]
        head = int(await first.call("eth_blockNumber", []), 16)
        block_time, sample = await _block_time(first, head)
        probe = Probe(
            chain_id=ids[0], head=head, block_time=block_time, sample_blocks=sample,
            finalized=await _tag(first, "finalized"), safe=await _tag(first, "safe"),
        )
        for r in rpcs:
            probe.logs_range[r.label], refusal = await _largest_logs_range(r, head)
            if refusal:
                probe.logs_refusal[r.label] = refusal
            probe.batch[r.label] = await _largest_batch(r)
    if ws is not None:
        probe.ws = await _probe_ws(ws, probe.chain_id)
        if probe.ws.endswith("newHeads works"):
            probe.ws_url = ws
    return probe


async def _header(rpc: _Rpc, tag: str) -> dict[str, Any] | None:
    block = await rpc.call("eth_getBlockByNumber", [tag, False])
    return block if isinstance(block, dict) else None


async def _block_time(rpc: _Rpc, head: int) -> tuple[float | None, int]:
    back = min(head, HEADER_SAMPLE)
    if back < 1:
        return None, 0
    newest = await _header(rpc, hex(head))
    oldest = await _header(rpc, hex(head - back))
    if newest is None or oldest is None:
        return None, 0
    seconds = int(newest["timestamp"], 16) - int(oldest["timestamp"], 16)
    return (seconds / back if seconds > 0 else None), back


async def _tag(rpc: _Rpc, tag: str) -> int | None:
    try:
        block = await _header(rpc, tag)
    except ProbeError:
        return None
    return int(block["number"], 16) if block is not None else None


async def _largest_logs_range(rpc: _Rpc, head: int) -> tuple[int | None, str]:
    """The largest range in LOG_RANGES an eth_getLogs over the newest blocks is answered for
    (filtered by an address that emits nothing, so the answer is empty when accepted)."""
    best: int | None = None
    for size in LOG_RANGES:
        size = min(size, head + 1)
        params = [{"fromBlock": hex(head - size + 1), "toBlock": hex(head),
                   "address": PLACEHOLDER_ADDRESS}]
        try:
            await rpc.call("eth_getLogs", params, timeout=30.0)
        except ProbeError as e:
            return best, f"{size:,} blocks: {str(e).split(': ', 2)[-1]}"
        best = size
        if size == head + 1:
            break
    return best, ""


async def _largest_batch(rpc: _Rpc) -> int | None:
    best: int | None = None
    for size in BATCH_SIZES:
        body = [wire.request(i, "eth_chainId", []) for i in range(size)]
        try:
            reply = await rpc.post(body)
        except ProbeError:
            break
        if not (isinstance(reply, list) and len(reply) == size
                and all(isinstance(x, dict) and x.get("error") is None for x in reply)):
            break
        best = size
    return best


async def _probe_ws(url: str, chain_id: int) -> str:
    label = endpoint_label(url, 0)
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(
            url, timeout=aiohttp.ClientWSTimeout(ws_close=10.0)) as ws:
            await ws.send_bytes(wire.encode(1, "eth_chainId", []))
            got = await ws.receive_json(timeout=10)
            if int(got.get("result", "0x0"), 16) != chain_id:
                return f"{label}: serves chain id {got.get('result')}, not {chain_id}"
            await ws.send_bytes(wire.encode(2, "eth_subscribe", ["newHeads"]))
            got = await ws.receive_json(timeout=10)
            if got.get("error") is not None:
                return f"{label}: eth_subscribe refused: {_short(got['error'])}"
            return f"{label}: eth_subscribe newHeads works"
    except (aiohttp.ClientError, TimeoutError, ValueError, TypeError) as e:
        return f"{label}: failed ({type(e).__name__})"
