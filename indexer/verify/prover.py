"""Fetching what proves blocks (the I/O of ``verify.proof``): the blocks and their receipts, in
JSON-RPC batches, and the canonical headers the indexer checks logs against.

A block's receipts come from eth_getBlockReceipts, else (a node that does not serve it) from
eth_getTransactionReceipt for each of its transactions. Over a range, receipts are fetched only
for the blocks whose logsBloom may hold a log of the filter: the bloom is part of the proven
header, and consensus makes it the union of every log's address and topics, so a block whose
bloom says "no" holds no matching log, proven by its header alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from indexer.rpc import bloom
from indexer.rpc.errors import MethodUnsupported
from indexer.types import BlockHeader, BlockRange, RawLog
from indexer.verify.proof import (
    ProofError,
    ProofFailure,
    ProvenHeader,
    matching,
    prove_header,
    prove_receipts,
)

log = logging.getLogger(__name__)

SLICE = 128  # blocks whose headers and receipts are held at once
RECEIPTS_PER_BATCH = 16  # blocks whose receipts one JSON-RPC batch asks for (a block's can be MBs)


class ProofSource(Protocol):
    """What proving reads from a node (``RpcClient`` is one)."""

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]: ...

    async def get_headers(self, numbers: Sequence[int]) -> dict[int, BlockHeader]: ...


@dataclass(slots=True)
class ProvenLogs:
    """The matching logs of the proven blocks of a range, in (block, logIndex) order, and the
    blocks that could not be proven (none of their logs is in ``logs``)."""

    logs: list[RawLog] = field(default_factory=list)
    failures: list[ProofFailure] = field(default_factory=list)
    blocks: int = 0  # headers proven
    receipts: int = 0  # receipts proven against their block's receiptsRoot

    @property
    def failed(self) -> frozenset[int]:
        return frozenset(f.block for f in self.failures)


class Prover:
    """Proves blocks of one chain; remembers whether the node serves eth_getBlockReceipts."""

    def __init__(self, source: ProofSource, chain: str = "") -> None:
        self.source = source
        self.chain = chain
        self.block_receipts = True
        self.failed = 0  # blocks not proven so far

    async def block(self, number: int) -> list[RawLog]:
        """Every log of block ``number``, as its receipts hold them, once the block is proven;
        ``ProofError`` when it is not."""
        blocks, canonical = await self._blocks([number])
        header = prove_header(number, blocks[0], _hash(canonical, number))
        receipts = await self._receipts([header])
        return prove_receipts(header, blocks[0], _receipt_list(header, receipts))

    async def logs(self, rng: BlockRange, addresses: Sequence[str] | None,
                   topic0s: Sequence[str] | None) -> ProvenLogs:
        """The proven logs of ``rng`` an eth_getLogs filter selects (None: any address or any
        topic0): what verify compares with instead of the eth_getLogs answer."""
        addrs = None if addresses is None else frozenset(a.lower() for a in addresses)
        topics = None if topic0s is None else frozenset(t.lower() for t in topic0s)
        addr_bytes = None if addrs is None else [bytes.fromhex(a[2:]) for a in addrs]
        topic_bytes = None if topics is None else [bytes.fromhex(t[2:]) for t in topics]
        out = ProvenLogs()
        for part in rng.chunks(SLICE):
            numbers = list(range(part.start, part.end + 1))
            blocks, canonical = await self._blocks(numbers)
            wanted: list[tuple[ProvenHeader, Any]] = []
            for n, block in zip(numbers, blocks, strict=True):
                try:
                    header = prove_header(n, block, _hash(canonical, n))
                except ProofError as e:
                    out.failures.append(e.failure)
                    continue
                out.blocks += 1
                if bloom.may_match(header.logs_bloom, addr_bytes, topic_bytes):
                    wanted.append((header, block))
            receipts = await self._receipts([h for h, _ in wanted])
            for header, block in wanted:
                try:
                    logs = prove_receipts(header, block, _receipt_list(header, receipts))
                except ProofError as e:
                    out.failures.append(e.failure)
                    continue
                out.receipts += len(header.transactions)
                out.logs += matching(logs, addrs, topics)
        for f in out.failures:
            self.failed += 1
            if self.failed <= 5 or self.failed % 1000 == 0:
                log.warning("%s: block %d is not proven: %s (%d blocks not proven so far)",
                            self.chain, f.block, f.reason, self.failed)
        return out

    async def _blocks(self, numbers: list[int]) -> tuple[list[Any], dict[int, BlockHeader]]:
        """The block objects (null where the node has none) and the canonical headers."""
        calls = [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]
        blocks, canonical = await asyncio.gather(self.source.batch(calls),
                                                 self.source.get_headers(numbers))
        return blocks, canonical

    async def _receipts(self, headers: Sequence[ProvenHeader]) -> dict[int, Any]:
        """Block number -> its receipts as the node answered (a list, or what it sent)."""
        if not headers:
            return {}
        if self.block_receipts:
            try:
                return await self._by_block(headers)
            except MethodUnsupported as e:
                self.block_receipts = False
                log.info("%s: eth_getBlockReceipts is not served (%s); asking for the receipt "
                         "of each transaction", self.chain, e.detail)
        return await self._by_transaction(headers)

    async def _by_block(self, headers: Sequence[ProvenHeader]) -> dict[int, Any]:
        groups = [headers[i:i + RECEIPTS_PER_BATCH]
                  for i in range(0, len(headers), RECEIPTS_PER_BATCH)]
        answers = await asyncio.gather(*(self.source.batch(
            [("eth_getBlockReceipts", [hex(h.number)]) for h in g]) for g in groups))
        return {h.number: r for g, a in zip(groups, answers, strict=True)
                for h, r in zip(g, a, strict=True)}

    async def _by_transaction(self, headers: Sequence[ProvenHeader]) -> dict[int, Any]:
        groups = [headers[i:i + RECEIPTS_PER_BATCH]
                  for i in range(0, len(headers), RECEIPTS_PER_BATCH)]
        answers = await asyncio.gather(*(self.source.batch(
            [("eth_getTransactionReceipt", [tx]) for h in g for tx in h.transactions])
            for g in groups))
        out: dict[int, Any] = {}
        for g, answer in zip(groups, answers, strict=True):
            at = 0
            for h in g:
                out[h.number] = answer[at:at + len(h.transactions)]
                at += len(h.transactions)
        return out


def _hash(canonical: dict[int, BlockHeader], number: int) -> bytes:
    header = canonical.get(number)
    if header is None:
        raise ProofError(number, "the node gave no canonical header for it")
    return header.hash


def _receipt_list(header: ProvenHeader, receipts: dict[int, Any]) -> list[Any]:
    got = receipts.get(header.number)
    if not isinstance(got, list):
        raise ProofError(header.number, "the node has no receipts for it" if got is None
                         else f"the receipts are not a list: {type(got).__name__}")
    return got
