"""The backfill's units of one chain: claim a unit on the lease board, fetch and decode it,
commit its rows with its range record, and keep the leases alive meanwhile.

``UnitWork`` is the part of ``ChainRunner`` (``runner.py``) that does this; the attributes it
names are the runner's. Several units are in flight at once (``concurrency``), within a budget
of logs fetched and not yet committed. A unit that fails for a transient reason goes back with
an exponential back-off; one that another writer committed first is dropped; one whose answer
is too large is asked again in eighths.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from indexer import faults, metrics
from indexer.cancel import raise_if_cancelled
from indexer.claims import BOARD_ERRORS, Claims
from indexer.config import ChainConfig
from indexer.lease import LeaseLost
from indexer.pipeline import ChainPipeline, UnitResult
from indexer.plan import Unit, merge, next_size, watermark
from indexer.rpc.client import RpcClient
from indexer.rpc.errors import AnswerTooLarge, RpcError
from indexer.sink.postgres import TRANSIENT_DB, Database, RangeConflict, StaleBranch
from indexer.types import BlockRange

if TYPE_CHECKING:
    from indexer.runner import Progress, RunOptions

log = logging.getLogger("indexer.runner")

COMPACT_EVERY = 500  # commits between merges of adjacent range records

# Failures a unit is retried on after the RPC client's own retries: the RPC or the database
# went away for a while, or Postgres chose this transaction as a deadlock victim. Nothing of
# the unit was committed, so redoing it is safe.
TRANSIENT: tuple[type[BaseException], ...] = (RpcError, *TRANSIENT_DB, OSError)


class UnitWork:
    """The unit work mixed into ``ChainRunner``: the attributes below are the runner's."""

    p: ChainPipeline
    chain: ChainConfig
    db: Database
    rpc: RpcClient
    opt: RunOptions
    progress: Progress
    claims: Claims
    done: dict[str, list[BlockRange]]
    held: dict[Unit, int]
    density: float
    size: int
    budget: int
    failures: int
    commits: int
    epoch: int
    dirty: bool
    planned_at: float
    changed: asyncio.Event
    labels: dict[str, str]
    _plan: Callable[[int], None]
    _refresh: Callable[[], Awaitable[None]]
    _after_commit: Callable[[], None]
    _backlog: Callable[[], int]

    async def _drain(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        try:
            while self.claims.pending or tasks:
                raise_if_cancelled()
                while len(tasks) < self.opt.concurrency:
                    unit = await self._claim()
                    if unit is None:
                        break
                    tasks.add(asyncio.create_task(self._work(unit)))
                if not tasks:
                    await self._idle()
                    continue
                finished, tasks = await asyncio.wait(
                    tasks, timeout=self.opt.refresh_interval, return_when=asyncio.FIRST_COMPLETED
                )
                for t in finished:
                    t.result()
                if self.dirty:
                    self.dirty = False
                    self._plan(self.progress.target)
                if self.opt.shared and time.monotonic() - self.planned_at > self.opt.refresh_interval:
                    await self._refresh()
        finally:
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _claim(self) -> Unit | None:
        """Lease the next unit that may run now, within the memory budget."""
        if self.held and self.density == 0 and not self.progress.blocks:
            return None  # slow start: nothing is known of the density yet
        if self.held and sum(self.held.values()) + self._estimate(self.size) > self.budget:
            return None
        try:
            unit = await self.claims.claim(self.size, self._factory_reach)
        except BOARD_ERRORS as e:
            log.warning("%s: lease board unreachable, waiting: %s", self.chain.name, e)
            await asyncio.sleep(1.0)
            return None
        if unit is not None:
            self.held[unit] = self._estimate(len(unit.range))
        return unit

    def _estimate(self, blocks: int) -> int:
        return int(self.density * blocks)

    def _factory_reach(self, factory: str) -> int:
        src = next(s for s in self.p.sources if s.name == factory)
        return watermark([src], self.done)

    async def _idle(self) -> None:
        """Nothing can be claimed: other workers hold the rest, or children wait for discovery.
        Wait for a unit of ours to end, or look at Postgres again."""
        self.changed.clear()
        try:
            await asyncio.wait_for(self.changed.wait(), timeout=0.2 if self.opt.shared else 0.5)
        except TimeoutError:
            if self.opt.shared:
                await self._refresh()

    async def _keep(self) -> None:
        """Heartbeats: renew the leases held and announce this worker, every TTL / 3."""
        while True:
            raise_if_cancelled()
            await self.claims.keep()
            await asyncio.sleep(self.opt.lease_ttl / 3)

    async def _work(self, unit: Unit) -> None:
        done = conflict = False
        try:
            done = await self._attempt(unit)
            conflict = not done
        except AnswerTooLarge as e:
            # Denser than the size assumed: ask again for an eighth of the blocks.
            self.size = max(1, len(unit.range) // 8)
            log.info("%s: blocks %s: %s; retrying %d blocks at a time",
                     self.chain.name, unit.range, e.detail, self.size)
            self.claims.give_back(unit)
        except LeaseLost as e:
            log.warning("%s: blocks %s not committed: %s", self.chain.name, unit.range, e)
            self.claims.give_back(unit)
        except TRANSIENT as e:
            if isinstance(e, RpcError) and not e.retryable:
                raise
            self.failures += 1
            delay = min(30.0, 0.5 * 2 ** min(self.failures, 6))
            log.warning("%s: blocks %s failed, retrying in %.1fs: %s",
                        self.chain.name, unit.range, delay, e)
            await self.claims.finish(unit, done=False)
            await asyncio.sleep(delay)
            self.claims.give_back(unit)
        finally:
            await self.claims.finish(unit, done=done)
            self.held.pop(unit, None)
            self.changed.set()
        if conflict:
            await self._refresh()

    async def _attempt(self, unit: Unit) -> bool:
        """Fetch, decode and commit ``unit``; False when another writer had committed it."""
        epoch = self.epoch  # a repair after this point makes the commit refuse these rows
        result = await self.p.process(self.rpc, unit)
        self.held[unit] = result.logs
        await faults.point("before_commit")
        lease = await self.claims.confirm(unit)
        # The last block's hash, kept as a checkpoint: a later reorg this deep is still found
        # (every unit's, factory children's too: their rows may come from another fetch, so
        # another branch, than the main sources' of the same blocks).
        tip = result.headers.get(unit.range.end)
        t0 = time.perf_counter()
        try:
            await self.db.commit(
                self.chain.chain_id, unit.range, unit.sources, result.rows,
                self.p.columns, self.chain.partition_blocks,
                children=result.children, worker=self.opt.worker, fence=lease.fence,
                blocks=[(tip, True)] if tip is not None else (), epoch=epoch,
            )
        except StaleBranch as e:
            log.info("%s: %s", self.chain.name, e)
            return False
        except RangeConflict as e:  # a race with another worker or the live tail: no harm
            log.info("%s: %s (another writer did it; skipping)", self.chain.name, e)
            return False
        self._committed(result, time.perf_counter() - t0)
        self.failures = 0
        self.commits += 1
        if self.commits % COMPACT_EVERY == 0:
            merged = await self.db.compact_ranges(self.chain.chain_id)
            if merged:
                log.debug("%s: merged %d range records", self.chain.name, merged)
        return True

    def _committed(self, r: UnitResult, write_seconds: float) -> None:
        unit = r.unit
        for s in unit.sources:
            self.done[s] = merge([*self.done.get(s, []), unit.range])
        self.p.remember(r.children)
        pr = self.progress
        pr.blocks += len(unit.range) if unit.factory is None else 0
        pr.fetch_seconds += r.fetch_seconds
        pr.decode_seconds += r.decode_seconds
        pr.write_seconds += write_seconds
        pr.failures += r.failures
        self._count(r.rows)
        metrics.RANGES_DONE.labels(chain=self.chain.name, stage="factory-children" if unit.factory else "main").inc()
        if unit.factory is None:
            density = r.logs / len(unit.range)
            self.density = density if self.density == 0 else 0.7 * self.density + 0.3 * density
            metrics.BLOCKS_INDEXED.labels(**self.labels).inc(len(unit.range))
            self.size = next_size(
                self.size, r.logs, len(unit.range),
                target_logs=self.opt.target_logs, hi=self.opt.max_range,
            )
            metrics.RANGE_SIZE_BLOCKS.labels(**self.labels).set(self.size)
        for stage, secs in (("fetch", r.fetch_seconds), ("decode", r.decode_seconds), ("write", write_seconds)):
            metrics.STAGE_SECONDS.labels(chain=self.chain.name, stage=stage).inc(secs)
        metrics.BACKLOG_RANGES.labels(**self.labels).set(self._backlog())
        self._after_commit()

    def _count(self, rows: dict[str, list[tuple]]) -> None:
        pr = self.progress
        for table, recs in rows.items():
            if recs:
                pr.events += len(recs)
                pr.tables[table] = pr.tables.get(table, 0) + len(recs)
                metrics.EVENTS_WRITTEN.labels(chain=self.chain.name, table=table).inc(len(recs))
