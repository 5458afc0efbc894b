"""Continuous verification while indexing (the chain file's ``verify:`` section): a sample of
the committed units, and every unit committed over blocks a reorg repair replaced, checked
against the chain again once their blocks are final. A difference is logged at ERROR, counted
(``indexer_verify_mismatched_rows_total``, alert IndexerDataMismatch) and, with ``repair:
true``, re-indexed and checked again. With ``proof: true`` the logs compared are proven against
the blocks' receiptsRoot first (``verify.prover``); a block that is not proven is logged at
ERROR and counted (``result="unproven"``), its rows left as they are."""

from __future__ import annotations

import asyncio
import logging
import random

from indexer import metrics
from indexer.cancel import raise_if_cancelled
from indexer.chain.fetch import Fetcher
from indexer.chain.parts import ChainParts
from indexer.config import VerifyConfig
from indexer.plan import Unit
from indexer.retry import TRANSIENT, is_transient
from indexer.sink.database import Database
from indexer.types import BlockRange
from indexer.verify.check import UnitCheck, check_unit
from indexer.verify.prover import Prover
from indexer.verify.repair import repair
from indexer.verify.rows import blocks_of

RESULTS = ("equal", "different", "repaired", "unproven", "error", "dropped")
QUEUE = 256  # units waiting for a check; past it a sampled unit is dropped (and counted)
REPAIRS_KEPT = 32  # repaired ranges whose re-commits are all checked


class BackgroundVerifier:
    def __init__(self, parts: ChainParts, db: Database, config: VerifyConfig, fetcher: Fetcher,
                 rng: random.Random | None = None, prover: Prover | None = None) -> None:
        self.parts = parts
        self.prover = prover  # with verify.proof: the logs compared are proven first
        self.db = db
        self.config = config
        self.fetcher = fetcher
        self.rng = rng or random.Random()
        self.queue: asyncio.Queue[Unit] = asyncio.Queue(QUEUE)
        self.repaired_ranges: list[BlockRange] = []
        self.checked = 0
        self.unrepaired = 0  # units found different and left so (no repair, or it failed)
        self.unproven = 0  # units holding a block whose receipts did not prove its logs

    def committed(self, unit: Unit) -> None:
        """A unit was committed: checked if it is in the sample, or re-commits repaired
        blocks."""
        again = any(r.start <= unit.range.end and unit.range.start <= r.end
                    for r in self.repaired_ranges)
        if not again and not (self.config.sample and self.rng.random() < self.config.sample):
            return
        try:
            self.queue.put_nowait(unit)
        except asyncio.QueueFull:
            metrics.VERIFY_RANGES.labels(chain=self.parts.name, result="dropped").inc()

    def repaired(self, rng: BlockRange) -> None:
        """A reorg repair replaced the blocks of ``rng``: every unit committed over them from
        now on is checked."""
        self.repaired_ranges = [*self.repaired_ranges, rng][-REPAIRS_KEPT:]

    async def run(self) -> None:
        p = self.parts
        for result in RESULTS:  # every series exists from the start: rates see 0, not nothing
            metrics.VERIFY_RANGES.labels(chain=p.name, result=result).inc(0)
        for table in p.catalog.columns:
            metrics.VERIFY_MISMATCHED_ROWS.labels(chain=p.name, table=table).inc(0)
        while True:
            raise_if_cancelled()
            unit = await self.queue.get()
            try:
                await self._final(unit)
                await self._check(unit)
            except TRANSIENT as e:
                if not is_transient(e):
                    raise
                metrics.VERIFY_RANGES.labels(chain=self.parts.name, result="error").inc()
                logging.getLogger(__name__).warning(
                    "%s: verifying blocks %s failed, not retried: %s", self.parts.name,
                    unit.range, e)
            finally:
                self.queue.task_done()

    async def drain(self) -> None:
        """Wait until every unit queued so far is checked (the end of a ``--once`` run)."""
        await self.queue.join()

    async def _final(self, unit: Unit) -> None:
        """Wait until the unit's blocks are at or below the safe head (final)."""
        p = self.parts
        while p.progress.head - p.chain.finality_depth < unit.range.end:
            await p.clock.sleep(1.0)

    async def _check(self, unit: Unit) -> None:
        p = self.parts
        found = await check_unit(p.catalog, self.fetcher, self.db, unit, p.state.children,
                                 self.prover)
        self.checked += 1
        if found.failures:
            self.unproven += 1
            metrics.VERIFY_RANGES.labels(chain=p.name, result="unproven").inc()
            logging.getLogger(__name__).error(
                "%s: blocks %s NOT PROVEN against their receiptsRoot: %s", p.name, unit.range,
                "; ".join(f"block {f.block}: {f.reason}" for f in found.failures[:5]))
            if not found.differences:
                return
        if found.equal:
            metrics.VERIFY_RANGES.labels(chain=p.name, result="equal").inc()
            return
        self._report(found)
        if not self.config.repair:
            metrics.VERIFY_RANGES.labels(chain=p.name, result="different").inc()
            self.unrepaired += 1
            return
        after = await repair(self.db, p.catalog, self.fetcher, p.state, p.sink, found,
                             self.prover)
        result = "repaired" if after.equal else "different"
        metrics.VERIFY_RANGES.labels(chain=p.name, result=result).inc()
        log = logging.getLogger(__name__)
        if after.equal:
            log.warning("%s: blocks %s re-indexed: they now equal the chain", p.name,
                        ", ".join(map(str, blocks_of(found.differences))))
        else:
            self.unrepaired += 1
            log.error("%s: blocks %s still differ from the chain after re-indexing them",
                      p.name, ", ".join(map(str, blocks_of(after.differences))))

    def _report(self, found: UnitCheck) -> None:
        p = self.parts
        per_table: dict[str, int] = {}
        for d in found.differences:
            per_table[d.table] = per_table.get(d.table, 0) + 1
        for table, n in per_table.items():
            metrics.VERIFY_MISMATCHED_ROWS.labels(chain=p.name, table=table).inc(n)
        first = found.differences[0]
        logging.getLogger(__name__).error(
            "%s: DATA MISMATCH in blocks %s: %s (first: %s block %d log %d %s); run `indexer "
            "verify --chain %s --from-block %d --to-block %d --repair`", p.name, found.unit.range,
            ", ".join(f"{t} {n} rows" for t, n in sorted(per_table.items())), first.table,
            first.block, first.log_index, first.kind, p.name, found.unit.range.start,
            found.unit.range.end)
