"""Carrying out an ``Undo`` order: delete everything above the fork in one transaction
(``sink.rollback``), drop the lease board's done markers above it, count and log the repair,
then bring what this process knows back in line (the window, what is done, the backfill's
plan).

Every order passes here, so here is the one limit on how deep a repair goes on its own: one
that would delete more than the chain's ``reorg_depth_cap`` blocks is refused
(``RepairRefused``) and nothing is deleted."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from indexer import metrics
from indexer.chain.parts import ChainParts
from indexer.lease.board import LeaseBoard
from indexer.live.reorgs import RepairRefused, Undo, refuse
from indexer.live.window import Window
from indexer.retry import TRANSIENT, Patience, patiently
from indexer.rpc.errors import RpcError
from indexer.sink.api import Repair
from indexer.types import BlockRange

log = logging.getLogger(__name__)


class Repairer:
    def __init__(self, parts: ChainParts, board: LeaseBoard, window: Window,
                 on_repair: Callable[[BlockRange], None]) -> None:
        self.parts = parts
        self.board = board
        self.window = window
        # Told the blocks replaced: the backfill plans again, their re-commits are verified.
        self.on_repair = on_repair

    async def carry_out(self, order: Undo, fence: int) -> None:
        """Delete everything above ``order.keep`` and go on from there. Raises Fenced when a
        newer live follower has written (nothing is deleted then)."""
        p = self.parts
        depth_limit = p.chain.finality_depth
        keep = order.keep
        head = order.head or await p.source.get_header("latest")
        old = self.window.tip or await p.sink.stored_block()
        old_tip = old.number if old else keep
        depth = max(0, old_tip - keep)
        deep = depth > depth_limit
        if depth > p.chain.reorg_depth_cap:
            raise self._too_deep(order, keep, old_tip, depth)
        theirs = None
        if old is not None and head is not None and old.number <= head.number:
            with contextlib.suppress(RpcError):
                theirs = (await p.source.get_headers([old.number]))[old.number].hash
        repair = Repair(keep, old_tip, head.number if head else old_tip, deep,
                        old.hash if old else None, theirs)
        deleted = await p.sink.rollback(repair, fence)
        # Backfill units released done above the fork are claimable again at once (else only
        # when their markers expire); Postgres, already trimmed, stays the record of what is done.
        with contextlib.suppress(*TRANSIENT):
            await self.board.forget_done(p.name, keep)
        self._report(order, keep, old_tip, depth, deep, deleted)
        # With finality_depth 0 the backfill goes on from the fork; else the live tail does.
        self.window.cut_above(keep, order.fork if depth_limit > 0 else None)
        p.state.forget_above(keep)
        # What is done must be re-read before anything else is planned.
        await patiently(Patience(p.db_wait, p.clock, p.name), "re-reading what is done after a "
                        "repair", lambda: p.state.reload(p.sink))
        p.watermark_moved()
        self.on_repair(BlockRange(keep + 1, max(keep + 1, old_tip)))

    def _too_deep(self, order: Undo, keep: int, old_tip: int, depth: int) -> RepairRefused:
        c = self.parts.chain
        cap = c.reorg_depth_cap
        rule = (f"max_reorg_depth {cap} in {c.source}" if c.max_reorg_depth is not None else
                f"{cap} by default: 10 x finality_depth, at least 256")
        return refuse(self.parts, "too_deep", (
            f"{c.name}: {order.why}: repairing would delete blocks {keep + 1}-{old_tip} "
            f"({depth} blocks), more than a repair deletes on its own ({rule}). Nothing was "
            f"deleted. If the chain really reorganised this deep, set max_reorg_depth: {depth} "
            f"(or more) in {c.source} and run again; if an endpoint serves a wrong branch, fix "
            f"it or remove it from rpc: in {c.source}."))

    def _report(self, order: Undo, keep: int, old_tip: int, depth: int, deep: bool,
                deleted: dict[str, int]) -> None:
        name = self.parts.name
        rows = sum(n for t, n in deleted.items() if not t.startswith("indexer."))
        metrics.REORGS.labels(chain=name).inc()
        metrics.REORG_DEPTH.labels(chain=name).set(depth)
        detail = (f"{name}: {order.why}: blocks {keep + 1}-{old_tip} replaced (depth {depth}); "
                  f"deleted {rows} rows, {deleted.get('indexer.contracts', 0)} discovered "
                  f"contracts; re-indexing from block {keep + 1}")
        if deep:
            metrics.DEEP_REORGS.labels(chain=name).inc()
            log.error("DEEP REORG %s: deeper than finality_depth %d: rows the indexer took as "
                      "final were replaced; repaired", detail, self.parts.chain.finality_depth)
        else:
            log.warning("%s", detail)
