"""``indexer reindex``: fetch the blocks of one contract's sources (one event's, with
``--event``) again and replace their rows, unit by unit, each unit's delete and copy in one
transaction (``sink.replace``). Only blocks that are done are re-indexed (the others are the
backfill's). A reorg repair between a unit's fetch and its commit refuses the commit; the unit
is planned again from what is done after the repair. What an ABI fix, or a difference found by
``verify``, needs."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field

from indexer.chain.catalog import Catalog
from indexer.chain.fetch import Fetcher
from indexer.chain.state import ChainState
from indexer.config import ChainConfig
from indexer.ops.attach import attach
from indexer.plan import Unit, pieces, redo
from indexer.retry import ROLLED_BACK, backoff
from indexer.rpc.client import RpcClient
from indexer.sink.api import Batch, StaleBranch
from indexer.sink.database import Database
from indexer.sink.postgres import PostgresSink
from indexer.sink.replace import replace
from indexer.sink.tables import ensure_event_tables
from indexer.types import BlockRange

log = logging.getLogger(__name__)

MAX_RETRIES = 20  # commits refused (a repair ran, the server rolled it back), in a row


class NothingToReindex(Exception):  # noqa: N818 - a request that cannot be met, said as such
    """The request names no source, or no block of it is done."""


@dataclass(slots=True)
class Reindexed:
    units: int = 0
    blocks: int = 0
    deleted: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)


async def reindex(db: Database, chain: ChainConfig, rpc: RpcClient, contract: str,
                  event: str | None, first: int | None, last: int | None) -> Reindexed:
    attached = await attach(db, chain)
    catalog = attached.catalog
    keys = catalog.keys_of(contract, event)
    if not keys:
        what = f"contract {contract}" + (f" with an event {event}" if event else "")
        raise NothingToReindex(f"{chain.source}: there is no {what} in the chain file")
    await ensure_event_tables(db, catalog.tables)
    remote = await rpc.chain_id()
    if remote != chain.chain_id:
        raise NothingToReindex(f"{chain.source}: chain_id is {chain.chain_id} but the RPC "
                               f"answers {remote}")
    sink = PostgresSink(db, chain.chain_id, chain.partition_blocks, catalog.columns)
    state = ChainState([s for s in catalog.sources if s.name in set(keys)])
    fetcher = Fetcher(catalog, rpc)
    done = Reindexed()
    refused = 0
    await state.reload(sink)
    lo = first if first is not None else min(catalog.keyed[k].start_block for k in keys)
    hi = last if last is not None else max(
        (r.end for k in keys for r in state.done.get(k, ())), default=lo - 1)
    if hi < lo:
        raise NothingToReindex(f"{chain.name}: no block of {contract}"
                               f"{' ' + event if event else ''} is indexed yet")
    todo = _units(catalog, state, BlockRange(lo, hi))
    if not todo:
        raise NothingToReindex(f"{chain.name}: no block of {contract}"
                               f"{' ' + event if event else ''} in {lo}-{hi} is indexed yet "
                               "(the backfill indexes them)")
    started = time.monotonic()
    while todo:
        unit = todo.pop(0)
        epoch = state.epoch
        fetched = await fetcher.unit(unit, state.children)
        scope = catalog.scope(unit, state.children)
        batch = Batch(unit.range, unit.sources, fetched.rows)
        try:
            async with db.pool.acquire() as conn:
                deleted = await replace(db, conn, chain.chain_id, chain.partition_blocks,
                                        catalog.columns, batch, scope, epoch)
        except StaleBranch as e:
            refused += 1
            if refused > MAX_RETRIES:
                raise
            log.info("%s: %s", chain.name, e)
            await state.reload(sink)
            todo = _units(catalog, state, BlockRange(unit.range.start, hi))
            continue
        except ROLLED_BACK as e:
            refused += 1
            if refused > MAX_RETRIES:
                raise
            delay = backoff(refused, base=1.0, cap=30.0)
            log.warning("%s: blocks %s not replaced (%s: %s); trying again in %.0fs",
                        chain.name, unit.range, type(e).__name__, e, delay)
            await asyncio.sleep(delay)
            todo.insert(0, unit)
            continue
        refused = 0
        done.units += 1
        done.blocks += len(unit.range)
        for t, n in deleted.items():
            done.deleted[t] = done.deleted.get(t, 0) + n
        for t, recs in fetched.rows.items():
            done.written[t] = done.written.get(t, 0) + len(recs)
        _progress(chain.name, done, unit, hi, started)
    return done


def _units(catalog: Catalog, state: ChainState, rng: BlockRange) -> list[Unit]:
    """The done blocks of ``rng``, cut at partitions and to the file's eth_getLogs range."""
    chain = catalog.chain
    out: list[Unit] = []
    for u in redo(state.sources, state.done, rng):
        for piece in pieces(u.range, chain.partition_blocks):
            out.extend(Unit(r, u.sources, u.factory) for r in piece.chunks(chain.get_logs_max_range))
    return out


def _progress(chain: str, done: Reindexed, unit: Unit, hi: int, started: float) -> None:
    elapsed = max(1e-9, time.monotonic() - started)
    written = sum(done.written.values())
    print(f"{chain}: re-indexed blocks up to {unit.range.end:,} of {hi:,}: {done.units} units, "
          f"{written:,} rows written ({written / elapsed:,.0f}/s)", file=sys.stderr)


async def reindex_command(chain: ChainConfig, db: Database, rpc: RpcClient, contract: str,
                          event: str | None, first: int | None, last: int | None) -> int:
    """The command: the summary, and exit 1 when there was nothing it could re-index."""
    try:
        r = await reindex(db, chain, rpc, contract, event, first, last)
    except NothingToReindex as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{chain.name}: re-indexed {r.blocks:,} blocks in {r.units} units", file=sys.stderr)
    for t in sorted(set(r.deleted) | set(r.written)):
        print(f"  {t}: {r.deleted.get(t, 0):,} rows deleted, {r.written.get(t, 0):,} written",
              file=sys.stderr)
    return 0
