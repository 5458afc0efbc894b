"""The live tail's own blocks: its tip and the linked blocks below it that it keeps in memory
(as stored in ``indexer.blocks``), and when each new block was first seen (for the latency
metric). ``Window`` is their one owner."""

from __future__ import annotations

from collections.abc import Sequence

from indexer.types import BlockHeader, BlockRange


class Window:
    def __init__(self, retain: int) -> None:
        self.retain = retain  # blocks kept below the tip
        self.tip: BlockHeader | None = None
        self.recent: dict[int, BlockHeader] = {}
        self._seen: dict[int, float] = {}  # block -> unix time the follower first learned of it

    def get(self, number: int) -> BlockHeader | None:
        return self.recent.get(number)

    @property
    def lowest(self) -> int | None:
        return min(self.recent) if self.recent else None

    def load(self, page: Sequence[BlockHeader]) -> None:
        """The stored live blocks, highest first."""
        self.recent = {h.number: h for h in page}
        self.tip = page[0] if page else None

    def add(self, chain: Sequence[BlockHeader]) -> None:
        """Linked blocks just committed (ascending): the last one is the new tip."""
        for h in chain:
            self.recent[h.number] = h
        self.tip = chain[-1]

    def cut_above(self, keep: int, fork: BlockHeader | None) -> None:
        """A repair deleted everything above ``keep``; ``fork``: that block's header, the
        tip when nothing of the window is left (None: no tip)."""
        self.recent = {n: h for n, h in self.recent.items() if n <= keep}
        self.tip = self.recent[max(self.recent)] if self.recent else fork

    def prune(self) -> int:
        """Forget blocks more than ``retain`` below the tip; the floor kept."""
        assert self.tip is not None
        floor = self.tip.number - self.retain
        self.recent = {n: h for n, h in self.recent.items() if n >= floor}
        return floor

    def note_seen(self, blocks: BlockRange, now: float) -> None:
        for n in range(blocks.start, blocks.end + 1):
            self._seen.setdefault(n, now)

    def take_seen(self, number: int, default: float) -> float:
        return self._seen.pop(number, default)

    def forget_seen_below(self, number: int) -> None:
        self._seen = {n: t for n, t in self._seen.items() if n > number}
