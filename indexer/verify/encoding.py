"""Consensus encodings of what a node answers (pure): a block header's RLP and hash, a receipt's
EIP-2718 envelope and the receipts trie's root, from the JSON objects of eth_getBlockByNumber and
eth_getBlockReceipts / eth_getTransactionReceipt.

A receipt is ``rlp([status, cumulativeGasUsed, logsBloom, logs])`` (``root`` instead of
``status`` before Byzantium), each log ``[address, topics, data]``; a typed receipt (EIP-2718)
is its type byte followed by that RLP, a legacy one the RLP alone. The trie maps
``rlp(index)`` to the receipt's encoding (RLP and the Merkle-Patricia trie are the ``rlp`` and
``trie`` packages'). The header is the RLP list of its fields in consensus order, with the
fields each fork added after ``nonce`` that the block has (on a chain these are a prefix of
the forks' fields; anvil at an older hardfork also fills the blob gas fields, and hashes them).

Malformed or missing fields raise ``Malformed``: a node that leaves out what consensus hashes
cannot be proven.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from eth_hash.auto import keccak

# rlp and trie are imported where they are used: both pull in eth_utils (about 0.2 s of CPU),
# which a process that never checks a block against its header need not pay at start.
DEPOSIT_TYPE = 0x7E  # OP-stack deposit transactions

Field = Callable[[Any, str], Any]


class Malformed(ValueError):
    """A field consensus hashes is missing or not what its kind must be."""


def quantity(value: Any, name: str) -> int:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) < 3:
        raise Malformed(f"{name} is not a hex quantity: {value!r:.80}")
    try:
        return int(value, 16)
    except ValueError:
        raise Malformed(f"{name} is not a hex quantity: {value!r:.80}") from None


def data(value: Any, name: str, size: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) % 2:
        raise Malformed(f"{name} is not hex data: {value!r:.80}")
    try:
        out = bytes.fromhex(value[2:])
    except ValueError:
        raise Malformed(f"{name} is not hex data: {value!r:.80}") from None
    if size is not None and len(out) != size:
        raise Malformed(f"{name} is {len(out)} bytes, not {size}: {value!r:.80}")
    return out


def _sized(size: int) -> Field:
    return lambda value, name: data(value, name, size)


_HASH, _ADDRESS, _BLOOM, _NONCE = _sized(32), _sized(20), _sized(256), _sized(8)

# The header fields every block has, in consensus order.
HEADER_FIELDS: tuple[tuple[str, Field], ...] = (
    ("parentHash", _HASH), ("sha3Uncles", _HASH), ("miner", _ADDRESS), ("stateRoot", _HASH),
    ("transactionsRoot", _HASH), ("receiptsRoot", _HASH), ("logsBloom", _BLOOM),
    ("difficulty", quantity), ("number", quantity), ("gasLimit", quantity),
    ("gasUsed", quantity), ("timestamp", quantity), ("extraData", data), ("mixHash", _HASH),
    ("nonce", _NONCE),
)
# The fields forks appended, in order: London, Shanghai, Cancun (three), Prague.
FORK_FIELDS: tuple[tuple[str, Field], ...] = (
    ("baseFeePerGas", quantity), ("withdrawalsRoot", _HASH), ("blobGasUsed", quantity),
    ("excessBlobGas", quantity), ("parentBeaconBlockRoot", _HASH), ("requestsHash", _HASH),
)
# What a block object holds besides its header fields.
NOT_HASHED = frozenset({"hash", "size", "totalDifficulty", "transactions", "uncles",
                        "withdrawals", "blockTimestamp"})


def header_fields(block: Mapping[str, Any]) -> list[Any]:
    """The header's fields as consensus encodes them."""
    out: list[Any] = []
    for name, kind in HEADER_FIELDS:
        if name not in block:
            raise Malformed(f"the block has no {name}")
        out.append(kind(block[name], name))
    for name, kind in FORK_FIELDS:
        if block.get(name) is not None:
            out.append(kind(block[name], name))
    return out


def header_hash(block: Mapping[str, Any]) -> bytes:
    """keccak256 of the header's RLP: the block hash the header's fields give."""
    import rlp

    return keccak(rlp.encode(header_fields(block)))


def unhashed_fields(block: Mapping[str, Any]) -> list[str]:
    """Fields of the block object that are neither header fields known here nor known extras
    (a newer fork's, or a chain's own): named when a hash does not match."""
    known = {n for n, _ in HEADER_FIELDS} | {n for n, _ in FORK_FIELDS} | NOT_HASHED
    return sorted(k for k in block if k not in known)


def log_fields(log: Mapping[str, Any], name: str) -> list[Any]:
    topics = log.get("topics")
    if not isinstance(topics, list) or len(topics) > 4:
        raise Malformed(f"{name}: topics is not a list of at most 4: {topics!r:.80}")
    return [data(log.get("address"), f"{name} address", 20),
            [data(t, f"{name} topic", 32) for t in topics],
            data(log.get("data"), f"{name} data")]


def receipt_kind(receipt: Mapping[str, Any]) -> int:
    kind = receipt.get("type")
    return 0 if kind is None else quantity(kind, "type")


def receipt_bytes(receipt: Mapping[str, Any], name: str = "receipt") -> bytes:
    """The receipt as the receipts trie holds it (EIP-2718: typed ones prefixed by their type).

    OP-stack deposit receipts since Canyon (those with ``depositReceiptVersion``) also hold the
    deposit nonce and that version, as op-geth encodes them."""
    kind = receipt_kind(receipt)
    if receipt.get("status") is not None:
        outcome: Any = quantity(receipt["status"], f"{name} status")
    elif receipt.get("root") is not None:
        outcome = data(receipt["root"], f"{name} root", 32)  # before Byzantium
    else:
        raise Malformed(f"{name} has neither status nor root")
    logs = receipt.get("logs")
    if not isinstance(logs, list):
        raise Malformed(f"{name}: logs is not a list")
    body: list[Any] = [
        outcome, quantity(receipt.get("cumulativeGasUsed"), f"{name} cumulativeGasUsed"),
        data(receipt.get("logsBloom"), f"{name} logsBloom", 256),
        [log_fields(lg, f"{name} log {j}") for j, lg in enumerate(logs)],
    ]
    if kind == DEPOSIT_TYPE and receipt.get("depositReceiptVersion") is not None:
        body += [quantity(receipt.get("depositNonce"), f"{name} depositNonce"),
                 quantity(receipt["depositReceiptVersion"], f"{name} depositReceiptVersion")]
    import rlp

    encoded: bytes = rlp.encode(body)
    if kind == 0:
        return encoded
    if kind > 0x7F:
        raise Malformed(f"{name} type {kind:#x} is not an EIP-2718 type")
    return bytes([kind]) + encoded


def ordered_root(items: Sequence[bytes]) -> bytes:
    """The root of the trie mapping ``rlp(i)`` to ``items[i]`` (receipts, transactions)."""
    import rlp
    from trie import HexaryTrie

    t = HexaryTrie({})
    with t.squash_changes() as batch:
        for i, item in enumerate(items):
            batch[rlp.encode(i)] = item
    root: bytes = t.root_hash
    return root


def receipts_root(receipts: Sequence[Mapping[str, Any]]) -> bytes:
    return ordered_root([receipt_bytes(r, f"receipt {i}") for i, r in enumerate(receipts)])
