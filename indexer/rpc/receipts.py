"""The logs of one block read from its receipts, for a block eth_getLogs cannot serve: more
matching logs than the provider returns in one answer with no address list left to halve, or
answers in which two logs of the block share a logIndex.

A receipts answer is accepted only if the block object is the block asked for (and the header
the caller holds for it, if any), there is one receipt per transaction of the block, in the
block's order, each naming that transaction and the block (hash and number); the logs of the
receipts that match the filter, in block order, then pass every check of an eth_getLogs answer
(``wire.check_logs``). Two of them sharing a logIndex there too cannot be stored (the log index
is part of every event table's primary key): ``RpcFatal``, naming the block.

Receipts come from eth_getBlockReceipts, asked in one batch with the block; where it is not
served, from eth_getTransactionReceipt for each transaction of the block. Requests are counted
under the method ``eth_getBlockReceipts`` either way.
"""

from __future__ import annotations

import asyncio
from typing import Any

from indexer.rpc import wire
from indexer.rpc.classify import classify
from indexer.rpc.errors import (
    BadAnswer,
    DuplicateLogIndex,
    MethodUnsupported,
    NodeBehind,
    RpcFatal,
)
from indexer.rpc.filters import LogFilter, matches
from indexer.rpc.request import Requester
from indexer.rpc.transport import Endpoint, result_of
from indexer.types import BlockHeader, BlockRange, RawLog

# logs, block -> hash, the block's header, label of the endpoint that answered
Part = tuple[list[RawLog], dict[int, str], BlockHeader, str]


def block_logs(block: Any, receipts: Any, flt: LogFilter) -> tuple[BlockHeader, list[RawLog]]:
    """The header of ``block`` (an eth_getBlockByNumber object with transaction hashes) and
    the logs of ``receipts`` (its receipts, in order) that ``flt`` matches; BadAnswer unless
    the receipts are exactly those of the block's transactions."""
    header = wire.parse_header(block)
    n = header.number
    txs = block.get("transactions")
    if type(txs) is not list or any(type(t) is not str for t in txs):
        raise BadAnswer(f"block {n}: transactions is not a list of hashes")
    if type(receipts) is not list:
        raise BadAnswer(f"block {n}: expected a list of receipts, got {type(receipts).__name__}")
    if len(receipts) != len(txs):
        raise BadAnswer(f"block {n}: {len(receipts)} receipts for {len(txs)} transactions")
    bh = "0x" + header.hash.hex()
    logs: list[RawLog] = []
    for tx, rc in zip(txs, receipts, strict=True):
        if type(rc) is not dict or str(rc.get("transactionHash", "")).lower() != tx.lower():
            raise BadAnswer(f"block {n}: the receipt of transaction {tx[:66]} is missing or out "
                            "of order")
        if str(rc.get("blockHash", "")).lower() != bh:
            raise BadAnswer(f"block {n}: the receipt of transaction {tx[:66]} is of another "
                            "block hash", reason="block_hash")
        if wire.parse_quantity(rc.get("blockNumber")) != n:
            raise BadAnswer(f"block {n}: the receipt of transaction {tx[:66]} is of another "
                            "block", reason="range")
        found = rc.get("logs")
        if type(found) is not list:
            raise BadAnswer(f"block {n}: the receipt of transaction {tx[:66]} has no log list")
        logs += [lg for lg in found if matches(lg, flt)]
    return header, logs


class ReceiptsReader:
    """Receipts through the request layer of one client (``requests``)."""

    def __init__(self, requests: Requester) -> None:
        self._requests = requests

    async def logs(self, n: int, flt: LogFilter, known: BlockHeader | None, why: str) -> Part:
        """The checked logs of block ``n`` matching ``flt``, from its receipts. ``why``: what
        eth_getLogs could not do, for the message of an error that stops the run."""
        rng = BlockRange(n, n)

        async def attempt(ep: Endpoint) -> Part:
            block, receipts = await self._fetch(ep, n, why)
            header, logs = block_logs(block, receipts, flt)
            if known is not None and known.number == n and known.hash != header.hash:
                raise BadAnswer(f"block {n} differs from its header", reason="block_hash")
            try:
                blocks = wire.check_logs(logs, rng, flt.addresses, flt.topic0s)
            except DuplicateLogIndex as e:
                raise RpcFatal(
                    f"{e.detail}, in the block's receipts as in eth_getLogs: the node numbers "
                    f"logs against the JSON-RPC spec (logIndex is a log's position in its "
                    f"block), and (block_number, log_index) is the primary key of every event "
                    f"table; point the chain's rpc at another client") from e
            return logs, blocks, header, ep.label

        result: Part = await self._requests.retrying("eth_getBlockReceipts", str(n), attempt)
        return result

    async def matching(self, ep: Endpoint, header: BlockHeader, flt: LogFilter) -> list[RawLog]:
        """The logs ``flt`` matches in the receipts ``ep`` gives for the block of ``header``
        (not retried). NodeBehind when it has no receipts for it (null never means "none"),
        BadAnswer when they are not that block's."""
        block, receipts = await self._fetch(ep, header.number, "has a logsBloom hit")
        got, logs = block_logs(block, receipts, flt)
        if got.hash != header.hash:
            raise BadAnswer(f"the receipts of block {header.number} are of another block",
                            reason="block_hash")
        return logs

    async def _fetch(self, ep: Endpoint, n: int, why: str) -> tuple[Any, Any]:
        """The block (with transaction hashes) and its receipts, as ``ep`` answers."""
        if ep.receipts:
            try:
                block, receipts = await self._with_block_receipts(ep, n)
            except (MethodUnsupported, RpcFatal):
                ep.receipts = False  # ask for the receipts transaction by transaction
            else:
                if block is None or receipts is None:
                    raise NodeBehind(f"the node has no block {n} yet")
                return block, receipts
        block = await self._requests.single(ep, "eth_getBlockByNumber", [hex(n), False], None)
        if block is None:
            raise NodeBehind(f"the node has no block {n} yet")
        txs = block.get("transactions") if isinstance(block, dict) else None
        if type(txs) is not list:
            raise BadAnswer(f"block {n}: transactions is not a list of hashes")
        try:
            receipts = await self._transaction_receipts(ep, txs)
        except (MethodUnsupported, RpcFatal) as e:
            raise RpcFatal(f"block {n} {why}, and its receipts cannot be read on endpoint "
                           f"{ep.label} (neither eth_getBlockReceipts nor "
                           f"eth_getTransactionReceipt: {e.detail}); use an endpoint that "
                           f"serves receipts") from e
        if any(r is None for r in receipts):
            raise NodeBehind(f"the node has not every receipt of block {n} yet")
        return block, receipts

    async def _with_block_receipts(self, ep: Endpoint, n: int) -> tuple[Any, Any]:
        calls: list[tuple[str, list[Any]]] = [("eth_getBlockByNumber", [hex(n), False]),
                                              ("eth_getBlockReceipts", [hex(n)])]
        if ep.batch_size < 2:
            block, receipts = await asyncio.gather(
                *(self._requests.single(ep, m, p, None) for m, p in calls))
            return block, receipts
        block, receipts = await self._batch(ep, calls)
        return block, receipts

    async def _transaction_receipts(self, ep: Endpoint, txs: list[Any]) -> list[Any]:
        calls = [("eth_getTransactionReceipt", [tx]) for tx in txs]
        if ep.batch_size < 2:
            return list(await asyncio.gather(
                *(self._requests.single(ep, m, p, None) for m, p in calls)))
        size = ep.batch_size
        out: list[Any] = []
        for i in range(0, len(calls), size):
            out += await self._batch(ep, calls[i:i + size])
        return out

    async def _batch(self, ep: Endpoint, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """One JSON-RPC batch on ``ep``, not retried: the results in call order."""
        ids = [self._requests.next_id() for _ in calls]
        body = wire.encode_batch([(rid, m, p) for rid, (m, p) in zip(ids, calls, strict=True)])
        doc = await self._requests.post(ep, body, None)
        if type(doc) is dict and "error" in doc:  # the whole batch was refused
            raise classify(200, doc["error"], None, None)
        replies = wire.check_batch_answer(doc, ids)
        return [result_of(replies[rid], None) for rid in ids]
