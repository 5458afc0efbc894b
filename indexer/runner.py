"""The loop of one chain: plan -> claim a unit -> fetch/decode -> commit -> record progress.

Several units are in flight at once (``concurrency``); each one's rows and range record commit
in one transaction, in any order. The watermark is the highest block below which every source is
done. Without ``once``/``until`` the loop keeps following the safe head, and the chain's live
tail (``live.py``) runs beside it. The work on one unit (claim, fetch, commit, leases) is in
``units.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from indexer import metrics
from indexer.cancel import raise_if_cancelled
from indexer.claims import Claims
from indexer.lease import DEFAULT_TTL, LeaseBoard
from indexer.live import LiveFollower, follower_for
from indexer.pipeline import ChainPipeline, UnitResult
from indexer.plan import Unit, merge, todo, watermark
from indexer.rpc.client import RpcClient
from indexer.rpc.errors import RpcError
from indexer.sink.postgres import Database
from indexer.sink.reorgs import reorg_epoch
from indexer.types import BlockHeader, BlockRange
from indexer.units import UnitWork

log = logging.getLogger(__name__)

SLOW_START_BLOCKS = 16


@dataclass(frozen=True, slots=True)
class RunOptions:
    once: bool = False
    until: int | None = None
    concurrency: int = 4
    target_logs: int = 10_000  # logs per unit the range size aims at
    max_range: int = 100_000
    poll_interval: float | None = None  # default: a fraction of the block time, at most 1 s
    worker: str = "local"
    lease_ttl: float = DEFAULT_TTL
    shared: bool = False  # the lease board is shared with other processes: refresh from Postgres
    refresh_interval: float = 2.0


@dataclass(slots=True)
class Progress:
    """What the terminal view and the summary show."""

    chain: str
    first: int = 0
    target: int = 0
    head: int = 0
    indexed: int = -1
    blocks: int = 0
    events: int = 0
    failures: int = 0
    started: float = field(default_factory=time.monotonic)
    fetch_seconds: float = 0.0
    decode_seconds: float = 0.0
    write_seconds: float = 0.0
    tables: dict[str, int] = field(default_factory=dict)


class ChainRunner(UnitWork):
    def __init__(
        self,
        pipeline: ChainPipeline,
        db: Database,
        rpc: RpcClient,
        board: LeaseBoard,
        options: RunOptions,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.p = pipeline
        self.chain = pipeline.chain
        self.db = db
        self.rpc = rpc
        self.opt = options
        self.on_progress = on_progress
        self.progress = Progress(self.chain.name)
        self.done: dict[str, list[BlockRange]] = {}
        # Slow start: the density of logs is unknown until a first unit returns, so the first
        # unit is small and runs alone; sizes then follow the density (next_size).
        self.size = max(1, min(self.chain.get_logs_max_range, SLOW_START_BLOCKS))
        self.claims = Claims(self.chain.name, board, options.worker, self.chain.partition_blocks,
                             options.lease_ttl)
        self.board = board
        self.planned_at = 0.0
        self.changed = asyncio.Event()
        self.labels = {"chain": self.chain.name}
        # Memory bound: logs fetched or expected but not yet committed. A new unit starts only
        # while the estimate fits the budget (or when nothing else is in flight).
        self.density = 0.0  # logs per block, moving average
        self.held: dict[Unit, int] = {}
        self.budget = options.target_logs * options.concurrency
        self.failures = 0  # consecutive failed units, for the retry back-off
        self.head_time: int | None = None
        self.head_polled_at = 0.0
        self.lag_seconds: int | None = None
        self.last_commit: float | None = None
        self.commits = 0
        self.epoch = 0  # reorg epoch of the chain as last read: backfill commits carry it
        self.dirty = False  # a reorg repair changed what is done: plan again
        self.live: LiveFollower | None = None

    # -- setup ---------------------------------------------------------------------------------

    async def prepare(self) -> None:
        c = self.chain
        remote = await self.rpc.chain_id()
        if remote != c.chain_id:
            raise SystemExit(
                f"{c.source}: chain_id is {c.chain_id} but the RPC answers eth_chainId={remote}; "
                f"the chain file points at the wrong network"
            )
        genesis = await self.rpc.get_header(0)
        await self.db.register_chain(
            c.chain_id, c.name, c.partition_blocks, c.finality_depth, c.block_time,
            genesis.hash if genesis is not None else None,
        )
        await self.db.ensure_event_tables(self.p.tables)
        if not self.opt.shared:  # alone: tidy the records of earlier runs before planning
            await self.db.compact_ranges(c.chain_id)
        self.done = await self.db.done_ranges(c.chain_id)
        self.epoch = await reorg_epoch(self.db, c.chain_id)
        await self.board.raise_fence(c.name, await self.db.max_fence(c.chain_id))
        for name in {s.name for s in self.p.sources if s.factory is not None}:
            self.p.children[name] = await self.db.children(c.chain_id, name)
        metrics.CHAIN_INFO.labels(
            chain=c.name, chain_id=str(c.chain_id), block_time_seconds=f"{c.block_time:g}",
            finality_depth=str(c.finality_depth),
        ).set(1)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> Progress:
        await self.prepare()
        helpers = [asyncio.create_task(self._watch()), asyncio.create_task(self._keep())]
        main = asyncio.create_task(self._loop())
        if not self.opt.once and self.opt.until is None:
            self.live = follower_for(self, self.opt.worker)
        tail = asyncio.create_task(self.live.run()) if self.live is not None else None
        try:
            if tail is not None:
                await asyncio.wait({main, tail}, return_when=asyncio.FIRST_COMPLETED)
                if tail.done():
                    tail.result()  # the live tail failed for good: so does the run
            return await main
        finally:
            for t in (*helpers, main, *([tail] if tail else [])):
                t.cancel()
            await asyncio.gather(*helpers, main, *([tail] if tail else []),
                                 return_exceptions=True)

    async def _loop(self) -> Progress:
        first = True
        while True:
            raise_if_cancelled()
            target = await self._target(wait=not first)
            first = False
            if target is None:
                return self.progress
            if self.opt.shared:
                await self._reload()
            self.dirty = False
            self._plan(target)
            await self._drain()
            if self.opt.once or (self.opt.until is not None and target >= self.opt.until):
                return self.progress

    async def _target(self, wait: bool) -> int | None:
        """The block to index up to now; waits for the head to move when nothing is new."""
        while True:
            raise_if_cancelled()
            safe = await self._poll_head() - self.chain.finality_depth
            target = safe if self.opt.until is None else min(safe, self.opt.until)
            if not wait or target > self.progress.target or self.dirty:
                self.progress.target = target
                return target
            if self.opt.shared and time.monotonic() - self.planned_at > self.opt.refresh_interval:
                await self._reload()  # other workers' commits move the watermark too
                self._watermark()
                self.planned_at = time.monotonic()
            await asyncio.sleep(self._poll_interval())

    def _poll_interval(self) -> float:
        if self.opt.poll_interval is not None:
            return self.opt.poll_interval
        return max(0.05, min(1.0, self.chain.block_time / 4))

    async def _poll_head(self) -> int:
        """Ask for the latest block (number and time); every head figure comes from here."""
        latest = await self.rpc.get_header("latest")
        self.head_polled_at = time.monotonic()
        if latest is None:  # a node that cannot name its head: keep the last one known
            return self.progress.head
        self.head_time = latest.timestamp
        self._head(latest.number, latest.number - self.chain.finality_depth)
        metrics.HEAD_AGE_SECONDS.labels(**self.labels).set(max(0.0, time.time() - latest.timestamp))
        return latest.number

    async def _watch(self) -> None:
        """Keep head, head age and lag in seconds current while the loop works (the live loop
        polls the head itself; this asks only when nobody did for a second)."""
        mark_time: tuple[int, int] | None = None  # (block, timestamp) of the watermark
        while True:
            try:
                if time.monotonic() - self.head_polled_at >= 1.0:
                    await self._poll_head()
                mark = self.progress.indexed
                if mark >= 0 and (mark_time is None or mark_time[0] != mark):
                    header = await self.rpc.get_header(mark)
                    if header is not None:
                        mark_time = (mark, header.timestamp)
                if mark_time is not None and self.head_time is not None:
                    self.lag_seconds = max(0, self.head_time - mark_time[1])
                    metrics.LAG_SECONDS.labels(**self.labels).set(self.lag_seconds)
            except RpcError as e:
                log.debug("%s: head watch: %s", self.chain.name, e)
            await asyncio.sleep(1.0)

    def status(self) -> dict[str, object]:
        """What /status and /readyz report for this chain."""
        c, p = self.chain, self.progress
        return {
            "chain": c.name, "chain_id": c.chain_id, "block_time": c.block_time,
            "finality_depth": c.finality_depth, "head": p.head,
            "safe": p.head - c.finality_depth, "indexed": p.indexed,
            "lag_blocks": max(0, p.head - p.indexed) if p.head else None,
            "lag_seconds": self.lag_seconds,
            "backlog_ranges": self._backlog(),
            "workers": self.claims.workers_alive, "last_commit": self.last_commit,
            "live": None if self.live is None else {
                "leader": self.live.leading,
                "tip": self.live.tip.number if self.live.tip else None,
                "websocket": None if self.live.heads is None else self.live.heads.healthy,
            },
        }

    def _head(self, head: int, safe: int) -> None:
        self.progress.head = head
        metrics.CHAIN_HEAD_BLOCK.labels(**self.labels).set(head)
        metrics.SAFE_BLOCK.labels(**self.labels).set(safe)
        metrics.LAG_BLOCKS.labels(**self.labels).set(max(0, head - max(self.progress.indexed, 0)))

    def _plan(self, target: int) -> None:
        self.claims.replan(todo(self.p.sources, self.done, target))
        self.planned_at = time.monotonic()
        pending = self.claims.pending
        if not self.progress.blocks and pending:
            self.progress.first = min(u.range.start for u in pending)
        self._watermark()
        metrics.BACKLOG_RANGES.labels(**self.labels).set(self._backlog())

    def _backlog(self) -> int:
        return len(self.claims.pending) + len(self.claims.leases)

    async def _reload(self) -> None:
        """What every worker committed: only Postgres knows."""
        self.epoch = await reorg_epoch(self.db, self.chain.chain_id)
        self.done = await self.db.done_ranges(self.chain.chain_id)
        for name in {s.name for s in self.p.sources if s.factory is not None}:
            self.p.children[name] = await self.db.children(self.chain.chain_id, name)

    async def _refresh(self) -> None:
        """Learn what the other workers committed and plan again."""
        await self._reload()
        self._plan(self.progress.target)

    def _after_commit(self) -> None:
        self._watermark()
        self.last_commit = time.time()
        metrics.LAST_COMMIT_TIMESTAMP.labels(**self.labels).set(self.last_commit)
        if self.on_progress is not None:
            self.on_progress(self.progress)

    # -- the live tail's hooks (indexer.live.Host) ------------------------------------------------

    def on_head(self, head: BlockHeader) -> None:
        self.head_time = head.timestamp
        self.head_polled_at = time.monotonic()
        self._head(head.number, head.number - self.chain.finality_depth)
        metrics.HEAD_AGE_SECONDS.labels(**self.labels).set(max(0.0, time.time() - head.timestamp))

    def on_live_commit(self, rng: BlockRange, results: Sequence[UnitResult]) -> None:
        for r in results:
            for s in r.unit.sources:
                self.done[s] = merge([*self.done.get(s, []), rng])
            self._count(r.rows)
        self.progress.blocks += len(rng)
        metrics.BLOCKS_INDEXED.labels(**self.labels).inc(len(rng))
        self._after_commit()

    async def on_repair(self, fork: int) -> None:
        """Rows above ``fork`` were deleted: learn what is done now and plan again."""
        self.dirty = True
        await self._reload()
        self._watermark()
        self.changed.set()

    async def reload(self) -> None:
        await self._reload()

    def _watermark(self) -> None:
        mark = watermark(self.p.sources, self.done)
        self.progress.indexed = mark
        metrics.INDEXED_BLOCK.labels(**self.labels).set(mark)
        metrics.LAG_BLOCKS.labels(**self.labels).set(max(0, self.progress.head - mark))

