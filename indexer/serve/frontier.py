"""What the database holds, complete, as of one snapshot (pure): per chain its head, safe
head and indexed block (the watermark over its sources), per table and chain the block up to
which every source writing that table is complete, and the reorg epochs.

The API serves a table's rows of a chain only up to that block: below it no block is missing a
row (several workers commit units out of order, and a range above a gap is not complete), so a
page, a window or a subscription never presents part of a block range as all of it.

Sources are those of the chain files given to ``serve --chain`` (a source removed from a chain
file stops holding the indexed block back), else every source registered in the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from indexer.plan import covered_until, merge
from indexer.types import BlockRange


@dataclass(frozen=True, slots=True)
class ChainRow:
    chain_id: int
    name: str
    finality_depth: int
    reorg_epoch: int


@dataclass(frozen=True, slots=True)
class SourceRow:
    id: int
    chain_id: int
    key: str
    table: str
    start_block: int


@dataclass(frozen=True, slots=True)
class RangeRow:
    chain_id: int
    coverage: int
    from_block: int
    to_block: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The rows one poll reads, in one transaction."""

    chains: tuple[ChainRow, ...]
    sources: tuple[SourceRow, ...]
    coverages: Mapping[int, tuple[int, ...]]  # id -> source ids
    ranges: tuple[RangeRow, ...]
    epoch: str  # pages.EPOCH as read in the same snapshot


@dataclass(frozen=True, slots=True)
class Scope:
    """What ``serve --chain`` was given: per chain id, the keys of the file's sources (each
    with its start block, for sources the database has not registered yet) and its name."""

    sources: Mapping[int, Mapping[str, tuple[str, int]]]  # chain -> key -> (table, start)


@dataclass(frozen=True, slots=True)
class ChainView:
    chain_id: int
    name: str
    finality_depth: int
    head: int  # the node's head when known (serve --chain), else the highest block recorded
    indexed: int  # every source of the chain is complete up to here; -1: nothing yet
    reorg_epoch: int

    @property
    def safe(self) -> int:
        return self.head - self.finality_depth

    @property
    def lag(self) -> int:
        return max(0, self.head - self.indexed)


@dataclass(frozen=True, slots=True)
class Frontier:
    chains: Mapping[int, ChainView]
    tables: Mapping[str, Mapping[int, int]]  # table -> chain id -> complete up to this block
    epoch: str = ""
    names: Mapping[str, int] = field(default_factory=dict)  # chain name -> id

    def bounds(self, table: str, finalized: bool) -> dict[int, int]:
        """Per chain, the highest block of ``table`` an answer may contain."""
        out = {}
        for chain_id, block in self.tables.get(table, {}).items():
            view = self.chains.get(chain_id)
            if view is None:
                continue
            out[chain_id] = min(block, view.safe) if finalized else block
        return out


def compute(snap: Snapshot, scope: Scope | None = None,
            heads: Mapping[int, int] | None = None) -> Frontier:
    """The frontier of a snapshot; ``heads``: the nodes' heads, where known."""
    keys = {s.id: s for s in snap.sources}
    done: dict[tuple[int, str], list[BlockRange]] = {}
    highest: dict[int, int] = {}
    for r in snap.ranges:
        highest[r.chain_id] = max(highest.get(r.chain_id, -1), r.to_block)
        for sid in snap.coverages.get(r.coverage, ()):
            s = keys.get(sid)
            if s is not None and s.chain_id == r.chain_id:
                done.setdefault((r.chain_id, s.key), []).append(BlockRange(r.from_block,
                                                                           r.to_block))
    chains: dict[int, ChainView] = {}
    tables: dict[str, dict[int, int]] = {}
    for c in snap.chains:
        if scope is not None and c.chain_id not in scope.sources:
            continue
        wanted = _sources(c.chain_id, snap.sources, scope)
        reach = {}
        for key, (table, start) in wanted.items():
            reach[key] = covered_until(start, merge(done.get((c.chain_id, key), ())))
            per_table = tables.setdefault(table, {})
            per_table[c.chain_id] = min(per_table.get(c.chain_id, reach[key]), reach[key])
        indexed = min(reach.values(), default=-1)
        head = max(highest.get(c.chain_id, -1), indexed)
        if heads and c.chain_id in heads:
            head = max(head, heads[c.chain_id])
        chains[c.chain_id] = ChainView(c.chain_id, c.name, c.finality_depth, head, indexed,
                                       c.reorg_epoch)
    return Frontier(chains, tables, snap.epoch, {v.name: k for k, v in chains.items()})


def _sources(chain_id: int, registered: Iterable[SourceRow],
             scope: Scope | None) -> dict[str, tuple[str, int]]:
    """Source key -> (table, start block) of the sources that count on this chain."""
    if scope is None:
        return {s.key: (s.table, s.start_block) for s in registered if s.chain_id == chain_id}
    return dict(scope.sources.get(chain_id, {}))
