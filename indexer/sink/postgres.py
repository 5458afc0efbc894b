"""Postgres: migrations, event tables and partitions, and the one transaction that commits a
unit's rows together with its record of being done.

Invariants:
- the rows of a unit and its ``indexer.ranges`` rows commit in one transaction, so a crash at
  any point leaves either both or neither;
- ranges of one source never overlap: the check runs under a per-chain advisory lock inside the
  committing transaction, and the primary key of every event table refuses a second copy of a
  log, so a second writer of the same blocks rolls back;
- no transaction is open across RPC I/O: the transaction opens after fetch and decode.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson

from indexer import faults
from indexer.sink import schema as ddl
from indexer.types import BlockHeader, BlockRange

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "schema"
_MIGRATION_LOCK = 0x1D3E_0001
_DDL_LOCK = 0x1D3E_0002


# Errors of a database that went away for a while or chose this transaction as a deadlock
# victim: nothing of the transaction was committed, so it can be done again.
TRANSIENT_DB: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
    asyncpg.DeadlockDetectedError, asyncpg.SerializationError,
)


class SinkError(Exception):
    """A problem with the database that retrying will not fix (schema drift, bad config)."""


class RangeConflict(Exception):
    """Another writer already committed (part of) this range; this commit was rolled back."""


class StaleBranch(RangeConflict):
    """The rows were fetched from a branch the chain has left: a repair (reorg) ran since the
    fetch, or a stored block hash differs (``number``: that block). Rolled back."""

    def __init__(self, message: str, number: int | None = None) -> None:
        super().__init__(message)
        self.number = number


class Fenced(Exception):
    """A newer live follower has written: this one lost its leadership and must stop."""


@dataclass(frozen=True, slots=True)
class EventTable:
    """What the sink needs to know of an event table."""

    name: str
    contract: str
    event: str
    signature: str
    columns: tuple[str, ...]
    types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Child:
    """A contract discovered by a factory event."""

    contract: str
    address: bytes
    factory: str
    block_number: int
    log_index: int
    tx_hash: bytes


def chain_lock_key(chain_id: int) -> int:
    digest = hashlib.blake2b(f"indexer.ranges:{chain_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Database:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema
        self._partitions: set[str] = set()

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

    # -- schema -----------------------------------------------------------------------------

    async def migrate(self) -> list[str]:
        """Apply the numbered SQL files of ``schema/`` not yet applied; returns their names."""
        files = sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))
        applied: list[str] = []
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
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
        return applied

    async def register_chain(
        self, chain_id: int, name: str, partition_blocks: int, finality_depth: int,
        block_time: float, genesis_hash: bytes | None = None,
    ) -> None:
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
                if await conn.fetchval("SELECT to_regclass($1) IS NULL", f"{self.schema}.{name}"):
                    continue
                part = ddl.chain_partition_name(name, chain_id)
                if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{self.schema}.{part}"):
                    n = await conn.fetchval(f"SELECT count(*) FROM {ddl.qualified(self.schema, part)}")
                    await conn.execute(f"DROP TABLE {ddl.qualified(self.schema, part)}")
                    deleted[name] = n
            for t in ("ranges", "contracts", "blocks", "reorgs", "chains"):
                status = await conn.execute(f"DELETE FROM indexer.{t} WHERE chain_id = $1", chain_id)
                deleted[f"indexer.{t}"] = int(status.split()[-1])
        self._partitions = {p for p in self._partitions if f"_c{chain_id}_" not in p}
        return deleted

    async def ensure_event_tables(self, tables: Iterable[EventTable]) -> None:
        """Create missing event tables; refuse one whose columns differ from the ABI's."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK)
            for t in tables:
                existing = await conn.fetch(
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type"
                    " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0"
                    " AND NOT a.attisdropped ORDER BY a.attnum",
                    self.schema, t.name,
                )
                if existing:
                    _check_columns(self.schema, t, [(r["attname"], r["type"]) for r in existing])
                else:
                    await conn.execute(ddl.create_event_table(self.schema, t.name, t.columns, t.types))
                await conn.execute(
                    "INSERT INTO indexer.event_tables (table_name, contract, event, signature,"
                    " columns) VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (table_name) DO NOTHING",
                    t.name, t.contract, t.event, t.signature,
                    _json_columns(t),
                )

    async def ensure_partitions(
        self, chain_id: int, tables: Sequence[str], rng: BlockRange, span: int
    ) -> None:
        """Create the chain and block partitions that ``rng`` needs, safely under races."""
        wanted = [
            (t, i) for t in tables for i in ddl.partitions_of(rng, span)
            if ddl.block_partition_name(t, chain_id, i) not in self._partitions
        ]
        if not wanted:
            return
        # One short transaction per partition: creating a partition locks its parent
        # exclusively, and holding several such locks at once while other workers' commits
        # hold locks on several tables is a lock-order deadlock.
        async with self.pool.acquire() as conn:
            for t, i in wanted:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK)
                    await conn.execute(ddl.create_chain_partition(self.schema, t, chain_id))
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK)
                    await conn.execute(ddl.create_block_partition(self.schema, t, chain_id, i, span))
                self._partitions.add(ddl.block_partition_name(t, chain_id, i))

    # -- progress ---------------------------------------------------------------------------

    async def done_ranges(self, chain_id: int) -> dict[str, list[BlockRange]]:
        rows = await self.pool.fetch(
            "SELECT source, from_block, to_block FROM indexer.ranges WHERE chain_id = $1"
            " ORDER BY source, from_block",
            chain_id,
        )
        out: dict[str, list[BlockRange]] = {}
        for r in rows:
            out.setdefault(r["source"], []).append(BlockRange(r["from_block"], r["to_block"]))
        return out

    async def compact_ranges(self, chain_id: int) -> int:
        """Merge adjacent range records of each source into one (the live tail commits a record
        per block or two; the plan reads them all). Returns how many records went away.

        Runs under the chain's commit lock, so no commit interleaves; merged records keep the
        highest fence and the summed event count, and cover exactly the same blocks."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", chain_lock_key(chain_id))
            rows = await conn.fetch(
                "SELECT source, from_block, to_block, events, fence FROM indexer.ranges"
                " WHERE chain_id = $1 ORDER BY source, from_block", chain_id,
            )
            merged: list[list] = []
            for r in rows:
                last = merged[-1] if merged else None
                if last is not None and last[0] == r["source"] and r["from_block"] == last[2] + 1:
                    last[2] = r["to_block"]
                    last[3] += r["events"]
                    last[4] = max(last[4] or 0, r["fence"] or 0) or None
                else:
                    merged.append([r["source"], r["from_block"], r["to_block"], r["events"],
                                   r["fence"]])
            if len(rows) - len(merged) < max(16, len(rows) // 4):
                return 0
            await conn.execute("DELETE FROM indexer.ranges WHERE chain_id = $1", chain_id)
            await conn.executemany(
                "INSERT INTO indexer.ranges (chain_id, source, from_block, to_block, events,"
                " worker, fence) VALUES ($1, $2, $3, $4, $5, 'merged', $6)",
                [(chain_id, m[0], m[1], m[2], m[3], m[4]) for m in merged],
            )
            return len(rows) - len(merged)

    async def instance_id(self) -> str:
        """This database's random id (set by a migration): namespaces the Redis keys."""
        return str(await self.pool.fetchval("SELECT value FROM indexer.meta WHERE key = 'instance_id'"))

    async def max_fence(self, chain_id: int) -> int:
        """Highest fencing token recorded for the chain (range records and the live tail's):
        a new lease board resumes above it."""
        return int(await self.pool.fetchval(
            "SELECT greatest((SELECT coalesce(max(fence), 0) FROM indexer.ranges"
            " WHERE chain_id = $1), (SELECT coalesce(max(live_fence), 0) FROM indexer.chains"
            " WHERE chain_id = $1))", chain_id
        ))

    async def children(self, chain_id: int, contract: str) -> dict[str, int]:
        """Discovered addresses of ``contract`` (lower-case hex) -> block of discovery."""
        rows = await self.pool.fetch(
            "SELECT address, block_number FROM indexer.contracts"
            " WHERE chain_id = $1 AND contract = $2",
            chain_id, contract,
        )
        return {"0x" + bytes(r["address"]).hex(): r["block_number"] for r in rows}

    # -- the commit -------------------------------------------------------------------------

    async def commit(
        self,
        chain_id: int,
        rng: BlockRange,
        sources: Sequence[str],
        rows: Mapping[str, Sequence[tuple]],
        columns: Mapping[str, Sequence[str]],
        span: int,
        *,
        children: Sequence[Child] = (),
        worker: str | None = None,
        fence: int | None = None,
        blocks: Sequence[tuple[BlockHeader, bool]] = (),
        epoch: int | None = None,
        live_fence: int | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> None:
        """Write ``rows`` (table -> records) and record ``rng`` done for ``sources``, atomically.

        ``rng`` must lie inside one block partition. Raises RangeConflict when any of it is
        already recorded for one of the sources (nothing is written then).

        ``blocks`` are (header, kept for good) rows for ``indexer.blocks``, marked live when
        ``live_fence`` is given (the commit of a live follower, refused with Fenced when a newer
        follower has written). StaleBranch is raised when one of them is stored already with
        another hash, or when ``epoch`` (the reorg epoch read before fetching) is no longer the
        chain's. ``conn``: a connection of the caller's to use instead of one of the pool."""
        index = rng.start // span
        if rng.end // span != index:
            raise ValueError(f"range {rng} crosses a partition boundary of span {span}")
        tables = sorted(t for t, recs in rows.items() if recs)  # one lock order for all writers
        await self.ensure_partitions(chain_id, tables, rng, span)
        events = sum(len(rows[t]) for t in tables)
        async with self._connection(conn) as conn:
            try:
                async with conn.transaction():
                    for t in tables:
                        await conn.copy_records_to_table(
                            ddl.block_partition_name(t, chain_id, index),
                            records=rows[t],
                            columns=list(columns[t]),
                            schema_name=self.schema,
                        )
                    if children:
                        await conn.executemany(
                            "INSERT INTO indexer.contracts (chain_id, contract, address, factory,"
                            " block_number, log_index, tx_hash) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                            " ON CONFLICT (chain_id, contract, address) DO NOTHING",
                            [
                                (chain_id, c.contract, c.address, c.factory, c.block_number,
                                 c.log_index, c.tx_hash)
                                for c in children
                            ],
                        )
                    await faults.point("after_copy")
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", chain_lock_key(chain_id))
                    # One statement under the lock (its snapshot sees every commit before):
                    # the fence, the epoch, the overlap check, the record and the block rows.
                    r = await conn.fetchrow(
                        _RECORD, chain_id, list(sources), rng.start, rng.end, events, worker,
                        fence, live_fence, epoch, [h.number for h, _ in blocks],
                        [h.hash for h, _ in blocks], [h.parent_hash for h, _ in blocks],
                        [h.timestamp for h, _ in blocks], [c for _, c in blocks],
                        live_fence is not None,
                    )
                    if live_fence is not None and not r["fenced"]:
                        raise Fenced(f"chain {chain_id}: a newer live follower (fence above "
                                     f"{live_fence}) has written")
                    if epoch is not None and r["epoch"] != epoch:
                        raise StaleBranch(f"chain {chain_id}: blocks {rng} were fetched "
                                          f"before a reorg repair; fetching them again")
                    if r["source"] is not None:
                        raise RangeConflict(
                            f"chain {chain_id}: {r['source']} {r['from_block']}-{r['to_block']} "
                            f"already done; refusing to commit {rng} again"
                        )
                    if r["blocks"] != len(blocks):
                        await _stale_block(conn, chain_id, blocks)

            except asyncpg.UniqueViolationError as e:
                raise RangeConflict(f"chain {chain_id}: rows of {rng} already present: {e}") from e

    @contextlib.asynccontextmanager
    async def _connection(self, conn: asyncpg.Connection | None) -> AsyncIterator[asyncpg.Connection]:
        if conn is not None:
            yield conn
        else:
            async with self.pool.acquire() as pooled:
                yield pooled

    # -- status -----------------------------------------------------------------------------

    async def table_counts(self, chain_id: int) -> dict[str, int]:
        names = [r["table_name"] for r in await self.pool.fetch(
            "SELECT table_name FROM indexer.event_tables ORDER BY table_name"
        )]
        counts: dict[str, int] = {}
        for name in names:
            exists = await self.pool.fetchval(
                "SELECT to_regclass($1) IS NOT NULL", f"{self.schema}.{name}"
            )
            if not exists:
                continue
            counts[name] = await self.pool.fetchval(
                f"SELECT count(*) FROM {ddl.qualified(self.schema, name)} WHERE chain_id = $1",
                chain_id,
            )
        return counts


_RECORD = """
WITH fence AS (
    UPDATE indexer.chains SET live_fence = $8
    WHERE chain_id = $1 AND $8::bigint IS NOT NULL AND live_fence <= $8 RETURNING 1
), clash AS (
    SELECT source, from_block, to_block FROM indexer.ranges
    WHERE chain_id = $1 AND source = ANY($2::text[]) AND from_block <= $4 AND to_block >= $3
    LIMIT 1
), go AS (
    SELECT ($8::bigint IS NULL OR EXISTS (SELECT 1 FROM fence))
       AND ($9::bigint IS NULL
            OR $9 = (SELECT reorg_epoch FROM indexer.chains WHERE chain_id = $1))
       AND NOT EXISTS (SELECT 1 FROM clash) AS ok
), record AS (
    INSERT INTO indexer.ranges (chain_id, source, from_block, to_block, events, worker, fence)
    SELECT $1, s, $3, $4, $5, $6, $7 FROM unnest($2::text[]) AS s WHERE (SELECT ok FROM go)
    RETURNING 1
), blocks AS (
    -- A block stored with the same hash is kept (and marked); one stored with another hash is
    -- left alone by the WHERE, so it is missing from the rows returned.
    INSERT INTO indexer.blocks (chain_id, number, hash, parent_hash, timestamp, live, checkpoint)
    SELECT $1, n, h, p, to_timestamp(t), $15, c
    FROM unnest($10::bigint[], $11::bytea[], $12::bytea[], $13::bigint[], $14::bool[])
         AS b(n, h, p, t, c)
    WHERE (SELECT ok FROM go)
    ON CONFLICT (chain_id, number) DO UPDATE SET live = indexer.blocks.live OR $15,
        checkpoint = indexer.blocks.checkpoint OR EXCLUDED.checkpoint
    WHERE indexer.blocks.hash = EXCLUDED.hash
    RETURNING number
)
SELECT EXISTS (SELECT 1 FROM fence) AS fenced,
       (SELECT reorg_epoch FROM indexer.chains WHERE chain_id = $1) AS epoch,
       c.source, c.from_block, c.to_block, (SELECT count(*) FROM record) AS recorded,
       (SELECT count(*) FROM blocks) AS blocks
FROM (SELECT 1) AS one LEFT JOIN clash AS c ON true
"""


async def _stale_block(
    conn: asyncpg.Connection, chain_id: int, blocks: Sequence[tuple[BlockHeader, bool]]
) -> None:
    """Raise StaleBranch naming the lowest of ``blocks`` stored with another hash."""
    ours = {h.number: h.hash for h, _ in blocks}
    stored = await conn.fetch(
        "SELECT number, hash FROM indexer.blocks WHERE chain_id = $1 AND number = ANY($2::bigint[])"
        " ORDER BY number", chain_id, list(ours))
    for r in stored:
        if bytes(r["hash"]) != ours[r["number"]]:
            raise StaleBranch(f"chain {chain_id}: block {r['number']} is stored with hash "
                              f"0x{bytes(r['hash']).hex()} but was fetched as "
                              f"0x{ours[r['number']].hex()}", r["number"])
    raise StaleBranch(f"chain {chain_id}: block rows of {sorted(ours)} were not all written")


def _json_columns(t: EventTable) -> str:
    return orjson.dumps([{"name": c, "type": ty} for c, ty in zip(t.columns, t.types, strict=True)]).decode()


_TYPE_ALIASES = {"timestamp with time zone": "timestamptz"}


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
