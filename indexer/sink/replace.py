"""Rows of blocks already done, replaced: what ``indexer reindex`` (and a repair found by
``verify``) commits. One transaction per batch: the old rows of its sources in its blocks are
deleted and the new ones copied in; the range records stay as they are (the blocks were and
are done). The transaction is refused when a reorg repair ran since the rows were fetched, and
is bounded as a commit is (``Database.bound``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from indexer.sink import schema as ddl
from indexer.sink.api import Batch, StaleBranch
from indexer.sink.database import Database, chain_lock_key, table_exists
from indexer.sink.tables import ensure_partitions


async def replace(db: Database, conn: asyncpg.Connection, chain_id: int, span: int,
                  columns: Mapping[str, Sequence[str]], batch: Batch,
                  scope: Mapping[str, Sequence[bytes]], epoch: int) -> dict[str, int]:
    """Delete the rows of ``batch.range`` in each table of ``scope`` whose address is one of
    that table's (the sources re-fetched), copy ``batch.rows``; rows deleted per table."""
    rng = batch.range
    index = rng.start // span
    if rng.end // span != index:
        raise ValueError(f"range {rng} crosses a partition boundary of span {span}")
    tables = sorted(set(scope) | {t for t, recs in batch.rows.items() if recs})
    await ensure_partitions(db, chain_id, [t for t in tables if batch.rows.get(t)], rng, span)
    deleted: dict[str, int] = {}
    async with conn.transaction():
        await db.bound(conn)  # a frozen client cannot hold these blocks' locks for long
        for t in tables:
            part = ddl.block_partition_name(t, chain_id, index)
            if t in scope and await table_exists(conn, db.schema, part):
                status = await conn.execute(
                    f"DELETE FROM {ddl.qualified(db.schema, part)} WHERE chain_id = $1"
                    " AND block_number BETWEEN $2 AND $3 AND address = ANY($4::bytea[])",
                    chain_id, rng.start, rng.end, list(scope[t]))
                deleted[t] = int(status.split()[-1])
            if batch.rows.get(t):
                await conn.copy_records_to_table(part, records=batch.rows[t],
                                                 columns=list(columns[t]), schema_name=db.schema)
        await conn.execute("SELECT pg_advisory_xact_lock($1)", chain_lock_key(chain_id))
        now = await conn.fetchval(
            "SELECT coalesce(max(reorg_epoch), 0) FROM indexer.chains WHERE chain_id = $1",
            chain_id)
        if now != epoch:
            raise StaleBranch(f"chain {chain_id}: blocks {rng} were fetched before a reorg "
                              f"repair; fetching them again")
    return deleted
