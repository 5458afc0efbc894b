"""Postgres itself: the pool, the migrations of the system tables, a chain's registration (its
genesis hash and partition span are checked against what was indexed before) and the reset of a
chain.

Everything of one chain is written under that chain's advisory lock (``chain_lock_key``): the
commits, the repairs of reorgs, the merging of range records and the reset.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import asyncpg

from indexer.sink import schema as ddl
from indexer.sink.api import SinkError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "schema"
MIGRATION_LOCK = 0x1D3E_0001
DDL_LOCK = 0x1D3E_0002


def chain_lock_key(chain_id: int) -> int:
    digest = hashlib.blake2b(f"indexer.ranges:{chain_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def table_exists(conn: asyncpg.Connection | asyncpg.Pool, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists (names taken as they are: no case folding)."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname = $2)", schema, table))


class Database:
    """The pool and the event tables' schema; ``partitions``: the block partitions known to
    exist (created by this process or found), so each is created at most once."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema
        self.partitions: set[str] = set()

    @classmethod
    async def connect(
        cls, dsn: str, schema: str, *, max_size: int = 8, idle_in_transaction: float = 120.0
    ) -> Database:
        # A worker stopped inside a transaction (paused, or its host frozen) would hold its rows'
        # key locks and block the worker that takes its range over: the server ends such
        # sessions after ``idle_in_transaction`` seconds.
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=max_size, command_timeout=600,
            server_settings={
                "idle_in_transaction_session_timeout": str(int(idle_in_transaction * 1000)),
            },
        )
        assert pool is not None
        return cls(pool, schema)

    async def close(self) -> None:
        await self.pool.close()

    async def migrate(self) -> list[str]:
        """Apply the numbered SQL files of ``schema/`` not yet applied; returns their names."""
        files = sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))
        applied: list[str] = []
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute("CREATE SCHEMA IF NOT EXISTS indexer")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS indexer.migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM indexer.migrations")}
            for f in files:
                if f.name in done:
                    continue
                await conn.execute(f.read_text())
                await conn.execute("INSERT INTO indexer.migrations (name) VALUES ($1)", f.name)
                applied.append(f.name)
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ddl.quote_ident(self.schema)}")
            await self._grant_reader(conn)
        return applied

    async def _grant_reader(self, conn: asyncpg.Connection) -> None:
        """The query API's read-only login (schema/005_reader.sql) may read the event tables:
        those there are, once per schema, and those made from now on by this role."""
        key = f"reader_grants:{self.schema}"
        if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'indexer_reader')"
                " AND NOT EXISTS (SELECT 1 FROM indexer.meta WHERE key = $1)", key):
            return
        schema = ddl.quote_ident(self.schema)
        await conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO indexer_reader")
        await conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO indexer_reader")
        await conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES"
                           " TO indexer_reader")
        await conn.execute("INSERT INTO indexer.meta (key, value) VALUES ($1, now()::text)"
                           " ON CONFLICT (key) DO NOTHING", key)

    async def instance_id(self) -> str:
        """This database's random id (set by a migration): namespaces the Redis keys."""
        return str(await self.pool.fetchval(
            "SELECT value FROM indexer.meta WHERE key = 'instance_id'"))

    async def register_chain(
        self, chain_id: int, name: str, partition_blocks: int, finality_depth: int,
        block_time: float, genesis_hash: bytes | None = None,
    ) -> None:
        """Record the chain, or check it against what this database indexed before."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT name, partition_blocks, genesis_hash FROM indexer.chains"
                " WHERE chain_id = $1", chain_id
            )
            if (
                row is not None and genesis_hash is not None and row["genesis_hash"] is not None
                and bytes(row["genesis_hash"]) != genesis_hash
            ):
                raise SinkError(
                    f"chain {name} (id {chain_id}): the RPC serves a different chain than the one "
                    f"indexed in this database (block 0 is 0x{genesis_hash.hex()}, was "
                    f"0x{bytes(row['genesis_hash']).hex()}); run `indexer reset --chain {name}` "
                    f"to drop the old data, or point DATABASE_URL elsewhere"
                )
            if row is not None and row["partition_blocks"] != partition_blocks:
                raise SinkError(
                    f"chain {name} (id {chain_id}): partition_blocks is {partition_blocks} in the "
                    f"chain file but the database was built with {row['partition_blocks']}; "
                    f"set it back to {row['partition_blocks']} (partitions cannot be re-cut)"
                )
            await conn.execute(
                "INSERT INTO indexer.chains (chain_id, name, partition_blocks, finality_depth,"
                " block_time, genesis_hash) VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (chain_id) DO UPDATE SET name = EXCLUDED.name,"
                " finality_depth = EXCLUDED.finality_depth, block_time = EXCLUDED.block_time,"
                " genesis_hash = COALESCE(indexer.chains.genesis_hash, EXCLUDED.genesis_hash),"
                " updated_at = now()",
                chain_id, name, partition_blocks, finality_depth, block_time, genesis_hash,
            )

    async def reset_chain(self, chain_id: int) -> dict[str, int]:
        """Delete every row of ``chain_id``: events, ranges, children, blocks, registration."""
        deleted: dict[str, int] = {}
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", chain_lock_key(chain_id))
            for r in await conn.fetch("SELECT table_name FROM indexer.event_tables"):
                name = r["table_name"]
                part = ddl.chain_partition_name(name, chain_id)
                if await table_exists(conn, self.schema, part):
                    n = await conn.fetchval(f"SELECT count(*) FROM {ddl.qualified(self.schema, part)}")
                    await conn.execute(f"DROP TABLE {ddl.qualified(self.schema, part)}")
                    deleted[name] = n
            for t in ("ranges", "contracts", "blocks", "reorgs", "chains"):
                status = await conn.execute(f"DELETE FROM indexer.{t} WHERE chain_id = $1", chain_id)
                deleted[f"indexer.{t}"] = int(status.split()[-1])
        self.partitions = {p for p in self.partitions if f"_c{chain_id}_" not in p}
        return deleted
