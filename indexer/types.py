"""Values shared by every stage: block ranges, headers and raw logs.

Block ranges are inclusive ``[start, end]`` everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypedDict


@dataclass(frozen=True, slots=True, order=True)
class BlockRange:
    """An inclusive range of block numbers; never empty."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"bad block range {self.start}-{self.end}")

    def __len__(self) -> int:
        return self.end - self.start + 1

    def __contains__(self, block: object) -> bool:
        return isinstance(block, int) and self.start <= block <= self.end

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"

    def halves(self) -> tuple[BlockRange, BlockRange]:
        """Split in two non-empty halves; the range must hold at least two blocks."""
        if self.start == self.end:
            raise ValueError(f"cannot split single-block range {self}")
        mid = (self.start + self.end) // 2
        return BlockRange(self.start, mid), BlockRange(mid + 1, self.end)

    def chunks(self, size: int) -> Iterator[BlockRange]:
        """Consecutive sub-ranges of at most ``size`` blocks covering the range."""
        if size < 1:
            raise ValueError(f"chunk size must be positive, got {size}")
        start = self.start
        while start <= self.end:
            end = min(start + size - 1, self.end)
            yield BlockRange(start, end)
            start = end + 1


@dataclass(frozen=True, slots=True)
class BlockHeader:
    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    logs_bloom: bytes | None = None


class RawLog(TypedDict, total=False):
    """A log exactly as eth_getLogs returns it (hex strings).

    The hot path keeps logs in this form from the wire to the decoder: building an object
    per log costs more than the rest of the decode of a Transfer.
    """

    address: str
    topics: list[str]
    data: str
    blockNumber: str
    blockHash: str
    blockTimestamp: str
    transactionHash: str
    transactionIndex: str
    logIndex: str
    removed: bool
