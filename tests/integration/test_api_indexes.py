"""The query API's index (address, block_number, log_index) on every event table, against a real
Postgres: a new table has it on every partition from the start; a table made before the index
existed gets it on its existing partitions, built concurrently and attached, while new
partitions get it at creation; the planner uses it for "the latest rows of one address"."""

from __future__ import annotations

import pytest

from indexer.naming import FIXED_COLUMNS
from indexer.sink import schema as ddl
from indexer.sink.api import EventTable
from indexer.sink.database import Database
from indexer.sink.indexes import Built, complete_api_indexes
from indexer.sink.tables import ensure_event_tables, ensure_partitions
from indexer.types import BlockRange

SCHEMA = "chaindata"
TYPES = ("bigint", "bigint", "timestamptz", "bytea", "integer", "integer", "bytea", "numeric(78,0)")
TABLE = EventTable("token_transfer", "Token", "Transfer", "Transfer(uint256)",
                   (*FIXED_COLUMNS, "value"), TYPES)
SPAN = 1000


@pytest.fixture
async def db(database_url: str):
    d = await Database.connect(database_url, SCHEMA, max_size=3)
    await d.migrate()
    yield d
    await d.close()


async def _indexes(db: Database) -> dict[str, tuple[bool, str | None]]:
    """Relation -> (its API index is valid, the index it is attached to), for the table and each
    of its partitions."""
    rows = await db.pool.fetch(
        "SELECT c.relname, x.indisvalid, (SELECT p.relname FROM pg_inherits i JOIN pg_class p"
        " ON p.oid = i.inhparent WHERE i.inhrelid = ci.oid) AS parent"
        " FROM pg_index x JOIN pg_class ci ON ci.oid = x.indexrelid"
        " JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname LIKE 'token_transfer%' AND NOT x.indisprimary",
        SCHEMA)
    return {r["relname"]: (r["indisvalid"], r["parent"]) for r in rows}


async def _fill(db: Database, chain_id: int, blocks: range) -> None:
    for b in blocks:
        await ensure_partitions(db, chain_id, [TABLE.name], BlockRange(b, b), SPAN)
    await db.pool.execute(
        f"INSERT INTO {ddl.qualified(SCHEMA, TABLE.name)} SELECT $1, b, now(), '\\x00', 0, 0,"
        " decode(lpad(to_hex(b % 7), 40, '0'), 'hex'), b FROM unnest($2::bigint[]) AS b",
        chain_id, list(blocks))


async def test_a_new_table_has_the_index_on_every_partition_from_the_start(db: Database):
    await ensure_event_tables(db, [TABLE])
    await _fill(db, 1, range(0, 2500, 100))
    got = await _indexes(db)
    leaves = [ddl.block_partition_name(TABLE.name, 1, i) for i in range(3)]
    chain = ddl.chain_partition_name(TABLE.name, 1)
    assert got[TABLE.name] == (True, None)
    assert got[chain] == (True, ddl.api_index_name(TABLE.name))
    for leaf in leaves:
        valid, parent = got[leaf]
        assert valid and parent is not None and parent.startswith(chain[:40])
    assert await complete_api_indexes(db) == Built(0, 0)  # nothing left to do


async def _old_table(db: Database) -> None:
    """The table as an earlier release made it: no API index."""
    async with db.pool.acquire() as conn:
        await conn.execute(ddl.create_event_table(SCHEMA, TABLE.name, TABLE.columns, TABLE.types))
        await conn.execute("INSERT INTO indexer.event_tables (table_name, contract, event,"
                           " signature, columns) VALUES ($1, 'Token', 'Transfer', 'T', '[]')",
                           TABLE.name)


async def test_a_table_made_before_the_index_gets_it_without_a_rebuild_of_the_table(db: Database):
    # The table as an earlier release made it: no API index, partitions holding rows.
    await _old_table(db)
    await _fill(db, 1, range(0, 3000, 10))
    await _fill(db, 2, range(0, 500, 10))
    assert await _indexes(db) == {}

    await ensure_event_tables(db, [TABLE])  # what `run` does at start: declared, ON ONLY
    assert await _indexes(db) == {TABLE.name: (False, None)}
    built = await complete_api_indexes(db)  # what `run` starts beside the backfill
    assert built.leaves == 4  # chain 1: partitions 0, 1, 2; chain 2: partition 0
    assert built.attached == 6  # and the two chain partitions
    got = await _indexes(db)
    assert all(valid for valid, _ in got.values()), got
    assert got[TABLE.name] == (True, None)
    assert len(got) == 7

    await _fill(db, 1, range(3000, 3100, 10))  # a partition made afterwards has it at once
    got = await _indexes(db)
    assert got[ddl.block_partition_name(TABLE.name, 1, 3)][0] is True

    # The tables are too small for the planner to prefer any index: it is told to, and the
    # plan shows the index gives the order (no sort), partition by partition.
    async with db.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(
            f"EXPLAIN SELECT * FROM {ddl.qualified(SCHEMA, TABLE.name)} WHERE chain_id = 1"
            " AND address = decode(lpad('3', 40, '0'), 'hex') ORDER BY block_number DESC,"
            " log_index DESC LIMIT 20"))
    assert "Index Scan Backward" in plan and "address" in plan and "Sort" not in plan, plan


async def test_an_interrupted_concurrent_build_is_dropped_and_built_again(db: Database):
    await _old_table(db)
    await _fill(db, 1, range(0, 100))
    await ensure_event_tables(db, [TABLE])
    leaf = ddl.block_partition_name(TABLE.name, 1, 0)
    # What a build cancelled half-way leaves: an index marked invalid on the leaf.
    await db.pool.execute(ddl.create_api_index(SCHEMA, leaf))
    await db.pool.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = $1::regclass",
                          ddl.qualified(SCHEMA, ddl.api_index_name(leaf)))
    built = await complete_api_indexes(db)
    assert built.leaves == 1
    got = await _indexes(db)
    assert got[leaf][0] is True and got[TABLE.name] == (True, None)
