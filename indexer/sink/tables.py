"""Event tables and their partitions: created when missing, safely when several workers race,
and checked against the ABI when they exist (a table with other columns is refused, never
altered). Every event table has the query API's index (``schema.create_api_index``), declared on
the table when it is made, so that each partition is made with it, empty."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson

from indexer.sink import schema as ddl
from indexer.sink.api import EventTable, SinkError
from indexer.sink.database import DDL_LOCK, Database, table_exists
from indexer.types import BlockRange

_TYPE_ALIASES = {"timestamp with time zone": "timestamptz"}


async def ensure_event_tables(db: Database, tables: Iterable[EventTable]) -> None:
    """Create missing event tables; refuse one whose columns differ from the ABI's."""
    async with db.pool.acquire() as conn, conn.transaction():
        await db.bound(conn, statement=False)
        await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK)
        for t in tables:
            existing = await conn.fetch(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type"
                " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0"
                " AND NOT a.attisdropped ORDER BY a.attnum",
                db.schema, t.name,
            )
            if existing:
                _check_columns(db.schema, t, [(r["attname"], r["type"]) for r in existing])
                if not await table_exists(conn, db.schema, ddl.api_index_name(t.name)):
                    # A table made by an earlier release: the index is declared on the table
                    # alone (no row read, nothing blocked); every partition made from now on
                    # gets its own, and sink/indexes.py builds those of the existing ones.
                    await conn.execute(ddl.create_api_index(db.schema, t.name, only=True))
            else:
                await conn.execute(ddl.create_event_table(db.schema, t.name, t.columns, t.types))
                # On the empty table: each partition, made empty, gets it at once.
                await conn.execute(ddl.create_api_index(db.schema, t.name))
            await conn.execute(
                "INSERT INTO indexer.event_tables (table_name, contract, event, signature,"
                " columns) VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (table_name) DO NOTHING",
                t.name, t.contract, t.event, t.signature, _json_columns(t),
            )


async def ensure_partitions(
    db: Database, chain_id: int, tables: Sequence[str], rng: BlockRange, span: int
) -> None:
    """Create the chain and block partitions that ``rng`` needs, safely under races."""
    wanted = [
        (t, i) for t in tables for i in ddl.partitions_of(rng, span)
        if ddl.block_partition_name(t, chain_id, i) not in db.partitions
    ]
    if not wanted:
        return
    # One short transaction per partition: creating a partition locks its parent
    # exclusively, and holding several such locks at once while other workers' commits
    # hold locks on several tables is a lock-order deadlock.
    async with db.pool.acquire() as conn:
        for t, i in wanted:
            async with conn.transaction():
                await db.bound(conn)
                await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK)
                await conn.execute(ddl.create_chain_partition(db.schema, t, chain_id))
            async with conn.transaction():
                await db.bound(conn)
                await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK)
                await conn.execute(ddl.create_block_partition(db.schema, t, chain_id, i, span))
            db.partitions.add(ddl.block_partition_name(t, chain_id, i))


def _json_columns(t: EventTable) -> str:
    return orjson.dumps([{"name": c, "type": ty}
                         for c, ty in zip(t.columns, t.types, strict=True)]).decode()


def _check_columns(schema: str, t: EventTable, existing: list[tuple[str, str]]) -> None:
    have = [(n, _TYPE_ALIASES.get(ty, ty)) for n, ty in existing]
    want = list(zip(t.columns, t.types, strict=True))
    if have != want:
        diff = [
            f"{w[0]} {w[1]} (table has {h[0]} {h[1]})"
            for w, h in zip(want, have, strict=False) if w != h
        ]
        if len(want) != len(have):
            diff.append(f"{len(want)} columns expected, table has {len(have)}")
        raise SinkError(
            f"table {schema}.{t.name} exists with other columns than {t.contract}.{t.signature} "
            f"needs: {'; '.join(diff[:5])}. Drop or rename the table, or fix the ABI."
        )
