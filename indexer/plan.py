"""Range algebra (pure): what is done, what is left, how to cut it, and the watermark.

Work is tracked per *source* (one configured contract of a chain). A *unit* is one block range
and the sources to fetch over it; a leased unit never straddles a table partition (see
``pieces``), so its rows go to one leaf partition per table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from indexer.types import BlockRange


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    start_block: int
    factory: str | None = None  # the source whose events discover this one's addresses


@dataclass(frozen=True, slots=True)
class Unit:
    range: BlockRange
    sources: tuple[str, ...]
    factory: str | None = None  # set when the sources are children of this factory


def merge(ranges: Iterable[BlockRange]) -> list[BlockRange]:
    """Sorted ranges with overlapping and adjacent ones coalesced."""
    out: list[BlockRange] = []
    for r in sorted(ranges):
        if out and r.start <= out[-1].end + 1:
            if r.end > out[-1].end:
                out[-1] = BlockRange(out[-1].start, r.end)
        else:
            out.append(r)
    return out


def subtract(rng: BlockRange, done: Iterable[BlockRange]) -> list[BlockRange]:
    """The parts of ``rng`` not covered by ``done``, in order."""
    left: list[BlockRange] = []
    cursor = rng.start
    for d in merge(done):
        if d.end < cursor:
            continue
        if d.start > rng.end:
            break
        if d.start > cursor:
            left.append(BlockRange(cursor, d.start - 1))
        cursor = max(cursor, d.end + 1)
        if cursor > rng.end:
            return left
    if cursor <= rng.end:
        left.append(BlockRange(cursor, rng.end))
    return left


def covered_until(start: int, done: Iterable[BlockRange]) -> int:
    """Highest block ``b`` such that ``[start, b]`` is covered; ``start - 1`` if none is."""
    reach = start - 1
    for d in merge(done):
        if d.start > reach + 1:
            break
        reach = max(reach, d.end)
    return reach


def watermark(sources: Sequence[Source], done: Mapping[str, Sequence[BlockRange]]) -> int:
    """Highest block up to which every source is complete (blocks before a source's start count
    as complete for it); -1 when nothing is."""
    if not sources:
        return -1
    return min(covered_until(s.start_block, done.get(s.name, ())) for s in sources)


def todo(
    sources: Sequence[Source], done: Mapping[str, Sequence[BlockRange]], end: int
) -> list[Unit]:
    """Maximal units covering what is left up to ``end``: ranges over which the set of sources
    to fetch is constant. Children of a factory are planned apart from everything else."""
    groups: dict[str | None, list[Source]] = {}
    for s in sources:
        groups.setdefault(s.factory, []).append(s)
    units: list[Unit] = []
    for factory, members in groups.items():
        left = {
            s.name: subtract(BlockRange(s.start_block, end), done.get(s.name, ()))
            for s in members
            if s.start_block <= end
        }
        units.extend(_sweep(left, factory))
    units.sort(key=lambda u: (u.range.start, u.factory is not None, u.range.end))
    return units


def intersect(ranges: Iterable[BlockRange], rng: BlockRange) -> list[BlockRange]:
    """The parts of ``ranges`` inside ``rng``, merged, in order."""
    out = []
    for r in merge(ranges):
        if r.end < rng.start or r.start > rng.end:
            continue
        out.append(BlockRange(max(r.start, rng.start), min(r.end, rng.end)))
    return out


def redo(
    sources: Sequence[Source], done: Mapping[str, Sequence[BlockRange]], rng: BlockRange
) -> list[Unit]:
    """Maximal units over the blocks of ``rng`` that are done, for the sources done there
    (what a re-index fetches again); children of a factory apart, as in ``todo``."""
    groups: dict[str | None, list[Source]] = {}
    for s in sources:
        groups.setdefault(s.factory, []).append(s)
    units: list[Unit] = []
    for factory, members in groups.items():
        units.extend(_sweep({s.name: intersect(done.get(s.name, ()), rng) for s in members},
                            factory))
    units.sort(key=lambda u: (u.range.start, u.factory is not None, u.range.end))
    return units


def _sweep(left: Mapping[str, list[BlockRange]], factory: str | None) -> list[Unit]:
    cuts: set[int] = set()
    for parts in left.values():
        for p in parts:
            cuts.add(p.start)
            cuts.add(p.end + 1)
    points = sorted(cuts)
    units: list[Unit] = []
    for a, b in zip(points, points[1:], strict=False):
        seg = BlockRange(a, b - 1)
        names = tuple(sorted(n for n, parts in left.items() if any(seg.start in p for p in parts)))
        if not names:
            continue
        if units and units[-1].sources == names and units[-1].range.end + 1 == seg.start:
            units[-1] = Unit(BlockRange(units[-1].range.start, seg.end), names, factory)
        else:
            units.append(Unit(seg, names, factory))
    return units


def next_size(
    current: int, logs: int, blocks: int, *, target_logs: int, lo: int = 1, hi: int = 100_000
) -> int:
    """Range size for the next unit given the density of the last one: aim at ``target_logs``
    logs per unit, grow at most 2x and shrink at most 4x per step."""
    if blocks <= 0:
        return current
    if logs == 0:
        wanted = current * 2
    else:
        wanted = int(target_logs * blocks / logs)
    wanted = max(current // 4, min(current * 2, wanted))
    return max(lo, min(hi, wanted))


def pieces(rng: BlockRange, span: int) -> list[BlockRange]:
    """``rng`` cut at partition boundaries."""
    out = []
    start = rng.start
    while start <= rng.end:
        end = min(rng.end, (start // span + 1) * span - 1)
        out.append(BlockRange(start, end))
        start = end + 1
    return out
