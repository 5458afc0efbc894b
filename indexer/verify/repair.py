"""The blocks a check found different, fetched again and their rows replaced exactly once
(``sink.replace``: refused when a reorg repair ran since the fetch, then fetched again), and
checked again. With a ``Prover``, only proven rows are written: a block not proven this time is
left as it is, and its check says why."""

from __future__ import annotations

import asyncio
import logging

from indexer.chain.catalog import Catalog
from indexer.chain.fetch import Fetcher
from indexer.chain.state import ChainState
from indexer.plan import Unit
from indexer.retry import ROLLED_BACK, backoff
from indexer.sink.api import Batch, Sink, StaleBranch
from indexer.sink.database import Database
from indexer.sink.replace import replace
from indexer.types import BlockRange
from indexer.verify.check import UnitCheck, chain_rows, check_unit
from indexer.verify.proof import ProofFailure
from indexer.verify.prover import Prover
from indexer.verify.rows import blocks_of

log = logging.getLogger(__name__)

MAX_REFUSALS = 10  # commits refused (a reorg repair ran, the server rolled it back), in a row,
# before the block is given up (its check after says it still differs)


async def repair(db: Database, catalog: Catalog, fetcher: Fetcher, state: ChainState,
                 sink: Sink, found: UnitCheck, prover: Prover | None = None) -> UnitCheck:
    """Replace the rows of every block ``found`` differs in; what a check of them says after."""
    chain = catalog.chain
    after = UnitCheck(found.unit)
    for block in blocks_of(found.differences):
        unit = Unit(BlockRange(block, block), found.unit.sources, found.unit.factory)
        unproven: list[ProofFailure] = []
        for attempt in range(MAX_REFUSALS):
            epoch = state.epoch
            got = await chain_rows(catalog, fetcher, unit, state.children, prover)
            if got.proven is not None and got.proven.failures:
                unproven = got.proven.failures
                break
            try:
                async with db.pool.acquire() as conn:
                    await replace(db, conn, chain.chain_id, chain.partition_blocks,
                                  catalog.columns, Batch(unit.range, unit.sources,
                                                         got.fetched.rows),
                                  catalog.scope(unit, state.children), epoch)
                break
            except StaleBranch:
                await state.reload(sink)
            except ROLLED_BACK as e:
                delay = backoff(attempt + 1, base=1.0, cap=30.0)
                log.warning("%s: block %d not repaired (%s: %s); trying again in %.0fs",
                            chain.name, block, type(e).__name__, e, delay)
                await asyncio.sleep(delay)
        again = UnitCheck(unit, [], 0, unproven) if unproven else await check_unit(
            catalog, fetcher, db, unit, state.children, prover)
        after = UnitCheck(found.unit, after.differences + again.differences,
                          after.rows + again.rows, after.failures + again.failures,
                          after.proven_blocks + again.proven_blocks,
                          after.proven_receipts + again.proven_receipts)
    return after
