"""eth_getLogs for the client: range splitting and checks on every answer.

An eth_getLogs answer is accepted only if every log lies in the range and matches the filter,
the header of ``toBlock`` (asked in the same JSON-RPC batch) exists, the blockHash of every
block holding logs equals the canonical header's hash, and ``toBlock`` holds no log although its
logsBloom says it may, unless its receipts (eth_getBlockReceipts) confirm that no log matches:
blooms have false positives (a node that does not serve receipts: accepted after
``BLOOM_RETRIES`` like answers).

A range over an endpoint's cap is split before asking; a refused one is split as the error
hints, else in halves. A single block refused as too large (more matching logs than the
provider serves in one answer) is asked for with each half of the address list, down to one
address, then read from its receipts (``receipts.py``). An answer in which two logs of one
block share a logIndex is refused (counted as ``reason="log_index"``, logged with the block and
the transactions); every block of it where logs do is read from its receipts, and the ranges
between them asked once more. Requests, retries and failover are the request layer's
(``request.py``); the range arithmetic and filter matching are pure functions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from indexer import metrics
from indexer.rpc import bloom, wire
from indexer.rpc.classify import classify
from indexer.rpc.errors import (
    BadAnswer,
    DuplicateLogIndex,
    NodeBehind,
    RangeTooLarge,
    RpcError,
    RpcFatal,
    RpcServerError,
)
from indexer.rpc.filters import LogFilter, halves, log_filter
from indexer.rpc.receipts import Part, ReceiptsReader
from indexer.rpc.request import Requester
from indexer.rpc.transport import Endpoint, result_of
from indexer.types import BlockHeader, BlockRange, RawLog

log = logging.getLogger(__name__)
T = TypeVar("T")

LOGS_CONCURRENCY = 16  # eth_getLogs requests in flight per client while splitting ranges
MAX_HINT_PARTS = 16  # split a refused range into hint-sized parts only up to this many
BLOOM_RETRIES = 2  # without any receipts to read, an empty answer against a bloom hit is asked
# again this often before it is taken (blooms have false positives)
RECENT = 256  # blocks from the head within which every block of a range has its bloom checked
HASH_RETRIES = 2  # answers whose blockHash differs from the canonical header, asked again

SHARED_INDEX_SAID = 5  # answers with a shared logIndex logged one by one; then one in 1000


@dataclass(slots=True)
class LogsAnswer:
    """A checked eth_getLogs answer: the logs in (blockNumber, logIndex) order and the
    canonical headers of every block holding one of them (plus the ``toBlock`` of each
    request), whose hashes the logs' blockHash matched."""

    logs: list[RawLog]
    headers: dict[int, BlockHeader]


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
        self._receipts = ReceiptsReader(requests)
        self._shared = 0  # answers refused for a shared logIndex, so far

    async def checked(
        self, rng: BlockRange, addresses: Sequence[str] | None, topic0s: Sequence[str] | None,
        *, tip: BlockHeader | None = None,
    ) -> LogsAnswer:
        """``RpcClient.get_logs_checked``: the logs of ``rng`` with the canonical headers of
        the blocks holding them, every blockHash checked against them."""
        flt = log_filter(addresses, topic0s)
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
        self, rng: BlockRange, flt: LogFilter, known: BlockHeader | None = None
    ) -> list[Part]:
        """Answers for consecutive parts of ``rng``: (logs, block -> hash, toBlock header,
        endpoint)."""
        try:
            async with self._slots:
                return [await self._logs_once(rng, flt, known)]
        except _OverCap as e:
            parts = _parts(rng, e.size)
        except DuplicateLogIndex as e:
            return await self._around(rng, flt, known, e)
        except RangeTooLarge as e:
            if len(rng) == 1:
                return [await self._one_block(rng.start, flt, known, e)]
            parts = _split(rng, e.hint)
        answers = await _all(
            *(self._logs(p, flt, known if p.end == rng.end else None) for p in parts))
        return [part for answer in answers for part in answer]

    async def _one_block(
        self, n: int, flt: LogFilter, known: BlockHeader | None, err: RangeTooLarge
    ) -> Part:
        """Block ``n`` holds more matching logs than the endpoint serves in one answer: ask
        with each half of the address list, else read the block's receipts."""
        why = f"holds more matching logs than endpoint {err.endpoint} serves ({err.detail})"
        split = halves(flt)
        if split is None:
            log.info("%s: block %d %s; reading its receipts", self._requests.chain, n, why)
            return await self._receipts.logs(n, flt, known, why)
        one = BlockRange(n, n)
        answers = await _all(*(self._logs(one, half, known) for half in split))
        try:
            return _merged(one, flt, [part for answer in answers for part in answer])
        except DuplicateLogIndex as e:
            self._said_shared(e)
            return await self._receipts.logs(n, flt, known, why)

    async def _around(
        self, rng: BlockRange, flt: LogFilter, known: BlockHeader | None, err: DuplicateLogIndex
    ) -> list[Part]:
        """``rng`` with the blocks of ``err`` read from their receipts, and the ranges between
        them asked again (each block's logs are fetched once more at most, whatever the
        number of such blocks)."""
        self._said_shared(err)
        why = "holds logs sharing a logIndex in eth_getLogs answers"
        asks: list[Awaitable[list[Part]]] = []
        start = rng.start
        for n in (b for b in err.blocks if b in rng):
            if n > start:
                asks.append(self._logs(BlockRange(start, n - 1), flt))
            asks.append(self._from_receipts(n, flt, known if n == rng.end else None, why))
            start = n + 1
        if start <= rng.end:
            asks.append(self._logs(BlockRange(start, rng.end), flt, known))
        return [part for got in await _all(*asks) for part in got]

    async def _from_receipts(
        self, n: int, flt: LogFilter, known: BlockHeader | None, why: str
    ) -> list[Part]:
        return [await self._receipts.logs(n, flt, known, why)]

    def _said_shared(self, err: DuplicateLogIndex) -> None:
        self._shared += 1
        if self._shared <= SHARED_INDEX_SAID or self._shared % 1000 == 0:
            shown = ", ".join(map(str, err.blocks[:5])) + (
                f", ... ({len(err.blocks)} blocks)" if len(err.blocks) > 5 else "")
            log.warning("%s: eth_getLogs on endpoint %s: %s; reading block%s %s from receipts "
                        "instead (%d such answers so far)", self._requests.chain, err.endpoint,
                        err.detail, "s" if len(err.blocks) > 1 else "", shown, self._shared)

    async def _logs_once(
        self, rng: BlockRange, flt: LogFilter, known: BlockHeader | None = None
    ) -> Part:
        params = [{**flt.params, "fromBlock": hex(rng.start), "toBlock": hex(rng.end)}]
        tip_params = [hex(rng.end), False]
        laggards = [0]  # answers refused on the bloom so far

        async def attempt(ep: Endpoint) -> Part:
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
            await self._no_hidden_logs(ep, tip, flt, laggards, seen is not None)
            if len(rng) > 1 and rng.end + RECENT >= self._requests.head_seen:
                # Near the head a node's logs backend may lag its headers: every block of the
                # range without a log in the answer is held against its own logsBloom.
                for h in await self._headers_on(ep, BlockRange(rng.start, rng.end - 1)):
                    await self._no_hidden_logs(ep, h, flt, laggards, h.number in blocks)
            ep.state.ranges.on_ok(len(rng), len(logs))
            self._requests.gauge_range(ep)
            return logs, blocks, tip, ep.label

        result: Part = await self._requests.retrying(
            "eth_getLogs", str(rng), attempt, requested=rng)
        return result

    async def _no_hidden_logs(self, ep: Endpoint, header: BlockHeader, flt: LogFilter,
                              laggards: list[int], answered: bool) -> None:
        """NodeBehind when the answer holds no log of ``header``'s block although its bloom
        says it may hold one, and the block's receipts do not confirm it holds none."""
        if (answered or header.logs_bloom is None
                or not bloom.may_match(header.logs_bloom, flt.address_bytes, flt.topic_bytes)
                or await self._confirmed_empty(ep, header, flt, laggards)):
            return
        err = NodeBehind(f"no log in block {header.number} although its logsBloom says it may "
                         "hold one (a lagging node?)")
        err.reason = "bloom"
        raise err

    async def _confirmed_empty(
        self, ep: Endpoint, header: BlockHeader, flt: LogFilter, laggards: list[int]
    ) -> bool:
        """Whether the block truly holds no matching log although its bloom says "maybe"
        (blooms have false positives): its receipts on the same endpoint say so. No receipts
        (null, or another block's) never confirm it. Only an endpoint that serves no receipts
        at all has an empty answer taken, after BLOOM_RETRIES asks."""
        try:
            return not await self._receipts.matching(ep, header, flt)
        except RpcFatal:  # neither eth_getBlockReceipts nor eth_getTransactionReceipt here
            laggards[0] += 1
            return laggards[0] > BLOOM_RETRIES
        except RpcError:
            return False  # ask again (elsewhere, when there is another endpoint)

    async def _headers_on(self, ep: Endpoint, rng: BlockRange) -> list[BlockHeader]:
        """The headers of ``rng`` as ``ep`` answers them, in one batch (not retried)."""
        ids = [self._requests.next_id() for _ in range(len(rng))]
        body = wire.encode_batch([(rid, "eth_getBlockByNumber", [hex(n), False])
                                  for rid, n in zip(ids, range(rng.start, rng.end + 1),
                                                    strict=True)])
        replies = wire.check_batch_answer(await self._requests.post(ep, body, None), ids)
        out = []
        for rid, n in zip(ids, range(rng.start, rng.end + 1), strict=True):
            block = result_of(replies[rid], None)
            if block is None:
                raise NodeBehind(f"the node has no block {n} yet")
            out.append(wire.parse_header(block))
        return out

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


async def _all(*aws: Awaitable[T]) -> list[T]:
    """``asyncio.gather``, but the first failure cancels the others (no request of a failed
    fetch goes on behind the caller's back)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _merged(one: BlockRange, flt: LogFilter, parts: list[Part]) -> Part:
    """The answers for the halves of one block's filter as one answer: the logs in logIndex
    order, checked again as a whole (a log in both halves shares its index with itself)."""
    if len({p[2].hash for p in parts}) > 1:
        raise BadAnswer(f"block {one.start} changed between the answers for the halves of its "
                        "filter", reason="block_hash")
    logs = sorted((lg for p in parts for lg in p[0]), key=lambda lg: int(lg["logIndex"], 16))
    blocks = wire.check_logs(logs, one, flt.addresses, flt.topic0s)
    return logs, blocks, parts[0][2], parts[0][3]


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
