"""One block proven (pure): its header hashes to its hash, that hash is the canonical one, and
its receipts rebuild its ``receiptsRoot``; then its logs are the chain's, not one node's word.

What is proven: the header's fields (so its number, timestamp and logsBloom), and of every
receipt what consensus hashes: status, cumulative gas, bloom and logs (address, topics, data)
in block order, so each log's position (transaction index, block-wide log index). A receipt's
transaction hash is checked against the block's list of transaction hashes, which the header
binds only through ``transactionsRoot`` (not rebuilt here): it is the node's word, held
consistent.

The I/O (fetching blocks and receipts) is ``verify.prover``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from indexer.types import RawLog
from indexer.verify.encoding import (
    Malformed,
    data,
    header_hash,
    quantity,
    receipts_root,
    unhashed_fields,
)


@dataclass(frozen=True, slots=True, order=True)
class ProofFailure:
    """Block ``block`` could not be proven: ``reason`` says what did not match."""

    block: int
    reason: str


class ProofError(Exception):
    """A block whose proof failed, naming the block and what did not match."""

    def __init__(self, block: int, reason: str) -> None:
        super().__init__(f"block {block}: {reason}")
        self.block = block
        self.reason = reason

    @property
    def failure(self) -> ProofFailure:
        return ProofFailure(self.block, self.reason)


@dataclass(frozen=True, slots=True)
class ProvenHeader:
    number: int
    hash: str  # "0x..." lower-case
    timestamp: int
    logs_bloom: bytes
    transactions: tuple[str, ...]  # the block's transaction hashes, lower-case, in order


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def prove_header(number: int, block: Any, canonical: bytes | None) -> ProvenHeader:
    """The header of block ``number``, once its fields hash to its ``hash`` and that hash is
    ``canonical`` (the hash of the header the indexer checks logs against)."""
    if not isinstance(block, dict):
        raise ProofError(number, "the node has no such block" if block is None
                         else f"the block is not an object: {type(block).__name__}")
    try:
        got = quantity(block.get("number"), "number")
        claimed = data(block.get("hash"), "hash", 32)
        computed = header_hash(block)
        timestamp = quantity(block.get("timestamp"), "timestamp")
        bloom = data(block.get("logsBloom"), "logsBloom", 256)
        transactions = tuple(_tx_hash(t, i) for i, t in enumerate(block.get("transactions")
                                                                  or ()))
    except Malformed as e:
        raise ProofError(number, f"header: {e}") from None
    if got != number:
        raise ProofError(number, f"asked for block {number}, the node answered block {got}")
    if computed != claimed:
        extra = unhashed_fields(block)
        raise ProofError(number, f"header fields hash to {_hex(computed)}, not to the block's "
                         f"hash {_hex(claimed)}" + (f" (fields not hashed: {', '.join(extra)})"
                                                    if extra else ""))
    if canonical is not None and canonical != claimed:
        raise ProofError(number, f"block hash {_hex(claimed)} differs from the canonical "
                         f"header's {_hex(canonical)}")
    return ProvenHeader(number, _hex(claimed), timestamp, bloom, transactions)


def _tx_hash(tx: Any, i: int) -> str:
    value = tx.get("hash") if isinstance(tx, dict) else tx
    return _hex(data(value, f"transaction {i} hash", 32))


def prove_receipts(header: ProvenHeader, block: Mapping[str, Any],
                   receipts: Sequence[Any]) -> list[RawLog]:
    """Every log of the block, once ``receipts`` rebuild its ``receiptsRoot``; as eth_getLogs
    gives them, with the block-wide ``logIndex`` counted from the receipts' order."""
    n = header.number
    if len(receipts) != len(header.transactions):
        raise ProofError(n, f"{len(receipts)} receipts for {len(header.transactions)} "
                         f"transactions")
    try:
        for i, rc in enumerate(receipts):
            _check_place(header, i, rc)
        root = receipts_root(receipts)
        want = data(block.get("receiptsRoot"), "receiptsRoot", 32)
        if root != want:
            raise ProofError(n, f"the receipts root rebuilt from {len(receipts)} receipts is "
                             f"{_hex(root)}, not the header's receiptsRoot {_hex(want)}")
        return _logs(header, receipts)
    except Malformed as e:
        raise ProofError(n, f"receipts: {e}") from None


def _check_place(header: ProvenHeader, i: int, rc: Any) -> None:
    """Receipt ``i`` says it is where it stands: the block's transaction ``i``."""
    n = header.number
    if not isinstance(rc, dict):
        raise ProofError(n, f"receipt {i} is not an object" if rc is not None
                         else f"the node has no receipt for transaction {i}")
    index = rc.get("transactionIndex")
    if index is not None and quantity(index, f"receipt {i} transactionIndex") != i:
        raise ProofError(n, f"receipt {i} says it is of transaction {index}")
    tx = rc.get("transactionHash")
    if tx is not None and str(tx).lower() != header.transactions[i]:
        raise ProofError(n, f"receipt {i} is of transaction {tx}, the block's transaction {i} "
                         f"is {header.transactions[i]}")
    bh = rc.get("blockHash")
    if bh is not None and str(bh).lower() != header.hash:
        raise ProofError(n, f"receipt {i} says it is of block {bh}")


def _logs(header: ProvenHeader, receipts: Sequence[Mapping[str, Any]]) -> list[RawLog]:
    out: list[RawLog] = []
    number, timestamp = hex(header.number), hex(header.timestamp)
    index = 0
    for i, rc in enumerate(receipts):
        tx_index = hex(i)
        for j, lg in enumerate(rc["logs"]):
            said = lg.get("logIndex")
            if said is not None and quantity(said, "logIndex") != index:
                raise ProofError(header.number, f"receipt {i} log {j} says logIndex {said}; "
                                 f"its place in the block is {index}")
            out.append(RawLog(
                address=str(lg["address"]).lower(), topics=[str(t).lower() for t in lg["topics"]],
                data=str(lg["data"]).lower(), blockNumber=number, blockHash=header.hash,
                blockTimestamp=timestamp, transactionHash=header.transactions[i],
                transactionIndex=tx_index, logIndex=hex(index), removed=False))
            index += 1
    return out


def matching(logs: Sequence[RawLog], addresses: frozenset[str] | None,
             topic0s: frozenset[str] | None) -> list[RawLog]:
    """The logs an eth_getLogs filter selects (``addresses`` and ``topic0s`` lower-case; None:
    any)."""
    return [lg for lg in logs
            if (addresses is None or lg["address"] in addresses)
            and (topic0s is None or (bool(lg["topics"]) and lg["topics"][0] in topic0s))]
