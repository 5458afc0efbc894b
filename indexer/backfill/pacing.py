"""How large the next unit is and whether another may start now (pure: no clock, no I/O).

- Slow start: the density of logs is unknown until a first unit returns, so the first unit is
  small (``SLOW_START_BLOCKS``) and runs alone.
- Size follows density: each committed unit of the main sources moves the size towards
  ``target_logs`` logs per unit (``plan.next_size``: at most 2x up, 4x down per step). The
  children of each factory are sized apart, from their own density (they start at the main
  size): sparse children do not go one dense main unit at a time.
- Fetches in flight: at most ``concurrency`` units are being fetched at once. A unit whose
  answer is in memory no longer counts among them while it is decoded and committed, so the
  node is asked for the next ranges while Postgres writes the last ones; at most
  ``2 x concurrency`` units are in flight in all.
- Memory budget: logs fetched or expected but not yet committed. A new unit starts only while
  the estimate of everything in flight fits ``2 x target_logs x concurrency`` logs (or when
  nothing else is in flight: one unit, however dense, always runs).
- An answer too large to read: the unit is asked again for an eighth of its blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from indexer.plan import Unit, next_size

SLOW_START_BLOCKS = 16


@dataclass(slots=True)
class Pacer:
    target_logs: int
    concurrency: int
    max_range: int
    size: int  # blocks of the next unit
    density: float = 0.0  # logs per block, moving average over committed units
    measured: bool = False  # a unit of the main sources has been committed
    held: dict[Unit, int] = field(default_factory=dict)  # unit in flight -> logs (estimated)
    fetching: set[Unit] = field(default_factory=set)  # in flight, answer not in memory yet
    children: dict[str, tuple[int, float]] = field(default_factory=dict)  # factory -> (size,
    # density) of its children's units, once one is committed

    @classmethod
    def start(cls, *, target_logs: int, concurrency: int, max_range: int,
              first_range: int) -> Pacer:
        return cls(target_logs, concurrency, max_range,
                   size=max(1, min(first_range, SLOW_START_BLOCKS)))

    @property
    def budget(self) -> int:
        return 2 * self.target_logs * self.concurrency

    def estimate(self, blocks: int, factory: str | None = None) -> int:
        density = self.children[factory][1] if factory in self.children else self.density
        return int(density * blocks)

    def size_for(self, factory: str | None) -> int:
        """Blocks of the next unit of the main sources (None) or of ``factory``'s children."""
        return self.children[factory][0] if factory in self.children else self.size

    def may_start(self) -> bool:
        """Whether another unit may start now, next to those in flight."""
        if not self.held:
            return True
        if not self.measured and self.density == 0:
            return False  # slow start: nothing is known of the density yet
        if len(self.fetching) >= self.concurrency or len(self.held) >= 2 * self.concurrency:
            return False
        return sum(self.held.values()) + self.estimate(self.size) <= self.budget

    def started(self, unit: Unit) -> None:
        self.held[unit] = self.estimate(len(unit.range), unit.factory)
        self.fetching.add(unit)

    def fetched(self, unit: Unit, logs: int) -> None:
        """The unit's answer is in memory: its real size replaces the estimate."""
        if unit in self.held:
            self.held[unit] = logs
        self.fetching.discard(unit)

    def ended(self, unit: Unit) -> None:
        self.held.pop(unit, None)
        self.fetching.discard(unit)

    def committed(self, unit: Unit, logs: int) -> None:
        """A unit was committed with ``logs`` logs: learn the density, size the next unit."""
        blocks = len(unit.range)
        if unit.factory is not None:  # children are sized apart: not by the main units
            size, old = self.children.get(unit.factory, (self.size, 0.0))
            density = logs / blocks if old == 0 else 0.7 * old + 0.3 * logs / blocks
            self.children[unit.factory] = (
                next_size(size, logs, blocks, target_logs=self.target_logs, hi=self.max_range),
                density)
            return
        density = logs / blocks
        self.density = density if self.density == 0 else 0.7 * self.density + 0.3 * density
        self.measured = True
        self.size = next_size(self.size, logs, blocks, target_logs=self.target_logs,
                              hi=self.max_range)

    def too_large(self, unit: Unit) -> int:
        """The unit's answer was too large to read: the next units are an eighth of it."""
        size = max(1, len(unit.range) // 8)
        if unit.factory is not None:
            self.children[unit.factory] = (size, self.children.get(unit.factory, (0, 0.0))[1])
        else:
            self.size = size
        return size
