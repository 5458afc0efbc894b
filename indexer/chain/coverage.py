"""How far each event of each contract is (pure): the blocks its sources still need up to a
target, as ``indexer status`` and ``/status`` show it ("Token Approval: backfilling, 12%")."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from indexer.chain.catalog import Catalog
from indexer.plan import subtract
from indexer.types import BlockRange


@dataclass(frozen=True, slots=True)
class EventProgress:
    contract: str
    event: str  # the event's name (its signature when the name is overloaded)
    sources: int  # addresses (or factory children) x this event
    blocks_needed: int  # up to the target, over all its sources
    blocks_left: int
    most_left: int  # the blocks left of the source furthest behind
    eta_seconds: float | None = None

    def with_rate(self, blocks_per_second: float) -> EventProgress:
        """The same, with an ETA at this rate of blocks (per source) per second."""
        if self.most_left == 0 or blocks_per_second <= 0:
            return self
        return dataclasses.replace(self, eta_seconds=self.most_left / blocks_per_second)

    @property
    def state(self) -> str:
        return "done" if self.blocks_left == 0 else "backfilling"

    @property
    def percent(self) -> float:
        if not self.blocks_needed:
            return 100.0
        return 100.0 * (self.blocks_needed - self.blocks_left) / self.blocks_needed

    def line(self) -> str:
        """``Token Approval: backfilling, 12%, ETA 3 min`` (the state alone when done)."""
        if self.state == "done":
            return f"{self.contract} {self.event}: done"
        eta = "" if self.eta_seconds is None else f", ETA {_duration(self.eta_seconds)}"
        return f"{self.contract} {self.event}: backfilling, {self.percent:.0f}%{eta}"


def event_progress(catalog: Catalog, done: Mapping[str, Sequence[BlockRange]],
                   target: int) -> list[EventProgress]:
    """Per (contract, event) of the catalogue, in file order: blocks needed and left."""
    groups: dict[tuple[str, str], list[str]] = {}
    for key, src in catalog.keyed.items():
        names = [s.name for s in catalog.specs[src.contract]]
        event = src.spec.signature if names.count(src.spec.name) > 1 else src.spec.name
        groups.setdefault((src.contract, event), []).append(key)
    out = []
    for (contract, event), keys in groups.items():
        needed = left = most = 0
        for key in keys:
            start = catalog.keyed[key].start_block
            if start > target:
                continue
            needed += target - start + 1
            mine = sum(len(r) for r in subtract(BlockRange(start, target), done.get(key, ())))
            left += mine
            most = max(most, mine)
        out.append(EventProgress(contract, event, len(keys), needed, left, most))
    return out


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
