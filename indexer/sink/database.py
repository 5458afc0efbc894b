"""Postgres itself: the pool, the migrations of the system tables, a chain's registration (its
genesis hash and partition span are checked against what was indexed before), the reset of a
chain, and the end of commits stalled by a frozen worker.

Everything of one chain is written under that chain's advisory lock (``chain_lock_key``): the
commits, the repairs of reorgs, the merging of range records and the reset.

Nothing here depends on a session: no startup parameters, no session settings, advisory locks
or LISTEN, so a transaction pooler (PgBouncer in ``pool_mode = transaction``) works in front of
the server. Limits are set per transaction (``bound``). Behind a pooler (found at connect, or
``INDEXER_DB_POOLER``) the pool prepares no named statements (asyncpg's statement cache off)
and skips the reset query at each release.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from pathlib import Path

import asyncpg

from indexer.sink import numeric
from indexer.sink import schema as ddl
from indexer.sink.api import DatabaseUnavailable, SinkError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "schema"
MIGRATION_LOCK = 0x1D3E_0001
DDL_LOCK = 0x1D3E_0002
STATEMENT_CACHE = 100  # asyncpg's default, on a direct connection
KEEPALIVE = (30, 10, 3)  # TCP keepalive: idle seconds, interval, probes (a dead peer in ~60 s)

log = logging.getLogger(__name__)

# Postgres went away or cannot take the connection now: a restart (fast or crash), a failover,
# a terminated backend, a full connection table, a refused or dropped TCP connection. (A
# backend terminated while its connection sat idle can leave asyncpg's protocol state confused:
# InternalClientError "cannot switch to state ..., another operation is in progress"; the
# connection is dropped when it goes back to the pool.)
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError, OSError, TimeoutError,
)


def database_down(error: BaseException) -> bool:
    """Whether ``error``, met talking to Postgres, says it is unreachable (a pooler refusing a
    startup parameter is a setup problem, not an outage)."""
    return (isinstance(error, DATABASE_DOWN)
            and not isinstance(error, asyncpg.ProtocolViolationError))


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
    exist (created by this process or found), so each is created at most once. ``pooled``:
    the connections go through a transaction pooler. ``tx_timeout``: seconds a writing
    transaction may take (``bound``)."""

    def __init__(self, pool: asyncpg.Pool, schema: str, *, pooled: bool = False,
                 tx_timeout: float = 120.0) -> None:
        self.pool = pool
        self.schema = schema
        self.partitions: set[str] = set()
        self.pooled = pooled
        self.tx_timeout = tx_timeout
        ms = int(tx_timeout * 1000)
        idle, interval, count = KEEPALIVE
        keep = (f"SET LOCAL tcp_keepalives_idle = {idle}; SET LOCAL tcp_keepalives_interval ="
                f" {interval}; SET LOCAL tcp_keepalives_count = {count}")
        self._idle_sql = f"SET LOCAL idle_in_transaction_session_timeout = {ms}; {keep}"
        self._bound_sql = f"SET LOCAL statement_timeout = {ms}; {self._idle_sql}"

    @classmethod
    async def connect(
        cls, dsn: str, schema: str, *, max_size: int = 8, tx_timeout: float = 120.0,
        pooler: str = "auto",
    ) -> Database:
        """The pool. ``pooler``: "yes" (behind a transaction pooler), "no", or "auto": found
        out on a first connection (a pooler hands out its own backend key, so the server's
        ``pg_backend_pid()`` differs from the pid the connection announced)."""
        pooled = pooler == "yes" or (pooler == "auto" and await behind_pooler(dsn))
        if pooled:
            log.info("Postgres: through a connection pooler: no prepared statement is kept "
                     "across transactions")
        # min_size 0: while the server is away, the pool does not try (and log, with a
        # traceback each time) to keep a floor of connections; the loops wait for it instead.
        pool = await asyncpg.create_pool(
            dsn, min_size=0, max_size=max_size, command_timeout=600,
            statement_cache_size=0 if pooled else STATEMENT_CACHE,
            init=_setup, reset=_nothing_to_reset if pooled else None,
        )
        assert pool is not None
        return cls(pool, schema, pooled=pooled, tx_timeout=tx_timeout)

    async def close(self) -> None:
        await self.pool.close()

    async def bound(self, conn: asyncpg.Connection, *, statement: bool = True,
                    redo: bool = False) -> None:
        """The first statement of a writing transaction: it may take ``tx_timeout`` seconds
        per statement (``statement``) and sit idle as long between two; the server probes the
        client's TCP connection meanwhile. So a worker that stops (paused, its host frozen or
        gone) cannot hold its rows' key locks and block the worker that takes its range over.
        (A COPY waiting for data is not cut by statement_timeout: see
        ``end_stalled_copies``.)

        ``redo``: the transaction is one a crash can redo (a backfill unit: its rows and its
        record of being done are in it together), so its commit does not wait for the WAL to
        reach the disk (``synchronous_commit = off``): a server crash may lose the last such
        commits whole, never half of one, and their units are planned and done again."""
        sql = self._bound_sql if statement else self._idle_sql
        await conn.execute(sql + "; SET LOCAL synchronous_commit = off" if redo else sql)

    async def end_stalled_copies(self, older_than: float) -> list[tuple[int, float]]:
        """Terminate the backends of this database whose COPY into the event tables has waited
        for its client's data for more than ``older_than`` seconds: the client stopped in the
        middle of it (frozen, or its host gone). Postgres applies neither statement_timeout nor
        idle_in_transaction_session_timeout to a COPY waiting for data, and its key locks
        block every other writer of the same blocks. (backend pid, seconds) of each."""
        rows = await self.pool.fetch(
            "SELECT pid, extract(epoch FROM now() - query_start)::float8 AS secs,"
            " pg_terminate_backend(pid) AS ended FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND usename = current_user AND state = 'active' AND wait_event = 'ClientRead'"
            " AND starts_with(query, $1) AND query_start < now() - make_interval(secs => $2)",
            f"COPY {ddl.quote_ident(self.schema)}.", float(older_than))
        return [(r["pid"], r["secs"]) for r in rows if r["ended"]]

    async def migrate(self) -> list[str]:
        """Apply the numbered SQL files of ``schema/`` not yet applied; returns their names."""
        files = sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))
        applied: list[str] = []
        async with self.pool.acquire() as conn, conn.transaction():
            await self.bound(conn, statement=False)
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
        """The query API's read-only login (schema/006_reader.sql) may read the event tables:
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
            await self.bound(conn, statement=False)
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


async def behind_pooler(dsn: str) -> bool:
    """Whether ``dsn`` leads to a transaction pooler rather than to the server itself."""
    conn = await asyncpg.connect(dsn, statement_cache_size=0)
    try:
        async with conn.transaction():  # one server connection for the question, pooled or not
            backend = await conn.fetchval("SELECT pg_backend_pid()")
        return bool(backend != conn.get_server_pid())
    finally:
        await conn.close()


async def _setup(conn: asyncpg.Connection) -> None:
    """Every new connection of the pool: TCP keepalive, and ``numeric`` through our codec
    (``sink.numeric``: about twice as fast as asyncpg's in the COPY of event rows)."""
    _keepalive(conn)
    await numeric.install(conn)


def _keepalive(conn: asyncpg.Connection) -> None:
    """TCP keepalive on the client's side of a new connection: a server (or pooler) host
    gone without a word is noticed within about a minute, not hours."""
    transport = getattr(conn, "_transport", None)  # asyncpg has no public way to its socket
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in zip(("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"), KEEPALIVE,
                               strict=True):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except OSError as e:
        log.debug("TCP keepalive not set: %s", e)


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """Behind a transaction pooler there is no session state of ours to reset on release
    (and a RESET ALL would reach whichever server connection the pooler picks)."""
