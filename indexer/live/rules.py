"""Pure decisions of the live tail: linkage checks, the fork point, what to fetch next, and
whether a lower head is a reorg or a node behind.

A block hash commits to every ancestor, so when a stored block's hash equals the node's hash at
that height, every stored block below it is on the node's chain too. The fork point is thus the
highest stored block the node agrees with; everything above it goes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from indexer.plan import Source, Unit, covered_until, subtract, todo
from indexer.types import BlockHeader, BlockRange


def first_unlinked(prev: BlockHeader | None, headers: Sequence[BlockHeader]) -> int | None:
    """Index of the first of ``headers`` (consecutive numbers, ascending) whose parent hash is
    not the hash of the block before it (``prev`` before the first); None when all link.
    Without ``prev`` the first header is taken as it is."""
    before = prev
    for i, h in enumerate(headers):
        if before is not None and (h.number != before.number + 1 or h.parent_hash != before.hash):
            return i
        before = h
    return None


def fork_point(stored: Sequence[BlockHeader], remote: Mapping[int, bytes]) -> int | None:
    """The highest of ``stored`` (any order) whose hash the node has at that height and that
    lies below every stored block the node disagrees with (``remote``: number -> the node's
    hash, for the heights asked; others are not judged). None when there is no such block.

    For a linked chain of stored blocks this is simply the highest agreeing one; for
    checkpoints written at different times it also keeps out an old-branch checkpoint that
    sits below one fetched after the switch."""
    lowest_bad = min((h.number for h in stored
                      if h.number in remote and remote[h.number] != h.hash), default=None)
    agreed = [h.number for h in stored if remote.get(h.number) == h.hash
              and (lowest_bad is None or h.number < lowest_bad)]
    return max(agreed, default=None)


Discovery = Mapping[str, Sequence[str]]  # factory -> the sources announcing its children


def discovery_reach(sources: Sequence[Source], done: Mapping[str, Sequence[BlockRange]],
                    discovery: Discovery, factory: str) -> int:
    """Highest block up to which every source announcing ``factory``'s children is done."""
    start = {s.name: s.start_block for s in sources}
    keys = [k for k in discovery.get(factory, ()) if k in start]
    if not keys:
        return -1
    return min(covered_until(start[k], done.get(k, ())) for k in keys)


def live_units(sources: Sequence[Source], done: Mapping[str, Sequence[BlockRange]],
               rng: BlockRange, discovery: Discovery) -> list[Unit]:
    """The units the live follower fetches over ``rng`` (new blocks above the safe head):
    every source active over all of ``rng`` and with none of it done yet; children of a factory
    only once the factory's discovery is complete up to ``rng.start - 1`` (children it
    announces inside ``rng`` come from the same fetch). What is left out here (a source
    starting inside ``rng``, children whose factory is still being backfilled) is done by the
    backfill once the blocks sink under the safe head."""

    def free(s: Source) -> bool:
        left = subtract(rng, done.get(s.name, ()))
        return s.start_block <= rng.start and len(left) == 1 and left[0] == rng

    main = tuple(sorted(s.name for s in sources if s.factory is None and free(s)))
    units = [Unit(rng, main)] if main else []
    groups: dict[str, list[str]] = {}
    for s in sources:
        if s.factory is None or not free(s):
            continue
        reach = discovery_reach(sources, done, discovery, s.factory)
        announced_here = set(discovery.get(s.factory, ())) <= set(main)
        if reach >= rng.end or (reach >= rng.start - 1 and announced_here):
            groups.setdefault(s.factory, []).append(s.name)
    units += [Unit(rng, tuple(sorted(names)), factory) for factory, names in sorted(groups.items())]
    return units


def next_span(tip: int | None, safe: int, head: int, *, most: int, partition: int,
              reach: int) -> BlockRange | None:
    """The next blocks for the live tail: from above its tip while the tip is within ``reach``
    blocks of the head (so that its own linked blocks cover the window again after a repair or
    a short stop), else from above the safe head (the blocks under it are the backfill's); to the
    head, at most ``most`` blocks and inside one table partition of ``partition`` blocks."""
    if tip is not None and head - tip <= reach:
        start = tip + 1
    else:
        start = max(-1 if tip is None else tip, safe, -1) + 1
    if start > head:
        return None
    return BlockRange(start, min(head, start + most - 1, (start // partition + 1) * partition - 1))


def live_holes(sources: Sequence[Source], done: Mapping[str, Sequence[BlockRange]],
               window: BlockRange, discovery: Discovery) -> list[Unit]:
    """What is left undone inside ``window`` (blocks above the safe head the follower has
    passed): sources left out when their blocks were new, e.g. children whose factory was still
    being backfilled. Children only up to where their factory's discovery is complete."""
    below = [BlockRange(0, window.start - 1)] if window.start > 0 else []
    clipped = {s.name: [*below, *done.get(s.name, ())] for s in sources}
    units: list[Unit] = []
    for u in todo(sources, clipped, window.end):
        if u.factory is not None:
            reach = discovery_reach(sources, done, discovery, u.factory)
            if reach < u.range.start:
                continue
            u = Unit(BlockRange(u.range.start, min(u.range.end, reach)), u.sources, u.factory)
        units.append(u)
    return units


def live_cut(sources: Sequence[Source], done: Mapping[str, Sequence[BlockRange]],
             rng: BlockRange) -> BlockRange:
    """The first part of ``rng`` over which every source is either wholly to do or wholly done
    (and none starts inside), so that one unit set covers it: a source done over part of the
    span (the backfill got there first, or a repair trimmed it) or starting inside it is then
    taken from where its state changes, by the next span."""
    end = rng.end
    for s in sources:
        if s.start_block > rng.start:
            end = min(end, s.start_block - 1)
            continue
        left = subtract(BlockRange(rng.start, end), done.get(s.name, ()))
        if not left:
            continue
        end = min(end, left[0].end if left[0].start == rng.start else left[0].start - 1)
    return BlockRange(rng.start, end)
