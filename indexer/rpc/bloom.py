"""The logs bloom of a block header (pure): 2048 bits; each log sets 3 bits for its address
and 3 for each topic, taken from the keccak256 of the item (yellow paper, section 4.3.1)."""

from __future__ import annotations

from collections.abc import Iterable

from Crypto.Hash import keccak

BLOOM_BYTES = 256


def _positions(item: bytes) -> tuple[tuple[int, int], ...]:
    """(byte index, bit mask) of the 3 bits ``item`` sets in a bloom."""
    h = keccak.new(digest_bits=256, data=item).digest()
    out = []
    for i in (0, 2, 4):
        bit = ((h[i] << 8) | h[i + 1]) & 0x7FF
        out.append((BLOOM_BYTES - 1 - (bit >> 3), 1 << (bit & 7)))
    return tuple(out)


def contains(bloom: bytes, item: bytes) -> bool:
    """Whether ``item`` (a 20-byte address or a 32-byte topic) may be in ``bloom``.

    False means certainly absent; True may be a false positive."""
    return all(bloom[i] & mask for i, mask in _positions(item))


def add(bloom: bytearray, item: bytes) -> None:
    for i, mask in _positions(item):
        bloom[i] |= mask


def may_match(
    bloom: bytes, addresses: Iterable[bytes] | None, topic0s: Iterable[bytes] | None
) -> bool:
    """Whether a block with this bloom may hold a log matching the filter: one of the addresses
    (any if None) and one of the topic0s (any if None). An all-zero bloom matches nothing."""
    if not any(bloom):
        return False
    if addresses is not None and not any(contains(bloom, a) for a in addresses):
        return False
    return topic0s is None or any(contains(bloom, t) for t in topic0s)
