"""The live tail of one chain: index the blocks above the safe head as they appear, and keep
the tables equal to the canonical chain through reorgs.

One follower per chain leads at a time (a lease of group ``live`` on the lease board, with a
short TTL, and a fence recorded in Postgres so that a follower that lost its lease can neither
commit nor delete). The leader:

- polls the head every ``poll_interval`` (or is woken by a websocket newHeads subscription);
- fetches the new blocks, checks that their headers link to each other and to the stored block
  below them, and that every log came from those very headers;
- commits the rows, the range records and the block rows (``indexer.blocks``) in one transaction;
- on a broken link, walks the stored hashes down to the highest block the node agrees with
  (the fork point) and deletes everything above it in one transaction, then goes on from there
  (``live_repair.py``).

Backfill indexes up to the safe head and skips what is recorded done, so the two meet without
any hand-over state: whatever the follower leaves out (a source starting inside a span, children
of a factory still being backfilled) is picked up by the backfill once it sinks below the safe head.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from typing import TextIO

import asyncpg

from indexer import metrics
from indexer.cancel import raise_if_cancelled
from indexer.claims import BOARD_ERRORS, pieces
from indexer.leadership import Leadership
from indexer.lease import LIVE_GROUP, LIVE_TTL, Lease, LeaseLost
from indexer.live_repair import Host, Repairs
from indexer.pipeline import UnitResult
from indexer.plan import Unit
from indexer.reorg import (
    first_unlinked,
    live_cut,
    live_holes,
    live_units,
    next_span,
)
from indexer.rpc.errors import RpcError
from indexer.rpc.heads import HeadSubscription
from indexer.sink.postgres import TRANSIENT_DB, Fenced, RangeConflict, StaleBranch
from indexer.sink.reorgs import prune_blocks, stored_block, stored_blocks
from indexer.types import BlockHeader, BlockRange

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 1000  # every such block of the live tail stays in indexer.blocks for good
MAX_SPAN = 32  # blocks fetched and committed together while catching up
PRUNE_EVERY = 256  # commits between prunes of indexer.blocks
COMPACT_EVERY = 500  # commits between merges of range records
# Failures the follower waits out (with backoff) while keeping its leadership.
RETRY: tuple[type[BaseException], ...] = (RpcError, OSError, TimeoutError, *TRANSIENT_DB)


class BranchMoved(Exception):  # noqa: N818 - a signal: the fetched blocks changed under us
    """Headers and logs of one step did not come from one branch: ask again."""


class LiveFollower(Repairs):
    def __init__(self, host: Host, worker: str, *, retain: int | None = None,
                 trace: str | None = None, wake: asyncio.Event | None = None) -> None:
        self.host = host
        self.chain = host.chain
        self.worker = worker
        self.interval = self.chain.live_poll_interval
        self.depth = self.chain.finality_depth
        # Window blocks kept in indexer.blocks below the tip (checkpoints are kept for good).
        self.retain = retain if retain is not None else max(4 * self.depth, 256)
        self.labels = {"chain": self.chain.name}
        self.tip: BlockHeader | None = None
        self.recent: dict[int, BlockHeader] = {}
        self.seen: dict[int, float] = {}  # block -> when the follower first learned of it
        self.lower_since: float | None = None
        self.verified: tuple[bytes, int, bytes] | None = None
        self.verified_at = 0.0
        self.commits = 0
        self.wake = wake or asyncio.Event()
        self.heads: HeadSubscription | None = None
        if self.chain.ws_url:
            self.heads = HeadSubscription(self.chain.ws_url, self.chain.name, self.wake,
                                          stale_after=max(3.0, 3 * self.chain.block_time))
        self.leading = False
        self.leadership = Leadership(host.board, self.chain.name, LIVE_GROUP, worker, LIVE_TTL,
                                     "live tail")
        self.conn: asyncpg.Connection | None = None  # held while leading: no pool round trips
        self._trace: TextIO | None = None
        trace = trace if trace is not None else os.environ.get("INDEXER_LIVE_TRACE")
        if trace:
            self._trace = open(trace, "a", buffering=1)  # noqa: SIM115 - lives with the follower

    # -- leadership ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                raise_if_cancelled()
                lease = await self.leadership.acquire()
                await self._while_leading(lease)
                await asyncio.sleep(self.interval)
        finally:
            if self._trace is not None:
                self._trace.close()

    async def _while_leading(self, lease: Lease) -> None:
        log.info("%s: live tail: following the head (poll every %.0f ms, fence %d%s)",
                 self.chain.name, self.interval * 1000, lease.fence,
                 "; finality_depth 0: watching the indexed blocks for reorgs only"
                 if self.depth == 0 else "")
        self.leading = True
        metrics.LIVE_LEADER.labels(**self.labels).set(1)
        follow = asyncio.create_task(self._follow(lease.fence))
        keep = asyncio.create_task(self.leadership.keep(lease))
        heads = asyncio.create_task(self.heads.run()) if self.heads is not None else None
        try:
            finished, _ = await asyncio.wait({follow, keep}, return_when=asyncio.FIRST_COMPLETED)
            for t in finished:
                t.result()
        except (LeaseLost, Fenced) as e:
            log.warning("%s: live tail: leadership lost (%s); standing by", self.chain.name, e)
            if isinstance(e, Fenced):  # the board may have lost its counter (Redis flushed)
                with contextlib.suppress(*BOARD_ERRORS, *TRANSIENT_DB):
                    await self.host.board.raise_fence(
                        self.chain.name, await self.host.db.max_fence(self.chain.chain_id))
        finally:
            self.leading = False
            metrics.LIVE_LEADER.labels(**self.labels).set(0)
            tasks = [task for task in (follow, keep, heads) if task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._drop_connection()
            await self.leadership.release(lease)

    # -- following ------------------------------------------------------------------------------

    async def _follow(self, fence: int) -> None:
        await self._load()
        failures = 0
        checked = False
        undo_from: int | None = None  # a stored block found to differ: undo from there
        reload = False
        while True:
            raise_if_cancelled()
            started = time.monotonic()
            self.wake.clear()  # a head announced from here on ends the next pause early
            try:
                if undo_from is not None:
                    await self._undo(undo_from - 1, None, fence, None, "stored block differs")
                    undo_from = None
                if reload:
                    await self.host.reload()
                    reload = False
                if not checked:  # a reorg while nobody followed: compare the stored tip first
                    await self._check_tip(fence)
                    checked = True
                caught_up = await self._tick(fence)
                failures = 0
            except BranchMoved as e:
                log.info("%s: live tail: %s; asking again", self.chain.name, e)
                await asyncio.sleep(self.interval)
                continue
            except StaleBranch as e:
                log.warning("%s: live tail: %s", self.chain.name, e)
                undo_from, checked = e.number, False
                continue
            except RangeConflict as e:  # the backfill committed some of these blocks first
                log.debug("%s: live tail: %s; re-reading what is done", self.chain.name, e)
                reload = True
                continue
            except RETRY as e:
                if isinstance(e, RpcError) and not e.retryable:
                    raise
                await self._drop_connection()
                failures += 1
                delay = min(10.0, 0.25 * 2 ** min(failures, 6))
                log.warning("%s: live tail: %s; retrying in %.1fs", self.chain.name, e, delay)
                await asyncio.sleep(delay)
                continue
            if caught_up:
                await self._pause(self.interval - (time.monotonic() - started))

    async def _connection(self) -> asyncpg.Connection:
        if self.conn is None:
            self.conn = await self.host.db.pool.acquire()
        return self.conn

    async def _drop_connection(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self.host.db.pool.release(conn)

    async def _pause(self, seconds: float) -> None:
        """Sleep until the next poll, or until a websocket newHeads wakes the follower. While
        the subscription delivers, polling is only a safety net (every 2 block times, at least
        1 s); when it stalls, the normal interval is back."""
        if self.heads is not None and self.heads.healthy:
            seconds += max(1.0, 2 * self.chain.block_time) - self.interval
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)

    async def _load(self) -> None:
        page = await stored_blocks(self.host.db, self.chain.chain_id, live=True,
                                   limit=self.retain)
        self.recent = {h.number: h for h in page}
        self.tip = page[0] if page else None

    async def _tick(self, fence: int) -> bool:
        """One look at the head and the work it calls for; True when caught up with it."""
        head = await self.host.rpc.get_header("latest")
        now = time.time()
        if head is None:
            return True
        self.host.on_head(head)
        if self.tip is None:  # nothing of its own to link to: the backfill's blocks are checked
            await self._verify_stored(fence, head)
        if self.depth == 0:  # every block is final: the backfill indexes them all
            return True
        tip = self.tip
        for n in range(max(head.number - MAX_SPAN * 4, (tip.number + 1) if tip else 0),
                       head.number + 1):
            self.seen.setdefault(n, now)
        if tip is not None and head.number <= tip.number:
            await self._at_or_below(head, fence)
        else:
            self.lower_since = None
            span = next_span(tip.number if tip else None, head.number - self.depth,
                             head.number, most=MAX_SPAN, partition=self.chain.partition_blocks,
                             reach=self.retain)
            if span is not None:
                await self._step(span, head, fence)
                if self.tip is None or self.tip.number < head.number:
                    return False
        if self.tip is not None and self.tip.number == head.number:
            await self._fill(fence)
        return True

    async def _fill(self, fence: int) -> None:
        """Index what was left out of the blocks the live tail holds (see ``live_holes``):
        children whose factory was still being backfilled, ranges a repair trimmed while the
        backfill had them. The answers are checked against the stored hashes of those blocks."""
        assert self.tip is not None
        if not self.recent:
            return
        lo = max(min(self.recent), self.tip.number - self.retain + 1)
        p = self.host.p
        for u in live_holes(p.sources, self.host.done, BlockRange(lo, self.tip.number)):
            for piece in pieces(u.range, self.chain.partition_blocks):
                unit = Unit(piece, u.sources, u.factory)
                r = await p.process(self.host.rpc, unit)
                for n, h in r.headers.items():
                    mine = self.recent.get(n)
                    if mine is not None and mine.hash != h.hash:
                        raise StaleBranch(f"block {n} was followed as 0x{mine.hash.hex()} but "
                                          f"now reads 0x{h.hash.hex()}")
                await self.host.db.commit(
                    self.chain.chain_id, piece, unit.sources, r.rows, p.columns,
                    self.chain.partition_blocks, children=r.children,
                    worker=f"live:{self.worker}", fence=fence, live_fence=fence,
                    conn=await self._connection(),
                )
                p.remember(r.children)
                self.host.on_live_commit(piece, [r])

    async def _step(self, span: BlockRange, head: BlockHeader, fence: int) -> None:
        """Fetch, check and commit ``span``."""
        p = self.host.p
        prev = self.recent.get(span.start - 1)  # the live tail's own block, if it is there
        if prev is None and self.tip is None:  # the first span: link it to the backfill's
            prev = await stored_block(self.host.db, self.chain.chain_id, span.start - 1)
        span = live_cut(p.sources, self.host.done, span)
        units = live_units(p.sources, self.host.done, span)
        known = {span.end: head} if span.end == head.number else {}
        needed = [n for n in range(span.start, span.end + 1) if n not in known]
        both = await asyncio.gather(
            self.host.rpc.get_headers(needed),
            p.process_together(self.host.rpc, units, known.get(span.end)) if units
            else _nothing(span))
        headers = {**known, **both[0]}
        result = both[1]
        if result.children and any(u.factory is not None for u in units):
            # Children announced inside the span: ask again with them known.
            p.remember(result.children)
            result = await p.process_together(self.host.rpc, units)
        results = [result]
        chain = [headers[n] for n in range(span.start, span.end + 1)]
        for r in results:
            for n, h in r.headers.items():
                if n in span and headers[n].hash != h.hash:
                    raise BranchMoved(f"block {n} changed between the header and the logs")
        bad = first_unlinked(prev, chain)
        if bad == 0:
            await self._repair(head, fence)
            return
        if bad is not None:
            raise BranchMoved(f"block {chain[bad].number} does not link to block {chain[bad].number - 1}")
        if prev is None and self.tip is not None:
            before = self.tip
            await self._check_tip(fence, head)  # nothing stored right below: check the tip
            if self.tip is not before:
                return
        await self._commit(span, chain, units, results, fence)

    async def _commit(self, span: BlockRange, chain: Sequence[BlockHeader], units: Sequence,
                      results: Sequence[UnitResult], fence: int) -> None:
        rows: dict[str, list[tuple]] = {}
        for r in results:
            for table, recs in r.rows.items():
                rows.setdefault(table, []).extend(recs)
        sources = sorted({s for u in units for s in u.sources})
        children = [c for r in results for c in r.children]
        await self.host.db.commit(
            self.chain.chain_id, span, sources, rows, self.host.p.columns,
            self.chain.partition_blocks, children=children, worker=f"live:{self.worker}",
            fence=fence, blocks=[(h, h.number % CHECKPOINT_EVERY == 0) for h in chain],
            live_fence=fence, conn=await self._connection(),
        )
        committed = time.time()
        self.host.p.remember(children)
        self.tip = chain[-1]
        for h in chain:
            self.recent[h.number] = h
        logs: dict[int, int] = {}
        if self._trace is not None:  # rows per block, for the trace
            for r in results:
                for table_rows in r.rows.values():
                    for rec in table_rows:
                        logs[rec[1]] = logs.get(rec[1], 0) + 1
        for h in chain:
            seen = self.seen.pop(h.number, committed)
            metrics.BLOCK_COMMIT_LATENCY.labels(**self.labels).observe(max(0.0, committed - seen))
            if self._trace is not None:
                self._trace.write(f"{h.number},0x{h.hash.hex()},{seen:.6f},{committed:.6f},"
                                  f"{logs.get(h.number, 0)}\n")
        self.host.on_live_commit(span, results)
        self.commits += 1
        if self.commits % PRUNE_EVERY == 0:
            await self._prune()
        if self.commits % COMPACT_EVERY == 0:
            await self.host.db.compact_ranges(self.chain.chain_id)

    async def _prune(self) -> None:
        assert self.tip is not None
        floor = self.tip.number - self.retain
        pruned = await prune_blocks(self.host.db, self.chain.chain_id, floor)
        self.recent = {n: h for n, h in self.recent.items() if n >= floor}
        self.seen = {n: t for n, t in self.seen.items() if n > self.tip.number - MAX_SPAN * 4}
        log.debug("%s: live tail: pruned %d block rows below %d", self.chain.name, pruned, floor)

async def _nothing(span: BlockRange) -> UnitResult:
    return UnitResult(Unit(span, ()), {}, [], 0, 0)


def follower_for(host: Host, worker: str, wake: asyncio.Event | None = None) -> LiveFollower:
    """The chain's follower. With finality_depth 0 (every block final) it indexes nothing and
    only watches for a reorg of what the backfill indexed, repaired as a deep one."""
    return LiveFollower(host, worker, wake=wake)

