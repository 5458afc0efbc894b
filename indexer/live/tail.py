"""One look at the head and the work it calls for: fetch the new blocks above the live tail's
tip, check that their headers link to each other and to the stored block below them and that
every log came from those very headers, and commit the rows, the range records and the block
rows in one transaction. A broken link is judged by ``Reorgs``; an ``Undo`` it orders is
handed back to the follower, which carries it out.

What the live tail leaves out (a source starting inside a span, children of a factory still
being backfilled) is filled in once its blocks are complete (``fill``), or done by the backfill
once they sink below the safe head.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from indexer import metrics
from indexer.chain.fetch import Fetched
from indexer.chain.parts import ChainParts
from indexer.live.reorgs import Reorgs, Undo
from indexer.live.rules import first_unlinked, live_cut, live_holes, live_units, next_span
from indexer.live.trace import Trace
from indexer.live.window import Window
from indexer.plan import Unit, pieces
from indexer.sink.api import Batch, StaleBranch, Writer
from indexer.types import BlockHeader, BlockRange

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 1000  # every such block of the live tail stays in indexer.blocks for good
MAX_SPAN = 32  # blocks fetched and committed together while catching up
PRUNE_EVERY = 256  # commits between prunes of indexer.blocks
COMPACT_EVERY = 500  # commits between merges of range records


class BranchMoved(Exception):  # noqa: N818 - a signal: the fetched blocks changed under us
    """Headers and logs of one step did not come from one branch: ask again."""


@dataclass(frozen=True, slots=True)
class Tick:
    caught_up: bool  # the tip is at the head: pause until the next poll
    undo: Undo | None = None  # an order to carry out before anything else


class Tail:
    def __init__(self, parts: ChainParts, window: Window, reorgs: Reorgs, worker: str,
                 trace: Trace | None, on_committed: Callable[[Unit], None] | None = None) -> None:
        self.parts = parts
        self.on_committed = on_committed
        self.window = window
        self.reorgs = reorgs
        self.worker = f"live:{worker}"
        self.depth = parts.chain.finality_depth
        self.trace = trace
        self.commits = 0

    async def tick(self, fence: int) -> Tick:
        """Look at the head once and index what it calls for."""
        p = self.parts
        head = await p.source.get_header("latest")
        now = p.clock.time()
        if head is None:
            return Tick(True)
        p.head.seen(head)
        w = self.window
        if w.tip is None:  # nothing of its own to link to: the backfill's blocks are checked
            undo = await self.reorgs.verify_stored(head)
            if undo is not None:
                return Tick(False, undo)
        if self.depth == 0:  # every block is final: the backfill indexes them all
            return Tick(True)
        tip = w.tip
        lo = max(head.number - MAX_SPAN * 4, (tip.number + 1) if tip else 0)
        if lo <= head.number:
            w.note_seen(BlockRange(lo, head.number), now)
        if tip is not None and head.number <= tip.number:
            undo = await self.reorgs.at_or_below(head)
            if undo is not None:
                return Tick(False, undo)
        else:
            self.reorgs.head_above_tip()
            span = next_span(tip.number if tip else None, head.number - self.depth,
                             head.number, most=MAX_SPAN, partition=p.chain.partition_blocks,
                             reach=w.retain)
            if span is not None:
                undo = await self._step(span, head, fence)
                if undo is not None:
                    return Tick(False, undo)
                if w.tip is None or w.tip.number < head.number:
                    return Tick(False)
        if w.tip is not None and w.tip.number == head.number:
            await self._fill(fence)
        return Tick(True)

    async def _step(self, span: BlockRange, head: BlockHeader, fence: int) -> Undo | None:
        """Fetch, check and commit ``span``; an order to undo when it does not link."""
        p = self.parts
        w = self.window
        prev = w.get(span.start - 1)  # the live tail's own block, if it is there
        if prev is None and w.tip is None:  # the first span: link it to the backfill's
            prev = await p.sink.stored_block(span.start - 1)
        sources, done = p.catalog.sources, p.state.done
        span = live_cut(sources, done, span)
        units = live_units(sources, done, span, p.catalog.discovery)
        known = {span.end: head} if span.end == head.number else {}
        needed = [n for n in range(span.start, span.end + 1) if n not in known]
        got, result = await asyncio.gather(
            p.source.get_headers(needed),
            p.fetcher.together(units, p.state.children, known.get(span.end)) if units
            else _nothing(span))
        headers = {**known, **got}
        if result.children and any(u.factory is not None for u in units):
            # Children announced inside the span: ask again with them known.
            p.state.remember(result.children)
            result = await p.fetcher.together(units, p.state.children)
        chain = [headers[n] for n in range(span.start, span.end + 1)]
        for n, h in result.headers.items():
            if n in span and headers[n].hash != h.hash:
                raise BranchMoved(f"block {n} changed between the header and the logs")
        bad = first_unlinked(prev, chain)
        if bad == 0:
            return await self.reorgs.judge(head)
        if bad is not None:
            raise BranchMoved(f"block {chain[bad].number} does not link to block "
                              f"{chain[bad].number - 1}")
        if prev is None and w.tip is not None:
            undo = await self.reorgs.check_tip(head)  # nothing stored right below: check the tip
            if undo is not None:
                return undo
        await self._commit(span, chain, units, result, fence)
        return None

    async def _commit(self, span: BlockRange, chain: Sequence[BlockHeader],
                      units: Sequence[Unit], result: Fetched, fence: int) -> None:
        p = self.parts
        sources = tuple(sorted({s for u in units for s in u.sources}))
        batch = Batch(span, sources, result.rows, result.children, blocks=chain,
                      checkpoints=frozenset(h.number for h in chain
                                            if h.number % CHECKPOINT_EVERY == 0))
        await p.sink.commit(batch, Writer(self.worker, fence=fence, live_term=fence))
        committed = p.clock.time()
        p.state.remember(result.children)
        self.window.add(chain)
        logs = self.trace.rows_per_block(result.rows) if self.trace is not None else {}
        for h in chain:
            seen = self.window.take_seen(h.number, committed)
            metrics.BLOCK_COMMIT_LATENCY.labels(chain=p.name).observe(max(0.0, committed - seen))
            if self.trace is not None:
                self.trace.write(h, seen, committed, logs.get(h.number, 0))
        self._committed(span, sources, result)
        self.commits += 1
        if self.commits % PRUNE_EVERY == 0:
            await self._prune()
        if self.commits % COMPACT_EVERY == 0:
            await p.sink.compact()

    async def _fill(self, fence: int) -> None:
        """Index what was left out of the blocks the live tail holds (see ``live_holes``):
        children whose factory was still being backfilled, ranges a repair trimmed while the
        backfill had them. The answers are checked against the stored hashes of those blocks."""
        w = self.window
        tip, lowest = w.tip, w.lowest
        assert tip is not None
        if lowest is None:
            return
        p = self.parts
        lo = max(lowest, tip.number - w.retain + 1)
        for u in live_holes(p.catalog.sources, p.state.done, BlockRange(lo, tip.number),
                            p.catalog.discovery):
            for piece in pieces(u.range, p.chain.partition_blocks):
                unit = Unit(piece, u.sources, u.factory)
                r = await p.fetcher.unit(unit, p.state.children)
                for n, h in r.headers.items():
                    mine = w.get(n)
                    if mine is not None and mine.hash != h.hash:
                        raise StaleBranch(f"block {n} was followed as 0x{mine.hash.hex()} but "
                                          f"now reads 0x{h.hash.hex()}")
                await p.sink.commit(Batch(piece, unit.sources, r.rows, r.children),
                                    Writer(self.worker, fence=fence, live_term=fence))
                p.state.remember(r.children)
                self._committed(piece, unit.sources, r)

    def _committed(self, rng: BlockRange, sources: Sequence[str], result: Fetched) -> None:
        p = self.parts
        p.state.record(sources, rng)
        if self.on_committed is not None and sources:
            self.on_committed(Unit(rng, tuple(sources)))
        p.progress.wrote(result.rows)
        p.progress.covered(len(rng))
        p.watermark_moved()
        p.progress.committed(p.clock.time())

    async def _prune(self) -> None:
        w = self.window
        floor = w.prune()
        pruned = await self.parts.sink.prune_blocks(floor)
        assert w.tip is not None
        w.forget_seen_below(w.tip.number - MAX_SPAN * 4)
        log.debug("%s: live tail: pruned %d block rows below %d", self.parts.name, pruned, floor)


async def _nothing(span: BlockRange) -> Fetched:
    return Fetched(Unit(span, ()), {}, [], 0, 0)
