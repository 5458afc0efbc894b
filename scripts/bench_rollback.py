"""How long the repair of a reorg takes on large tables: the one transaction that deletes every
row above the fork point (``indexer.sink.reorgs.rollback``).

    .venv/bin/python scripts/bench_rollback.py [--rows 5000000] [--depth 5] [--tables 3]

Fills ``--tables`` event tables of one chain with ``--rows`` rows each (10 logs a block, in
partitions of 100,000 blocks) through the real sink, then repairs reorgs of ``--depth`` blocks
at the top a few times (re-inserting the rows in between) and prints the time of each repair
and the plan Postgres uses for the delete (one block partition, its primary-key index).
Uses a fresh database (DATABASE_URL as the admin URL, else the test Postgres) and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from indexer.sink.api import EventTable, Repair  # noqa: E402
from indexer.sink.blocks import rollback  # noqa: E402
from indexer.sink.database import Database  # noqa: E402
from indexer.sink.schema import block_partition_name, chain_partition_name, qualified  # noqa: E402
from indexer.sink.tables import ensure_event_tables, ensure_partitions  # noqa: E402
from indexer.types import BlockRange  # noqa: E402
from tests.support.services import database_url_for_tests, drop_database, fresh_database  # noqa: E402

CHAIN = 1
SPAN = 100_000
PER_BLOCK = 10
COLUMNS = ("chain_id", "block_number", "block_time", "tx_hash", "tx_index", "log_index",
           "address", "src", "dst", "value")
TYPES = ("bigint", "bigint", "timestamptz", "bytea", "integer", "integer", "bytea", "bytea",
         "bytea", "numeric(78,0)")


def records(blocks: range, now: datetime) -> list[tuple]:
    return [(CHAIN, b, now, b"\x01" * 32, 0, i, b"\x02" * 20, b"\x03" * 20, b"\x04" * 20, i)
            for b in blocks for i in range(PER_BLOCK)]


async def fill(db: Database, tables: list[str], last: int, now: datetime) -> None:
    for start in range(0, last + 1, 10_000):
        rng = BlockRange(start, min(last, start + 9_999))
        rows = records(range(rng.start, rng.end + 1), now)
        for t in tables:
            await ensure_partitions(db, CHAIN, [t], rng, SPAN)
            async with db.pool.acquire() as conn:
                await conn.copy_records_to_table(
                    block_partition_name(t, CHAIN, rng.start // SPAN), records=rows,
                    columns=list(COLUMNS), schema_name=db.schema)


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=5_000_000, help="rows per table")
    p.add_argument("--depth", type=int, default=5, help="blocks replaced by each reorg")
    p.add_argument("--tables", type=int, default=3)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    admin = database_url_for_tests()
    url = await fresh_database(admin, prefix="bench_rollback")
    db = await Database.connect(url, "chaindata")
    try:
        await db.migrate()
        await db.register_chain(CHAIN, "bench", SPAN, 32, 2.0, b"\x00" * 32)
        tables = [f"bench_event_{i}" for i in range(a.tables)]
        await ensure_event_tables(db, [EventTable(t, "Bench", "Event", "Event()", COLUMNS, TYPES)
                                      for t in tables])
        last = a.rows // PER_BLOCK - 1
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        await fill(db, tables, last, now)
        print(f"filled {a.tables} tables x {a.rows:,} rows (blocks 0-{last:,}, partitions of "
              f"{SPAN:,} blocks) in {time.perf_counter() - t0:.1f}s")
        async with db.pool.acquire() as conn:
            await conn.execute("ANALYZE")
            plan = await conn.fetch(
                f"EXPLAIN DELETE FROM {qualified(db.schema, chain_partition_name(tables[0], CHAIN))}"
                f" WHERE chain_id = $1 AND block_number > $2", CHAIN, last - a.depth)
        print("plan of one table's delete:\n  " + "\n  ".join(r[0] for r in plan))
        times = []
        for i in range(a.repeat):
            keep = last - a.depth
            t0 = time.perf_counter()
            deleted = await rollback(db, CHAIN, Repair(keep, last, last, False), fence=i + 1)
            times.append(time.perf_counter() - t0)
            assert sum(deleted.get(t, 0) for t in tables) == a.tables * a.depth * PER_BLOCK
            await fill_top(db, tables, keep + 1, last, now)
        print(f"repair of a {a.depth}-block reorg over {a.tables} tables of {a.rows:,} rows "
              f"(deleting {a.tables * a.depth * PER_BLOCK} rows), {a.repeat} times: median "
              f"{statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms")
        return 0
    finally:
        await db.close()
        await drop_database(admin, url)


async def fill_top(db: Database, tables: list[str], first: int, last: int, now: datetime) -> None:
    rows = records(range(first, last + 1), now)
    async with db.pool.acquire() as conn:
        for t in tables:
            await conn.copy_records_to_table(
                block_partition_name(t, CHAIN, first // SPAN), records=rows,
                columns=list(COLUMNS), schema_name=db.schema)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
