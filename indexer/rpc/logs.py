"""eth_getLogs for the client: range splitting and checks on every answer.

An eth_getLogs answer is accepted only if every log lies in the range and matches the filter,
the header of ``toBlock`` (asked in the same JSON-RPC batch) exists, the blockHash of every
block holding logs equals the canonical header's hash, and ``toBlock`` holds no log although its
logsBloom says it may, unless its receipts (eth_getBlockReceipts) confirm that no log matches:
blooms have false positives (a node that does not serve receipts: accepted after
``BLOOM_RETRIES`` like answers).

A range over an endpoint's cap is split before asking; a refused one is split as the error
hints, else in halves. Requests, retries and failover are the request layer's (``request.py``); the
range arithmetic and filter matching here are pure functions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from indexer import metrics
from indexer.rpc import bloom, wire
from indexer.rpc.errors import (
    BadAnswer,
    MethodUnsupported,
    NodeBehind,
    RangeTooLarge,
    RpcError,
    RpcFatal,
    RpcServerError,
    classify,
)
from indexer.rpc.request import Requester
from indexer.rpc.transport import Endpoint, result_of
from indexer.types import BlockHeader, BlockRange, RawLog

log = logging.getLogger(__name__)

LOGS_CONCURRENCY = 16  # eth_getLogs requests in flight per client while splitting ranges
MAX_HINT_PARTS = 16  # split a refused range into hint-sized parts only up to this many
BLOOM_RETRIES = 2  # a bloom that says "maybe" against an empty answer is asked again this often
HASH_RETRIES = 2  # answers whose blockHash differs from the canonical header, asked again

# logs, block -> hash, toBlock header, label of the endpoint that answered
_Part = tuple[list[RawLog], dict[int, str], BlockHeader, str]


@dataclass(slots=True)
class LogsAnswer:
    """A checked eth_getLogs answer: the logs in (blockNumber, logIndex) order and the
    canonical headers of every block holding one of them (plus the ``toBlock`` of each
    request), whose hashes the logs' blockHash matched."""

    logs: list[RawLog]
    headers: dict[int, BlockHeader]


@dataclass(frozen=True, slots=True)
class _Filter:
    params: dict[str, Any]
    addresses: frozenset[str] | None
    topic0s: frozenset[str] | None
    address_bytes: tuple[bytes, ...] | None
    topic_bytes: tuple[bytes, ...] | None


class _OverCap(Exception):  # noqa: N818  (a signal, not an error)
    """The range is over what the chosen endpoint accepts: split it before asking."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


Headers = Callable[[Sequence[int]], Awaitable[dict[int, BlockHeader]]]


class LogsReader:
    """The eth_getLogs path of one client: its requests, retries and endpoints are those of
    ``requests``; ``headers`` fetches canonical headers (``RpcClient.get_headers``)."""

    def __init__(self, requests: Requester, headers: Headers) -> None:
        self._requests = requests
        self._headers = headers
        self._slots = asyncio.Semaphore(LOGS_CONCURRENCY)

    async def checked(
        self, rng: BlockRange, addresses: Sequence[str] | None, topic0s: Sequence[str] | None,
        *, tip: BlockHeader | None = None,
    ) -> LogsAnswer:
        """``RpcClient.get_logs_checked``: the logs of ``rng`` with the canonical headers of
        the blocks holding them, every blockHash checked against them."""
        flt = _filter(addresses, topic0s)
        for attempt in range(HASH_RETRIES + 1):
            parts = await self._logs(rng, flt, tip if attempt == 0 else None)
            logs = parts[0][0] if len(parts) == 1 else [lg for p in parts for lg in p[0]]
            blocks: dict[int, str] = {}
            answered: dict[int, str] = {}  # block -> the endpoint whose answer holds it
            headers: dict[int, BlockHeader] = {}
            for _, held, tip, label in parts:
                blocks.update(held)
                answered.update(dict.fromkeys(held, label))
                headers[tip.number] = tip
            missing = [n for n in blocks if n not in headers]
            if missing:
                headers.update(await self._headers(missing))
            wrong = [n for n, h in blocks.items() if _hash_hex(headers[n]) != h.lower()]
            if not wrong:
                return LogsAnswer(logs, headers)
            metrics.RPC_ANSWER_REJECTED.labels(
                chain=self._requests.chain, endpoint=answered[wrong[0]], reason="block_hash").inc()
            log.warning("%s: eth_getLogs %s: blockHash of block %d differs from the canonical "
                        "header (attempt %d); asking again", self._requests.chain, rng, wrong[0],
                        attempt + 1)
        raise BadAnswer(f"blockHash of block {wrong[0]} differs from the canonical header "
                        f"after {HASH_RETRIES + 1} attempts", method="eth_getLogs",
                        what=str(rng), reason="block_hash")

    async def _logs(
        self, rng: BlockRange, flt: _Filter, known: BlockHeader | None = None
    ) -> list[_Part]:
        """Answers for consecutive parts of ``rng``: (logs, block -> hash, toBlock header)."""
        try:
            async with self._slots:
                return [await self._logs_once(rng, flt, known)]
        except _OverCap as e:
            parts = _parts(rng, e.size)
        except RangeTooLarge as e:
            if len(rng) == 1:
                raise RpcFatal(f"a single block is too large to fetch: {e.detail}",
                               endpoint=e.endpoint, method=e.method, what=e.what) from e
            parts = _split(rng, e.hint)
        answers = await asyncio.gather(
            *(self._logs(p, flt, known if p.end == rng.end else None) for p in parts))
        return [part for answer in answers for part in answer]

    async def _logs_once(
        self, rng: BlockRange, flt: _Filter, known: BlockHeader | None = None
    ) -> _Part:
        params = [{**flt.params, "fromBlock": hex(rng.start), "toBlock": hex(rng.end)}]
        tip_params = [hex(rng.end), False]
        laggards = [0]  # answers refused on the bloom so far

        async def attempt(ep: Endpoint) -> _Part:
            cap = ep.state.ranges.cap
            if cap is not None and len(rng) > cap:
                raise _OverCap(cap)
            if known is not None and known.number == rng.end:
                tip_raw, logs = None, await self._requests.single(ep, "eth_getLogs", params, rng)
            elif ep.batch_logs:
                tip_raw, logs = await self._logs_batch(ep, params, tip_params, rng)
            else:
                tip_raw, logs = await asyncio.gather(
                    self._requests.single(ep, "eth_getBlockByNumber", tip_params, None),
                    self._requests.single(ep, "eth_getLogs", params, rng))
            blocks = wire.check_logs(logs, rng, flt.addresses, flt.topic0s)
            if known is not None and known.number == rng.end:
                tip = known
            else:
                if tip_raw is None:
                    raise NodeBehind(f"the node has no block {rng.end} yet")
                tip = wire.parse_header(tip_raw)
                if tip.number != rng.end:
                    raise BadAnswer(f"asked for block {rng.end}, got block {tip.number}")
            seen = blocks.get(rng.end)
            if seen is not None and seen.lower() != _hash_hex(tip):
                raise BadAnswer(f"blockHash of block {rng.end} differs from its header",
                                reason="block_hash")
            if (
                seen is None and tip.logs_bloom is not None
                and bloom.may_match(tip.logs_bloom, flt.address_bytes, flt.topic_bytes)
                and not await self._confirmed_empty(ep, tip, flt, laggards)
            ):
                err = NodeBehind(f"no log in block {rng.end} although its logsBloom says it "
                                 "may hold one (a lagging node?)")
                err.reason = "bloom"
                raise err
            ep.state.ranges.on_ok(len(rng), len(logs))
            self._requests.gauge_range(ep)
            return logs, blocks, tip, ep.label

        result: _Part = await self._requests.retrying(
            "eth_getLogs", str(rng), attempt, requested=rng)
        return result

    async def _confirmed_empty(
        self, ep: Endpoint, tip: BlockHeader, flt: _Filter, laggards: list[int]
    ) -> bool:
        """Whether ``tip`` truly holds no matching log although its bloom says "maybe" (blooms
        have false positives): its receipts say so. Where eth_getBlockReceipts is not served,
        an empty answer is accepted after BLOOM_RETRIES asks."""
        if ep.receipts:
            try:
                receipts = await self._requests.single(
                    ep, "eth_getBlockReceipts", [hex(tip.number)], None)
            except (MethodUnsupported, RpcFatal):
                ep.receipts = False
            except RpcError:
                return False  # ask again
            else:
                if isinstance(receipts, list):
                    return not any(_matches(lg, flt) for rc in receipts if isinstance(rc, dict)
                                   for lg in rc.get("logs") or ()
                                   if lg.get("blockHash", "").lower() == _hash_hex(tip))
        laggards[0] += 1
        return laggards[0] > BLOOM_RETRIES

    async def _logs_batch(
        self, ep: Endpoint, params: list[Any], tip_params: list[Any], rng: BlockRange
    ) -> tuple[Any, Any]:
        """eth_getBlockByNumber(toBlock) and eth_getLogs in one batch (the logs last, so a large
        answer is parsed in slices)."""
        ids = (self._requests.next_id(), self._requests.next_id())
        body = wire.encode_batch([(ids[0], "eth_getBlockByNumber", tip_params),
                                  (ids[1], "eth_getLogs", params)])
        doc = await self._requests.post(ep, body, rng)
        if type(doc) is dict and "error" in doc:  # the whole batch was refused
            err = classify(200, doc["error"], None, None, requested=rng)
            if not err.retryable or isinstance(err, RpcServerError):
                ep.batch_logs = False  # this endpoint takes no batches: ask one by one
                raise RpcServerError(f"batch refused ({err.detail}); asking without batches")
            raise err
        replies = wire.check_batch_answer(doc, ids)
        return result_of(replies[ids[0]], None), result_of(replies[ids[1]], rng)


def _filter(addresses: Sequence[str] | None, topic0s: Sequence[str] | None) -> _Filter:
    params: dict[str, Any] = {}
    if addresses is not None:
        params["address"] = list(addresses)
    if topic0s is not None:
        params["topics"] = [list(topic0s)]
    addrs = None if addresses is None else frozenset(a.lower() for a in addresses)
    topics = None if topic0s is None else frozenset(t.lower() for t in topic0s)
    return _Filter(
        params, addrs, topics,
        None if addrs is None else tuple(bytes.fromhex(a[2:]) for a in addrs),
        None if topics is None else tuple(bytes.fromhex(t[2:]) for t in topics),
    )


def _matches(lg: Any, flt: _Filter) -> bool:
    if not isinstance(lg, dict):
        return False
    addr, topics = str(lg.get("address", "")).lower(), lg.get("topics") or []
    if flt.addresses is not None and addr not in flt.addresses:
        return False
    return flt.topic0s is None or bool(topics) and str(topics[0]).lower() in flt.topic0s


def _hash_hex(header: BlockHeader) -> str:
    return "0x" + header.hash.hex()


def _parts(rng: BlockRange, size: int) -> list[BlockRange]:
    """``rng`` in pieces of ``size`` blocks; past MAX_HINT_PARTS pieces, in MAX_HINT_PARTS
    pieces that are multiples of ``size`` (each split again when asked)."""
    count = -(-len(rng) // size)
    if count <= MAX_HINT_PARTS:
        return list(rng.chunks(size))
    return list(rng.chunks(size * -(-count // MAX_HINT_PARTS)))


def _split(rng: BlockRange, hint: BlockRange | None) -> list[BlockRange]:
    """Parts of a refused range, in order: hint-sized pieces when few, else halves."""
    if hint is None:
        return list(rng.halves())
    if -(-len(rng) // len(hint)) <= MAX_HINT_PARTS:
        return list(rng.chunks(len(hint)))
    return [hint, BlockRange(hint.end + 1, rng.end)]
