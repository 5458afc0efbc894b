"""The live tail of one chain: index the blocks above the safe head as they appear, and keep
the tables equal to the canonical chain through reorgs.

One follower per chain leads at a time (a lease of group ``live`` on the lease board, with a
short TTL, and a fence recorded in Postgres so that a follower that lost its lease can neither
commit nor delete). While leading, it loops: carry out a pending undo, re-read what is done
when the backfill got somewhere first, compare the stored tip with the node once, then one
``Tail.tick``; transient failures are waited out with a back-off. Between ticks it sleeps
until the next poll, or until a websocket newHeads wakes it.

Backfill indexes up to the safe head and skips what is recorded done, so the two meet without
any hand-over state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from indexer import metrics
from indexer.cancel import raise_if_cancelled
from indexer.chain.parts import ChainParts
from indexer.lease.board import LIVE_GROUP, LIVE_TTL, Lease, LeaseBoard, LeaseLost
from indexer.lease.leadership import Leadership
from indexer.live.reorgs import Reorgs, Undo
from indexer.live.repair import Repairer
from indexer.live.tail import BranchMoved, Tail
from indexer.live.trace import Trace
from indexer.live.window import Window
from indexer.plan import Unit
from indexer.retry import TRANSIENT, backoff, is_transient
from indexer.rpc.heads import HeadSubscription
from indexer.sink.api import Fenced, RangeConflict, StaleBranch
from indexer.types import BlockRange

log = logging.getLogger(__name__)


class LiveFollower:
    def __init__(self, parts: ChainParts, board: LeaseBoard, worker: str, *,
                 on_repair: Callable[[BlockRange], None], retain: int | None = None,
                 trace: str | None = None,
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
        self.leadership = Leadership(board, chain.name, LIVE_GROUP, worker, LIVE_TTL,
                                     "live tail")

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
        self.window.load(await p.sink.stored_blocks(live=True, limit=self.window.retain))
        failures = 0
        checked = False
        pending: Undo | None = None  # a stored block found to differ: undo above the one below
        reload = False
        while True:
            raise_if_cancelled()
            started = p.clock.monotonic()
            self.wake.clear()  # a head announced from here on ends the next pause early
            try:
                if pending is not None:
                    await self.repairer.carry_out(pending, fence)
                    pending = None
                if reload:
                    await p.state.reload(p.sink)
                    reload = False
                if not checked:  # a reorg while nobody followed: compare the stored tip first
                    undo = await self.reorgs.check_tip()
                    if undo is not None:
                        await self.repairer.carry_out(undo, fence)
                    checked = True
                tick = await self.tail.tick(fence)
                if tick.undo is not None:
                    await self.repairer.carry_out(tick.undo, fence)
                failures = 0
            except BranchMoved as e:
                log.info("%s: live tail: %s; asking again", p.name, e)
                await p.clock.sleep(self.interval)
                continue
            except StaleBranch as e:
                log.warning("%s: live tail: %s", p.name, e)
                if e.number is not None:
                    pending = Undo(e.number - 1, None, None, "stored block differs")
                checked = False
                continue
            except RangeConflict as e:  # the backfill committed some of these blocks first
                log.debug("%s: live tail: %s; re-reading what is done", p.name, e)
                reload = True
                continue
            except TRANSIENT as e:
                if not is_transient(e):
                    raise
                await p.sink.release_live()
                failures += 1
                delay = backoff(failures, base=0.5, cap=10.0)
                log.warning("%s: live tail: %s; retrying in %.1fs", p.name, e, delay)
                await p.clock.sleep(delay)
                continue
            if tick.caught_up:
                await self._pause(self.interval - (p.clock.monotonic() - started))

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
