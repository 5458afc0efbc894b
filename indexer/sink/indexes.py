"""The query API's index on the partitions of event tables made before it was declared, built
without blocking the writers.

Tables made by this release have the index from the start (``tables.ensure_event_tables``
declares it on the empty table, so every partition is made with it). A table made earlier gets
it declared on the table alone (``ON ONLY``: invalid, nothing read); this module then walks the
partition tree: a chain partition gets its own ``ON ONLY`` index, a block partition (the leaves,
where the rows are) has its index built ``CONCURRENTLY`` (writes go on meanwhile), and each is
attached to its parent's. Once every partition's index is attached, the table's index is valid.

One process builds at a time (a session advisory lock); a build interrupted half-way leaves an
invalid index, which the next pass drops and builds again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from indexer.sink import schema as ddl
from indexer.sink.database import Database

log = logging.getLogger(__name__)

INDEX_LOCK = 0x1D3E_0003

_CHILDREN = """
SELECT c.relname, c.relkind::text AS relkind,
       (SELECT ci.relname FROM pg_inherits ii JOIN pg_index x ON x.indexrelid = ii.inhrelid
        JOIN pg_class ci ON ci.oid = x.indexrelid
        WHERE ii.inhparent = $2::regclass AND x.indrelid = c.oid) AS attached
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::regclass
ORDER BY c.relname
"""


@dataclass(frozen=True, slots=True)
class Built:
    leaves: int  # block partitions whose index was built
    attached: int  # indexes attached to their parent's


async def complete_api_indexes(db: Database) -> Built:
    """Build and attach the API index of every partition that lacks it; returns what was done
    (nothing when another process holds the build lock). A failure is logged: the index is
    not needed to index, and the next start tries again."""
    try:
        return await _complete_all(db)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
        log.warning("query API index: building it failed (%s: %s); the next start tries again",
                    type(e).__name__, e)
        return Built(0, 0)


async def _complete_all(db: Database) -> Built:
    tables = [r["table_name"] for r in await db.pool.fetch(
        "SELECT table_name FROM indexer.event_tables ORDER BY table_name")]
    # A session lock, on a connection of its own (CREATE INDEX CONCURRENTLY cannot run in a
    # transaction block).
    async with db.pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", INDEX_LOCK):
            return Built(0, 0)
        try:
            leaves = attached = 0
            for table in tables:
                if await _index_of(conn, db.schema, table) is None:
                    continue  # dropped meanwhile, or not declared yet
                got = await _complete(conn, db.schema, table)
                leaves += got.leaves
                attached += got.attached
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", INDEX_LOCK)
    if leaves or attached:
        log.info("query API index: built on %d block partitions, %d indexes attached", leaves,
                 attached)
    return Built(leaves, attached)


async def _index_of(conn: asyncpg.Connection, schema: str, relation: str) -> str | None:
    name = ddl.api_index_name(relation)
    found = await conn.fetchval(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('i', 'I')", schema, name)
    return None if found is None else str(found)


async def _complete(conn: asyncpg.Connection, schema: str, relation: str) -> Built:
    """Give every partition under ``relation`` (which has its API index) an attached one."""
    index = ddl.api_index_name(relation)
    leaves = attached = 0
    rows = await conn.fetch(_CHILDREN, ddl.qualified(schema, relation),
                            ddl.qualified(schema, index))
    for r in rows:
        child: str = r["relname"]
        own = ddl.api_index_name(child)
        if r["attached"] is None:
            if r["relkind"] == "p":
                await conn.execute(ddl.create_api_index(schema, child, only=True))
            else:
                valid = await conn.fetchval(
                    "SELECT x.indisvalid FROM pg_index x JOIN pg_class ci"
                    " ON ci.oid = x.indexrelid JOIN pg_namespace n ON n.oid = ci.relnamespace"
                    " WHERE n.nspname = $1 AND ci.relname = $2", schema, own)
                if valid is False:  # a concurrent build that was interrupted
                    await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS "
                                       f"{ddl.qualified(schema, own)}")
                await conn.execute(ddl.create_api_index(schema, child, concurrently=True))
                leaves += 1
            await conn.execute(ddl.attach_index(schema, index, own))
            attached += 1
        if r["relkind"] == "p":
            got = await _complete(conn, schema, child)
            leaves += got.leaves
            attached += got.attached
    return Built(leaves, attached)
