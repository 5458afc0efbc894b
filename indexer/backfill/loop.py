"""The backfill of one chain, as one loop: find the block to index up to, learn what is done,
plan the units left, run them (several at once, within the memory budget), apply what came of
each, and again as the safe head moves.

Every unit is leased on the board before it is fetched (``lease.claims``) and committed with
its range record in one transaction (``worker``); the watermark is the highest block below
which every source is done. The live tail runs beside this loop (started by the composer); it
calls ``replan`` after a repair changed what is done.

Postgres gone away is waited for (``retry.Patience``: each attempt logged, at most
``INDEXER_DB_WAIT`` in a row), on every path that reads or writes it. A unit whose commit is
refused again after what is done was re-read (a conflict the refresh does not explain, a
stale stored block, a key twice in its rows) is held back with a growing delay, counted
(``indexer_commits_refused_total``) and logged; a bounded run (``--once``, ``--until``) gives up
on it after ``GIVE_UP_AFTER`` refusals in a row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from indexer import metrics
from indexer.backfill.pacing import Pacer
from indexer.backfill.worker import (
    Committed,
    Conflict,
    GiveBack,
    Outcome,
    Refused,
    Retry,
    Shrink,
    UnitWorker,
)
from indexer.cancel import raise_if_cancelled
from indexer.chain.fetch import Fetched
from indexer.chain.parts import ChainParts
from indexer.lease.board import Lease
from indexer.lease.claims import Claims
from indexer.plan import Unit, todo
from indexer.retry import TRANSIENT, Patience, backoff, patiently
from indexer.sink.api import DatabaseUnavailable, SinkError

log = logging.getLogger(__name__)

T = TypeVar("T")

COMPACT_EVERY = 500  # commits between merges of adjacent range records
GIVE_UP_AFTER = 8  # refusals in a row of one unit after which a bounded run fails
CONFLICT_BACKOFF = (1.0, 60.0)  # base and cap (s) of holding back a unit refused again
DUPLICATE_BACKOFF = (5.0, 300.0)  # the same for rows with a key twice


@dataclass(frozen=True, slots=True)
class BackfillOptions:
    once: bool = False  # up to the safe head at start, then return
    until: int | None = None  # up to this block, then return
    concurrency: int = 4  # units being fetched at once (see pacing)
    target_logs: int = 10_000  # logs per unit the range size aims at
    max_range: int = 100_000
    poll_interval: float | None = None  # default: a fraction of the block time, at most 1 s
    lease_ttl: float = 30.0
    shared: bool = False  # the lease board is shared with other processes: refresh from Postgres
    refresh_interval: float = 2.0


class Backfill:
    def __init__(self, parts: ChainParts, claims: Claims, worker: str,
                 options: BackfillOptions,
                 on_committed: Callable[[Unit], None] | None = None) -> None:
        self.parts = parts
        self.on_committed = on_committed  # told of every unit committed (verification)
        self.claims = claims
        self.opt = options
        chain = parts.chain
        self.pacer = Pacer.start(target_logs=options.target_logs,
                                 concurrency=options.concurrency, max_range=options.max_range,
                                 first_range=chain.get_logs_max_range)
        self.worker = UnitWorker(parts, claims, worker, self._fetched)
        self.planned_at = 0.0
        self.failures = 0  # consecutive failed units, for the back-off
        self.refusals: dict[tuple[int, str | None], int] = {}  # unit start -> refused in a row
        self.db = Patience(parts.db_wait, parts.clock, parts.name)
        self.commits = 0
        self._replan = False  # what is done changed under the plan (a repair): plan again
        self._wake = asyncio.Event()  # a unit ended, or the plan changed

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        keep = asyncio.create_task(self._keep())
        try:
            target = await self._target(wait=False)
            while True:
                raise_if_cancelled()
                if self.opt.shared:
                    await self._reload()
                self._plan(target)
                await self._drain()
                if self.opt.once or (self.opt.until is not None and target >= self.opt.until):
                    return
                target = await self._target(wait=True)
        finally:
            keep.cancel()
            await asyncio.gather(keep, return_exceptions=True)

    def replan(self) -> None:
        """What is done changed (a repair deleted rows): plan again before the next claim."""
        self._replan = True
        self._wake.set()

    def backlog(self) -> int:
        """Units planned, leased or held back, and not yet done."""
        return len(self.claims.pending) + len(self.claims.leases) + len(self.claims.held)

    async def _patiently(self, doing: str, call: Callable[[], Awaitable[T]]) -> T:
        return await patiently(self.db, doing, call)

    async def _reload(self) -> None:
        """Re-read what is done (every worker's commits), waiting for Postgres if need be."""
        p = self.parts
        await self._patiently("re-reading what is done", lambda: p.state.reload(p.sink))

    async def _target(self, wait: bool) -> int:
        """The block to index up to now; with ``wait``, waits for the safe head to move past
        the last target (or for a replan)."""
        p = self.parts
        while True:
            raise_if_cancelled()
            safe = await p.head.poll() - p.chain.finality_depth
            target = safe if self.opt.until is None else min(safe, self.opt.until)
            if not wait or target > p.progress.target or self._replan:
                return target
            if self.opt.shared and self._since_planned() > self.opt.refresh_interval:
                await self._reload()  # other workers' commits move the watermark too
                p.watermark_moved()
                self.planned_at = p.clock.monotonic()
            await p.clock.sleep(self._poll_interval())

    def _poll_interval(self) -> float:
        if self.opt.poll_interval is not None:
            return self.opt.poll_interval
        return max(0.05, min(1.0, self.parts.chain.block_time / 4))

    def _since_planned(self) -> float:
        return self.parts.clock.monotonic() - self.planned_at

    def _plan(self, target: int) -> None:
        p = self.parts
        self._replan = False
        self.claims.replan(todo(p.catalog.sources, p.state.done, target))
        self.planned_at = p.clock.monotonic()
        pending = self.claims.pending
        p.progress.planned(target, min((u.range.start for u in pending), default=None))
        p.watermark_moved()
        metrics.BACKLOG_RANGES.labels(chain=p.name).set(self.backlog())

    async def _refresh(self) -> None:
        """Learn what the other workers committed and plan again."""
        await self._reload()
        self._plan(self.parts.progress.target)

    async def _drain(self) -> None:
        """Run the planned units until none is left: claim within the budget, run, apply."""
        tasks: set[asyncio.Task[None]] = set()
        try:
            while self.claims.pending or tasks or self.claims.held:
                raise_if_cancelled()
                self._wake.clear()
                if self.claims.release_due(self.parts.clock.monotonic()):
                    self._plan(self.parts.progress.target)  # held-back units are due again
                while True:  # the pacer bounds the units in flight
                    unit = await self._claim()
                    if unit is None:
                        break
                    tasks.add(asyncio.create_task(self._unit(unit, self.claims.leases[unit])))
                if not tasks:
                    await self._idle()
                    continue
                # Until a unit ends or has its answer in memory (another may start then).
                wake = asyncio.ensure_future(self._wake.wait())
                try:
                    finished, _ = await asyncio.wait(
                        {*tasks, wake}, timeout=self.opt.refresh_interval,
                        return_when=asyncio.FIRST_COMPLETED)
                finally:
                    wake.cancel()
                for t in finished - {wake}:
                    tasks.discard(t)
                    t.result()
                if self._replan:
                    self._plan(self.parts.progress.target)
                if self.opt.shared and self._since_planned() > self.opt.refresh_interval:
                    await self._refresh()
        finally:
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    def _fetched(self, unit: Unit, logs: int) -> None:
        """A unit's answer is in memory: the next one may be fetched meanwhile."""
        self.pacer.fetched(unit, logs)
        self._wake.set()

    async def _claim(self) -> Unit | None:
        """Lease the next unit that may run now, within the memory budget."""
        if not self.pacer.may_start():
            return None
        try:
            unit = await self.claims.claim(self.pacer.size_for, self._reach)
        except TRANSIENT as e:
            log.warning("%s: lease board unreachable, waiting: %s", self.parts.name, e)
            await self.parts.clock.sleep(1.0)
            return None
        if unit is not None:
            self.pacer.started(unit)
        return unit

    def _reach(self, factory: str) -> int:
        """How far ``factory``'s discovery of children reaches: their units wait for it."""
        return self.parts.state.reach(self.parts.catalog.discovery_keys(factory))

    async def _idle(self) -> None:
        """Nothing can be claimed: other workers hold the rest, or children wait for discovery,
        or units are held back. Wait for a unit of ours to end, or look at Postgres again."""
        due = self.claims.next_due()
        if due is not None and not self.claims.pending:
            clock = self.parts.clock
            await clock.sleep(min(1.0, max(0.0, due - clock.monotonic())))
            return
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=0.2 if self.opt.shared else 0.5)
        except TimeoutError:
            if self.opt.shared:
                await self._refresh()

    async def _keep(self) -> None:
        """Heartbeats: renew the leases held and announce this worker, every TTL / 3."""
        while True:
            raise_if_cancelled()
            await self.claims.keep()
            await self.parts.clock.sleep(self.opt.lease_ttl / 3)

    # -- one unit ---------------------------------------------------------------------------

    async def _unit(self, unit: Unit, lease: Lease) -> None:
        committed = False
        try:
            outcome = await self.worker.run(unit)
            committed = isinstance(outcome, Committed)
            await self._apply(unit, lease, outcome)
        finally:
            await self._let_go(unit, lease, done=committed)
            self._wake.set()

    async def _let_go(self, unit: Unit, lease: Lease, done: bool = False) -> None:
        """Release this task's lease and its place in the pacer, once. Some outcomes let go
        before the task ends; an equal unit claimed after that (the same blocks planned again)
        has a lease and a place of its own, which the end of this task must leave alone."""
        if self.claims.holds(unit, lease):
            self.pacer.ended(unit)
            await self.claims.finish(unit, done)

    async def _apply(self, unit: Unit, lease: Lease, outcome: Outcome) -> None:
        """What came of a unit, applied: the one place that changes the plan and the pace."""
        p = self.parts
        name = p.name
        match outcome:
            case Committed(result, write_seconds):
                self.db.ok()
                self.refusals.pop(_key(unit), None)
                self._committed(unit, result, write_seconds)
                self.failures = 0
                await self._compact()
            case Conflict(reason, stale):
                self.db.ok()
                reason_label = "stale" if stale else "conflict"
                metrics.COMMITS_REFUSED.labels(chain=name, reason=reason_label).inc()
                if stale:
                    log.info("%s: %s", name, reason)
                else:
                    log.info("%s: %s (another writer did it; skipping)", name, reason)
                await self._let_go(unit, lease)  # so that the plan can hold it
                await self._refresh()
                if self._still_planned(unit):  # the refresh does not explain the refusal
                    self._hold_back(unit, reason, CONFLICT_BACKOFF)
            case Refused(error):
                self.db.ok()
                metrics.COMMITS_REFUSED.labels(chain=name, reason="duplicate_key").inc()
                await self._let_go(unit, lease)
                self._hold_back(unit, str(error), DUPLICATE_BACKOFF, level=logging.ERROR)
            case GiveBack(reason):
                log.warning("%s: blocks %s not committed: %s", name, unit.range, reason)
                self.claims.give_back(unit)
            case Shrink(reason):
                size = self.pacer.too_large(unit)
                log.info("%s: blocks %s: %s; retrying %d blocks at a time", name, unit.range,
                         reason, size)
                self.claims.give_back(unit)
            case Retry(error) if isinstance(error, DatabaseUnavailable):
                await self._let_go(unit, lease)  # others may take it meanwhile
                await self.db.wait(error, f"committing blocks {unit.range}")
                self.claims.give_back(unit)
            case Retry(error):
                self.failures += 1
                delay = backoff(self.failures, base=1.0, cap=30.0)
                log.warning("%s: blocks %s failed, retrying in %.1fs: %s", name, unit.range,
                            delay, error)
                await self._let_go(unit, lease)  # others may take it meanwhile
                await p.clock.sleep(delay)
                self.claims.give_back(unit)

    def _still_planned(self, unit: Unit) -> bool:
        """Whether all of ``unit``'s blocks are still to do after re-reading what is done: then
        no other writer explains its refusal."""
        rng = unit.range
        planned = sum(max(0, min(u.range.end, rng.end) - max(u.range.start, rng.start) + 1)
                      for u in self.claims.pending if u.factory == unit.factory)
        return planned >= len(rng)

    def _hold_back(self, unit: Unit, reason: str, delays: tuple[float, float],
                   level: int = logging.WARNING) -> None:
        """The commit of ``unit`` was refused again: keep its blocks out of the plan for a
        growing while (a bounded run gives up after GIVE_UP_AFTER refusals in a row)."""
        p = self.parts
        key = _key(unit)
        n = self.refusals[key] = self.refusals.get(key, 0) + 1
        if n >= GIVE_UP_AFTER and (self.opt.once or self.opt.until is not None):
            raise SinkError(f"{p.name}: blocks {unit.range} refused {n} times in a row, giving "
                            f"up: {reason}")
        delay = backoff(n, base=delays[0], cap=delays[1])
        log.log(level, "%s: blocks %s refused (%d in a row): %s; trying them again in %.0fs",
                p.name, unit.range, n, reason, delay)
        self.claims.hold(unit, p.clock.monotonic() + delay)
        metrics.BACKLOG_RANGES.labels(chain=p.name).set(self.backlog())

    def _committed(self, unit: Unit, result: Fetched, write_seconds: float) -> None:
        p = self.parts
        p.state.record(unit.sources, unit.range)
        p.state.remember(result.children)
        pr = p.progress
        pr.failures += result.failures
        pr.timed(result.fetch_seconds, result.decode_seconds, write_seconds)
        log.debug("%s: blocks %s committed: %d logs, fetch %.3fs, decode %.3fs, write %.3fs",
                  p.name, unit.range, result.logs, result.fetch_seconds, result.decode_seconds,
                  write_seconds)
        pr.wrote(result.rows)
        stage = "factory-children" if unit.factory else "main"
        metrics.RANGES_DONE.labels(chain=p.name, stage=stage).inc()
        self.pacer.committed(unit, result.logs)
        if unit.factory is None:
            pr.covered(len(unit.range))
            metrics.RANGE_SIZE_BLOCKS.labels(chain=p.name).set(self.pacer.size)
        metrics.BACKLOG_RANGES.labels(chain=p.name).set(self.backlog())
        p.watermark_moved()
        pr.committed(p.clock.time())
        if self.on_committed is not None:
            self.on_committed(unit)

    async def _compact(self) -> None:
        self.commits += 1
        if self.commits % COMPACT_EVERY == 0:
            try:
                merged = await self.parts.sink.compact()
            except DatabaseUnavailable as e:  # tidying only: the next round does it
                log.warning("%s: range records not merged: %s", self.parts.name, e)
                return
            if merged:
                log.debug("%s: merged %d range records", self.parts.name, merged)


def _key(unit: Unit) -> tuple[int, str | None]:
    return (unit.range.start, unit.factory)
