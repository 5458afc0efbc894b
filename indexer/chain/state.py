"""What is done on one chain, as this process knows it: the blocks each source (one event of
one contract at one target: ``chain.keys``) has committed, the children each factory has
discovered, and the reorg epoch they were read at.

``ChainState`` is the one owner of this state: only its methods change it. Postgres stays the
record (``reload`` reads it back); the methods here keep the view current between reloads with
what this process itself committed. A reload assigns everything it read at once, from one
database snapshot, so no unit is ever planned against the epoch of one moment and the done
ranges or children of another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from indexer.plan import Source, merge, watermark
from indexer.sink.api import Child, Sink, Snapshot
from indexer.types import BlockRange


class ChainState:
    def __init__(self, sources: Sequence[Source]) -> None:
        self._sources = tuple(sources)
        self._done: dict[str, list[BlockRange]] = {}
        self._children: dict[str, dict[str, int]] = {}
        self._epoch = 0

    @property
    def sources(self) -> tuple[Source, ...]:
        return self._sources

    @property
    def epoch(self) -> int:
        """The reorg epoch the view was read at: a backfill commit carries it, and is refused
        when a repair ran since."""
        return self._epoch

    @property
    def done(self) -> Mapping[str, Sequence[BlockRange]]:
        """Source -> committed ranges, merged and in order (read-only)."""
        return MappingProxyType(self._done)

    @property
    def children(self) -> Mapping[str, Mapping[str, int]]:
        """Child contract -> address (lower-case hex) -> block of its discovery (read-only)."""
        return MappingProxyType(self._children)

    def watermark(self) -> int:
        """Highest block up to which every source is complete; -1 when none is."""
        return watermark(self._sources, self._done)

    def reach(self, sources: Sequence[str]) -> int:
        """Highest block up to which all of ``sources`` are complete (how far a factory's
        discovery reaches)."""
        wanted = set(sources)
        return watermark([s for s in self._sources if s.name in wanted], self._done)

    def retarget(self, sources: Sequence[Source]) -> None:
        """The chain file changed: these are the sources from now on (what is done of each,
        current or not, stays known)."""
        self._sources = tuple(sources)

    def record(self, sources: Sequence[str], rng: BlockRange) -> None:
        """``rng`` was committed for ``sources`` (by this process)."""
        for s in sources:
            self._done[s] = merge([*self._done.get(s, []), rng])

    def remember(self, children: Sequence[Child]) -> None:
        """Children discovered by a commit of this process (the lowest block of announcement
        is kept when one is announced twice)."""
        for c in children:
            known = self._children.setdefault(c.contract, {})
            addr = "0x" + c.address.hex()
            known[addr] = min(c.block_number, known.get(addr, c.block_number))

    def forget_above(self, block: int) -> None:
        """A repair deleted everything above ``block``: children discovered there are gone
        (the done ranges are read back by ``reload``)."""
        for known in self._children.values():
            for addr in [a for a, b in known.items() if b > block]:
                del known[addr]

    def apply(self, snap: Snapshot) -> None:
        """Take everything of ``snap`` at once."""
        self._epoch = snap.epoch
        self._done = {s: merge(rs) for s, rs in snap.done.items()}
        self._children = {c: dict(known) for c, known in snap.children.items()}

    async def reload(self, sink: Sink) -> None:
        """What every worker committed: only the database knows."""
        self.apply(await sink.snapshot())
