"""The registry of what is indexed, in Postgres: every source a chain file has asked for (with
how its rows decode), the coverages (sets of sources) that range records name, the pinned table
names, the upgrade of records written per contract name, and pruning.

A source keeps its id for as long as it is registered; pruning forgets it, so a source added
again later is new (nothing done).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from indexer.keys import SourceSpec
from indexer.sink import schema as ddl
from indexer.sink.database import Database, chain_lock_key, table_exists

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LayoutChange:
    """A source of the chain file whose rows were written with another decoding."""

    key: str
    contract: str
    event: str
    stored: str
    wanted: str


async def pinned_tables(db: Database) -> dict[tuple[str, str], str]:
    """(contract, signature) -> the table its rows are written to, for every table made."""
    rows = await db.pool.fetch("SELECT table_name, contract, signature FROM indexer.event_tables")
    return {(r["contract"], r["signature"]): r["table_name"] for r in rows}


async def register(db: Database, chain_id: int,
                   sources: Sequence[SourceSpec]) -> tuple[dict[str, int], list[LayoutChange]]:
    """Record every source of the chain file (new ones get an id); the ids by key, and the
    sources whose stored layout differs from the file's (nothing is changed for those)."""
    async with db.pool.acquire() as conn, conn.transaction():
        await db.bound(conn)
        await conn.executemany(
            "INSERT INTO indexer.sources (chain_id, key, contract, target, event, topic0, layout,"
            " table_name, start_block) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (chain_id, key) DO NOTHING",
            [(chain_id, s.key, s.contract, s.target, s.spec.signature,
              None if s.spec.anonymous else s.spec.topic0, s.layout, s.spec.table, s.start_block)
             for s in sources])
        rows = await conn.fetch(
            "SELECT id, key, layout FROM indexer.sources WHERE chain_id = $1 AND key = ANY($2)",
            chain_id, [s.key for s in sources])
    stored = {r["key"]: (r["id"], r["layout"]) for r in rows}
    changes = [LayoutChange(s.key, s.contract, s.spec.signature, stored[s.key][1], s.layout)
               for s in sources if stored[s.key][1] != s.layout]
    return {k: v[0] for k, v in stored.items()}, changes


def digest(members: Sequence[int]) -> bytes:
    return hashlib.sha256(",".join(map(str, members)).encode()).digest()


async def coverage(db: Database, chain_id: int, members: Sequence[int]) -> int:
    """The id of the coverage of exactly these sources (made if new)."""
    ordered = sorted(set(members))
    d = digest(ordered)
    async with db.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO indexer.coverages (chain_id, digest, members) VALUES ($1, $2, $3)"
            " ON CONFLICT (chain_id, digest) DO NOTHING", chain_id, d, ordered)
        return int(await conn.fetchval(
            "SELECT id FROM indexer.coverages WHERE chain_id = $1 AND digest = $2", chain_id, d))


async def upgrade_legacy(db: Database, chain_id: int,
                         ids_by_contract: Mapping[str, Sequence[int]]) -> dict[str, int]:
    """Range records written per contract name (before sources were recorded) become records
    of the coverage of that contract's sources in the chain file in force: the contract ->
    records upgraded. Records of contracts the file does not name are left as they are."""
    upgraded: dict[str, int] = {}
    async with db.pool.acquire() as conn, conn.transaction():
        await db.bound(conn, statement=False)  # many records: never idle long, never cut
        await conn.execute("SELECT pg_advisory_xact_lock($1)", chain_lock_key(chain_id))
        names = [r["source"] for r in await conn.fetch(
            "SELECT DISTINCT source FROM indexer.ranges WHERE chain_id = $1 AND coverage IS NULL",
            chain_id)]
        for name in names:
            ids = ids_by_contract.get(name)
            if not ids:
                log.warning("chain %d: %d range records of contract %s, which the chain file no "
                            "longer names, are kept as they are (its rows too)", chain_id,
                            await _legacy_count(conn, chain_id, name), name)
                continue
            members = sorted(set(ids))
            d = digest(members)
            await conn.execute(
                "INSERT INTO indexer.coverages (chain_id, digest, members) VALUES ($1, $2, $3)"
                " ON CONFLICT (chain_id, digest) DO NOTHING", chain_id, d, members)
            cov = await conn.fetchval(
                "SELECT id FROM indexer.coverages WHERE chain_id = $1 AND digest = $2",
                chain_id, d)
            status = await conn.execute(
                "UPDATE indexer.ranges SET coverage = $3 WHERE chain_id = $1 AND source = $2"
                " AND coverage IS NULL", chain_id, name, cov)
            upgraded[name] = int(status.split()[-1])
    return upgraded


async def _legacy_count(conn: asyncpg.Connection, chain_id: int, name: str) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM indexer.ranges WHERE chain_id = $1 AND source = $2"
        " AND coverage IS NULL", chain_id, name))


@dataclass(frozen=True, slots=True)
class Pruned:
    sources: list[str]  # the keys forgotten
    rows: dict[str, int]  # table -> rows deleted
    dropped: list[str]  # tables dropped because no chain had rows in them any more


async def prune(db: Database, chain_id: int, contract: str, event: str | None) -> Pruned:
    """Delete the rows of ``contract`` (of its events named or signed ``event``) on the chain
    and forget those sources, in one transaction under the chain's lock. A table left with no
    row of any chain is dropped (a later run creates it again, with the columns it then
    needs)."""
    async with db.pool.acquire() as conn, conn.transaction():
        await db.bound(conn, statement=False)  # a large DELETE: never idle long, never cut
        await conn.execute("SELECT pg_advisory_xact_lock($1)", chain_lock_key(chain_id))
        found = await conn.fetch(
            "SELECT id, key, event, table_name FROM indexer.sources WHERE chain_id = $1"
            " AND contract = $2", chain_id, contract)
        chosen = [r for r in found if event is None
                  or event in (r["event"], r["event"].split("(", 1)[0])]
        tables = sorted({r["table_name"] for r in chosen})
        rows: dict[str, int] = {}
        for table in tables:
            part = ddl.chain_partition_name(table, chain_id)
            if await table_exists(conn, db.schema, part):
                status = await conn.execute(f"DELETE FROM {ddl.qualified(db.schema, part)}")
                rows[table] = int(status.split()[-1])
        # Sources of other chains may write to the same tables: only empty ones are dropped.
        dropped = []
        for table in tables:
            if not await table_exists(conn, db.schema, table):
                continue
            if await conn.fetchval(
                    f"SELECT NOT EXISTS (SELECT 1 FROM {ddl.qualified(db.schema, table)})"):
                others = await conn.fetchval(
                    "SELECT count(*) FROM indexer.sources WHERE table_name = $1"
                    " AND NOT (id = ANY($2))", table, [r["id"] for r in chosen])
                if not others:
                    await conn.execute(f"DROP TABLE {ddl.qualified(db.schema, table)}")
                    await conn.execute("DELETE FROM indexer.event_tables WHERE table_name = $1",
                                       table)
                    dropped.append(table)
        await conn.execute("DELETE FROM indexer.sources WHERE id = ANY($1)",
                           [r["id"] for r in chosen])
        # Their range records stay for the other sources they cover; these ids are gone.
    db.partitions = {p for p in db.partitions
                     if not any(p.startswith(t + "_c") for t in dropped)}
    return Pruned([r["key"] for r in chosen], rows, dropped)
