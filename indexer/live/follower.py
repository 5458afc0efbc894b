"""The live tail of one chain: index the blocks above the safe head as they appear, and keep
the tables equal to the canonical chain through reorgs.

One follower per chain leads at a time (a lease of group ``live`` on the lease board, with a
short TTL, and a fence recorded in Postgres so that a follower that lost its lease can neither
commit nor delete). While leading, it loops: carry out a pending undo, re-read what is done
when the backfill got somewhere first, compare the stored tip with the node once, then one
``Tail.tick``; transient failures are waited out with a back-off (Postgres gone: at most
``INDEXER_DB_WAIT`` in a row, then the run ends), and so are refusals that come back: a conflict
the re-read does not explain, a key twice in the rows (counted, logged at ERROR). Between
ticks it sleeps until the next poll, or until a websocket newHeads wakes it.

Who leads is decided on the lease board, or, where processes share none (no ``REDIS_URL``), in
Postgres (``leader``: the holder, term and expiry recorded in ``indexer.chains``).

Backfill indexes up to the safe head and skips what is recorded done, so the two meet without
any hand-over state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from indexer import metrics
from indexer.cancel import raise_if_cancelled
from indexer.chain.parts import ChainParts
from indexer.lease.board import LIVE_GROUP, LIVE_TTL, Lease, LeaseBoard, LeaseLost
from indexer.lease.leadership import LeaderBoard, Leadership
from indexer.live.reorgs import Reorgs, Undo
from indexer.live.repair import Repairer
from indexer.live.tail import BranchMoved, Tail, Tick
from indexer.live.trace import Trace
from indexer.live.window import Window
from indexer.plan import Unit
from indexer.retry import TRANSIENT, Patience, backoff, database_down, is_transient
from indexer.rpc.heads import HeadSubscription
from indexer.sink.api import DuplicateKey, Fenced, RangeConflict, StaleBranch
from indexer.types import BlockRange

log = logging.getLogger(__name__)


class LiveFollower:
    def __init__(self, parts: ChainParts, board: LeaseBoard, worker: str, *,
                 on_repair: Callable[[BlockRange], None], retain: int | None = None,
                 trace: str | None = None, leader: LeaderBoard | None = None,
                 on_committed: Callable[[Unit], None] | None = None) -> None:
        self.parts = parts
        self.board = board
        chain = parts.chain
        self.interval = chain.live_poll_interval
        self.depth = chain.finality_depth
        # Window blocks kept in indexer.blocks below the tip (checkpoints are kept for good).
        self.window = Window(retain if retain is not None else max(4 * self.depth, 256))
        self.reorgs = Reorgs(parts, self.window)
        self.repairer = Repairer(parts, board, self.window, on_repair)
        self._trace = Trace(trace) if trace else None
        self.tail = Tail(parts, self.window, self.reorgs, worker, self._trace, on_committed)
        self.wake = asyncio.Event()
        self.heads: HeadSubscription | None = None
        if chain.ws_url:
            self.heads = HeadSubscription(chain.ws_url, chain.name, self.wake,
                                          stale_after=max(3.0, 3 * chain.block_time))
        self.leading = False
        self.leadership = Leadership(leader or board, chain.name, LIVE_GROUP, worker, LIVE_TTL,
                                     "live tail")
        self.db = Patience(parts.db_wait, parts.clock, parts.name)

    # -- leadership ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                raise_if_cancelled()
                lease = await self.leadership.acquire()
                await self._while_leading(lease)
                await self.parts.clock.sleep(self.interval)
        finally:
            if self._trace is not None:
                self._trace.close()

    async def _while_leading(self, lease: Lease) -> None:
        name = self.parts.name
        log.info("%s: live tail: following the head (poll every %.0f ms, fence %d%s)",
                 name, self.interval * 1000, lease.fence,
                 "; finality_depth 0: watching the indexed blocks for reorgs only"
                 if self.depth == 0 else "")
        self.leading = True
        metrics.LIVE_LEADER.labels(chain=name).set(1)
        follow = asyncio.create_task(self._follow(lease.fence))
        keep = asyncio.create_task(self.leadership.keep(lease))
        heads = asyncio.create_task(self.heads.run()) if self.heads is not None else None
        try:
            finished, _ = await asyncio.wait({follow, keep}, return_when=asyncio.FIRST_COMPLETED)
            for t in finished:
                t.result()
        except (LeaseLost, Fenced) as e:
            log.warning("%s: live tail: leadership lost (%s); standing by", name, e)
            if isinstance(e, Fenced):  # the board may have lost its counter (Redis flushed)
                with contextlib.suppress(*TRANSIENT):
                    await self.board.raise_fence(name, await self.parts.sink.max_fence())
        finally:
            self.leading = False
            metrics.LIVE_LEADER.labels(chain=name).set(0)
            tasks = [task for task in (follow, keep, heads) if task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.parts.sink.release_live()
            await self.leadership.release(lease)

    # -- following ------------------------------------------------------------------------------

    async def _follow(self, fence: int) -> None:
        p = self.parts
        st = _Following()
        while True:
            raise_if_cancelled()
            started = p.clock.monotonic()
            self.wake.clear()  # a head announced from here on ends the next pause early
            try:
                tick = await self._turn(st, fence)
                st.failures = st.conflicts = st.refusals = 0
                self.db.ok()
            except BranchMoved as e:
                log.info("%s: live tail: %s; asking again", p.name, e)
                await p.clock.sleep(self.interval)
                continue
            except StaleBranch as e:
                log.warning("%s: live tail: %s", p.name, e)
                if e.number is not None:
                    st.pending = Undo(e.number - 1, None, None, "stored block differs")
                st.checked = False
                continue
            except (RangeConflict, DuplicateKey) as e:
                await self._refused(st, e)
                continue
            except TRANSIENT as e:
                if not is_transient(e):
                    raise
                await self._failed(st, e)
                continue
            if tick.caught_up:
                await self._pause(self.interval - (p.clock.monotonic() - started))

    async def _turn(self, st: _Following, fence: int) -> Tick:
        """One turn: what is pending first (the window, an undo, a re-read, the stored tip),
        then one tick."""
        p = self.parts
        if not st.loaded:
            self.window.load(await p.sink.stored_blocks(live=True, limit=self.window.retain))
            st.loaded = True
        if st.pending is not None:
            await self.repairer.carry_out(st.pending, fence)
            st.pending = None
        if st.reload:
            await p.state.reload(p.sink)
            st.reload = False
        if not st.checked:  # a reorg while nobody followed: compare the stored tip first
            undo = await self.reorgs.check_tip()
            if undo is not None:
                await self.repairer.carry_out(undo, fence)
            st.checked = True
        tick = await self.tail.tick(fence)
        if tick.undo is not None:
            await self.repairer.carry_out(tick.undo, fence)
        return tick

    async def _refused(self, st: _Following, e: RangeConflict | DuplicateKey) -> None:
        """A commit refused: the backfill committed some of the blocks first (re-read what is
        done; at once the first time only), or the rows hold a key twice (fetch again after a
        growing while, logged at ERROR)."""
        p = self.parts
        self.db.ok()
        if isinstance(e, DuplicateKey):
            metrics.COMMITS_REFUSED.labels(chain=p.name, reason="duplicate_key").inc()
            st.refusals += 1
            delay = backoff(st.refusals, base=5.0, cap=300.0)
            log.error("%s: live tail: %s (%d in a row); fetching again in %.0fs", p.name, e,
                      st.refusals, delay)
            await p.clock.sleep(delay)
            return
        metrics.COMMITS_REFUSED.labels(chain=p.name, reason="conflict").inc()
        st.conflicts += 1
        st.reload = True
        if st.conflicts == 1:
            log.debug("%s: live tail: %s; re-reading what is done", p.name, e)
            return
        delay = backoff(st.conflicts - 1, base=0.5, cap=30.0)
        log.warning("%s: live tail: %s (%d in a row); re-reading what is done in %.1fs",
                    p.name, e, st.conflicts, delay)
        await p.clock.sleep(delay)

    async def _failed(self, st: _Following, e: BaseException) -> None:
        """A transient failure: Postgres gone is waited for (INDEXER_DB_WAIT at most), the rest
        with a back-off."""
        p = self.parts
        await p.sink.release_live()
        if database_down(e):
            await self.db.wait(e, "following the head")
            return
        st.failures += 1
        delay = backoff(st.failures, base=0.5, cap=10.0)
        log.warning("%s: live tail: %s; retrying in %.1fs", p.name, e, delay)
        await p.clock.sleep(delay)

    async def _pause(self, seconds: float) -> None:
        """Sleep until the next poll, or until a websocket newHeads wakes the follower. While
        the subscription delivers, polling is only a safety net (every 2 block times, at least
        1 s); when it stalls, the normal interval is back."""
        if self.heads is not None and self.heads.healthy:
            seconds += max(1.0, 2 * self.parts.chain.block_time) - self.interval
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)


@dataclass
class _Following:
    """What one leadership's follow loop carries from turn to turn."""

    loaded: bool = False  # the window holds the stored blocks
    checked: bool = False  # the stored tip was compared with the node
    pending: Undo | None = None  # a stored block found to differ: undo above the one below
    reload: bool = False  # what is done must be re-read
    failures: int = 0  # transient failures in a row
    conflicts: int = 0  # RangeConflicts in a row
    refusals: int = 0  # DuplicateKeys in a row
