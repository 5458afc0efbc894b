"""Reorg repair of the live tail: compare the stored blocks with the node's, find the fork
point and undo everything above it, without ever deleting because of a node that is merely
behind (syncing, or a lagging backend).

``Repairs`` is the part of ``LiveFollower`` (``live.py``) that does this; it reads and moves the
follower's tip and window. ``Host`` is what the follower needs of the chain's runner.

- A stored block that differs from the node's: the fork point comes from ``forks.find_fork``
  (the stored hashes, live blocks first, then the backfill's checkpoints).
- No block of its own yet (always so with finality_depth 0, where the backfill indexes every
  block): the newest backfill checkpoints are compared with the node's blocks instead.
- Deeper than ``finality_depth``: asked once more after a moment, then repaired, logged at
  ERROR and counted (``indexer_deep_reorgs_total``).
- A head below the indexed tip: waited for; blocks above it are taken as gone only when the
  lower head lasts 5 block times, is within the finality depth and the node says it is synced.
- The repair itself: ``sink.reorgs.rollback`` (one transaction), the lease board's done markers
  above the fork dropped, the runner's view of what is done re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from indexer import metrics
from indexer.claims import BOARD_ERRORS
from indexer.config import ChainConfig
from indexer.forks import find_fork
from indexer.lease import LeaseBoard
from indexer.pipeline import ChainPipeline, UnitResult
from indexer.rpc.client import RpcClient
from indexer.rpc.errors import RpcError
from indexer.sink.postgres import TRANSIENT_DB, Database
from indexer.sink.reorgs import Repair, rollback, stored_block, stored_blocks
from indexer.types import BlockHeader, BlockRange

log = logging.getLogger("indexer.live")

CHECKPOINTS_VERIFIED = 64  # newest backfill checkpoints compared while the follower has no block
RECHECK_AFTER = 1.0  # seconds between looks at the stored checkpoints while the head stays


class Host(Protocol):
    """What the follower needs from the chain's runner (same process)."""

    chain: ChainConfig
    p: ChainPipeline
    db: Database
    rpc: RpcClient
    board: LeaseBoard
    done: dict[str, list[BlockRange]]

    def on_head(self, head: BlockHeader) -> None: ...

    def on_live_commit(self, rng: BlockRange, results: Sequence[UnitResult]) -> None: ...

    async def on_repair(self, fork: int) -> None: ...

    async def reload(self) -> None: ...


class Repairs:
    """Reorg handling mixed into ``LiveFollower``: the attributes below are the follower's."""

    host: Host
    chain: ChainConfig
    depth: int
    tip: BlockHeader | None
    recent: dict[int, BlockHeader]
    labels: dict[str, str]
    lower_since: float | None
    verified: tuple[bytes, int, bytes] | None  # (head hash, newest checkpoint, its hash) found good
    verified_at: float

    async def _at_or_below(self, head: BlockHeader, fence: int) -> None:
        """The head is not above the tip: nothing new, a reorg, or a node behind us."""
        assert self.tip is not None
        now = time.monotonic()
        if head.number < self.tip.number and self.lower_since is None:
            self.lower_since = now
            log.info("%s: live tail: the node's head %d is below the indexed tip %d; waiting",
                     self.chain.name, head.number, self.tip.number)
        mine = self.recent.get(head.number)
        if mine is None:  # the live tail has no block that low: compare what is stored
            await self._check_tip(fence, head)
            return
        if mine.hash != head.hash:
            await self._repair(head, fence)
            return
        if head.number == self.tip.number or self.lower_since is None:
            return
        # The node is behind the tip but on our chain: a node syncing or lagging (never a
        # reason to delete), or a chain that really got shorter. Only when that lasts, the node
        # says it is not syncing and the difference is within the finality depth, are the blocks
        # above its head taken as gone.
        settle = max(5.0, 5 * self.chain.block_time)
        if (now - self.lower_since > settle and self.tip.number - head.number <= self.depth
                and not await self._syncing()):
            log.warning("%s: live tail: the chain stayed at %d (below the indexed tip %d) for "
                        "%.0fs and the node is not syncing: blocks above it are gone",
                        self.chain.name, head.number, self.tip.number, settle)
            await self._undo(head.number, head, fence, head, "the chain got shorter")
            self.lower_since = None

    async def _check_tip(self, fence: int, head: BlockHeader | None = None) -> None:
        """Compare the live tail's own highest block at or below the head with the node's."""
        if self.tip is None:
            return
        head = head or await self.host.rpc.get_header("latest")
        if head is None:
            return
        n = min(self.tip.number, head.number)
        mine = self.recent.get(n)
        if mine is None:
            page = await stored_blocks(self.host.db, self.chain.chain_id, live=True,
                                       below=n + 1, limit=1)
            if not page:
                return
            mine = page[0]
        theirs = head if mine.number == head.number else \
            (await self.host.rpc.get_headers([mine.number]))[mine.number]
        if theirs.hash != mine.hash:
            await self._repair(head, fence)

    async def _verify_stored(self, fence: int, head: BlockHeader) -> None:
        """With no block of its own (finality_depth 0, where the backfill indexes every block,
        or before the live tail's first commit), compare the newest backfill checkpoints at or
        below the head with the node's blocks. A checkpoint is the last block of a committed
        unit, so a reorg of any indexed block changes one of them, also when a unit of the new
        branch was committed above it since."""
        if (self.verified is not None and head.hash == self.verified[0]
                and time.monotonic() - self.verified_at < RECHECK_AFTER):
            return  # same head: new checkpoints (a backfill under way) at most once a second
        page = await stored_blocks(self.host.db, self.chain.chain_id, live=False,
                                   below=head.number + 1, limit=CHECKPOINTS_VERIFIED)
        if not page:
            return
        key = (head.hash, page[0].number, page[0].hash)
        if key == self.verified:
            self.verified_at = time.monotonic()  # nothing new stored: look again in a second
            return
        theirs = await self.host.rpc.get_headers([h.number for h in page])
        if any(theirs[h.number].hash != h.hash for h in page):
            self.verified = None
            await self._repair(head, fence)
        else:
            self.verified, self.verified_at = key, time.monotonic()

    async def _syncing(self) -> bool:
        try:
            return bool(await self.host.rpc.call("eth_syncing", []))
        except RpcError:
            return False

    async def _fork(self, head: BlockHeader) -> tuple[BlockHeader | None, bool]:
        top = min(self.tip.number if self.tip else head.number, head.number)
        return await find_fork(self.host.db, self.host.rpc, self.chain.chain_id, top)

    async def _repair(self, head: BlockHeader, fence: int) -> None:
        """A stored block differs from the node's: find the fork point and undo above it."""
        if await self._syncing():
            log.warning("%s: live tail: stored blocks differ from a node that is still syncing; "
                        "not repairing until it has synced", self.chain.name)
            return
        fork, compared = await self._fork(head)
        if not compared:
            return  # the node is behind everything stored: nothing to judge by
        old = self.tip or await stored_block(self.host.db, self.chain.chain_id)
        old_tip = old.number if old else head.number
        if fork is None or old_tip - fork.number > self.depth:
            # Deeper than finality: ask once more after a moment before undoing final blocks,
            # so one bad answer of a lagging or flapping node cannot cause it.
            await asyncio.sleep(min(2.0, self.chain.block_time))
            again, _ = await self._fork(head)
            if (again.number if again else None) != (fork.number if fork else None):
                log.warning("%s: live tail: fork point moved from %s to %s on a second look; "
                            "looking again", self.chain.name, fork.number if fork else "none",
                            again.number if again else "none")
                return
        keep = fork.number if fork is not None else \
            min(s.start_block for s in self.host.p.sources) - 1
        why = "reorg" if fork is not None else "reorg (no stored block agrees with the node)"
        await self._undo(keep, fork, fence, head, why)

    async def _undo(self, keep: int, fork: BlockHeader | None, fence: int,
                    head: BlockHeader | None, why: str) -> None:
        """Delete everything above block ``keep`` (``fork``: its header when known) and go on
        from there."""
        head = head or await self.host.rpc.get_header("latest")
        old = self.tip or await stored_block(self.host.db, self.chain.chain_id)
        old_tip = old.number if old else keep
        depth = max(0, old_tip - keep)
        deep = depth > self.depth
        theirs = None
        if old is not None and head is not None and old.number <= head.number:
            with contextlib.suppress(RpcError):
                theirs = (await self.host.rpc.get_headers([old.number]))[old.number].hash
        repair = Repair(keep, old_tip, head.number if head else old_tip, deep,
                        old.hash if old else None, theirs)
        deleted = await rollback(self.host.db, self.chain.chain_id, repair, fence)
        # Backfill units released done above the fork are claimable again at once (else only
        # when their markers expire); Postgres, already trimmed, stays the record of what is done.
        with contextlib.suppress(*BOARD_ERRORS):
            await self.host.board.forget_done(self.chain.name, keep)
        rows = sum(n for t, n in deleted.items() if not t.startswith("indexer."))
        metrics.REORGS.labels(**self.labels).inc()
        metrics.REORG_DEPTH.labels(**self.labels).set(depth)
        detail = (f"{self.chain.name}: {why}: blocks {keep + 1}-{old_tip} replaced (depth {depth}); "
                  f"deleted {rows} rows, {deleted.get('indexer.contracts', 0)} discovered "
                  f"contracts; re-indexing from block {keep + 1}")
        if deep:
            metrics.DEEP_REORGS.labels(**self.labels).inc()
            log.error("DEEP REORG %s: deeper than finality_depth %d: rows the indexer took as "
                      "final were replaced; repaired", detail, self.depth)
        else:
            log.warning("%s", detail)
        self.recent = {n: h for n, h in self.recent.items() if n <= keep}
        self.tip = self.recent[max(self.recent)] if self.recent else None
        if self.tip is None and fork is not None and self.depth > 0:
            self.tip = fork  # go on from the fork (with finality_depth 0 the backfill does)
        for known in self.host.p.children.values():
            for addr in [a for a, b in known.items() if b > keep]:
                del known[addr]
        while True:  # what is done must be re-read before anything else is planned
            try:
                await self.host.on_repair(keep)
                break
            except TRANSIENT_DB as e:
                log.warning("%s: live tail: re-reading what is done after the repair: %s",
                            self.chain.name, e)
                await asyncio.sleep(1.0)
