"""What is done, read back: the range records, the discovered children and the reorg epoch
(together, in one snapshot), the highest fence, the merging of adjacent records, row counts."""

from __future__ import annotations

import asyncpg

from indexer.sink import schema as ddl
from indexer.sink.api import Snapshot
from indexer.sink.database import Database, chain_lock_key, table_exists
from indexer.types import BlockRange


async def snapshot(db: Database, chain_id: int) -> Snapshot:
    """The reorg epoch, the range records and the children of the chain, as of one moment: a
    repair between reading one and reading the other cannot mix two views."""
    async with db.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                             readonly=True):
        epoch = int(await conn.fetchval(
            "SELECT coalesce(max(reorg_epoch), 0) FROM indexer.chains WHERE chain_id = $1",
            chain_id))
        done = await _done_ranges(conn, chain_id)
        rows = await conn.fetch(
            "SELECT contract, address, block_number FROM indexer.contracts WHERE chain_id = $1",
            chain_id)
    children: dict[str, dict[str, int]] = {}
    for r in rows:
        children.setdefault(r["contract"], {})["0x" + bytes(r["address"]).hex()] = r["block_number"]
    return Snapshot(epoch, done, children)


async def done_ranges(db: Database, chain_id: int) -> dict[str, list[BlockRange]]:
    """Source -> the block ranges it has committed, in order."""
    async with db.pool.acquire() as conn:
        return await _done_ranges(conn, chain_id)


async def _done_ranges(conn: asyncpg.Connection, chain_id: int) -> dict[str, list[BlockRange]]:
    rows = await conn.fetch(
        "SELECT source, from_block, to_block FROM indexer.ranges WHERE chain_id = $1"
        " ORDER BY source, from_block", chain_id)
    out: dict[str, list[BlockRange]] = {}
    for r in rows:
        out.setdefault(r["source"], []).append(BlockRange(r["from_block"], r["to_block"]))
    return out


async def max_fence(db: Database, chain_id: int) -> int:
    """Highest fencing token recorded for the chain (range records and the live tail's): a new
    lease board resumes above it."""
    return int(await db.pool.fetchval(
        "SELECT greatest((SELECT coalesce(max(fence), 0) FROM indexer.ranges"
        " WHERE chain_id = $1), (SELECT coalesce(max(live_fence), 0) FROM indexer.chains"
        " WHERE chain_id = $1))", chain_id
    ))


async def compact_ranges(db: Database, chain_id: int) -> int:
    """Merge adjacent range records of each source into one (the live tail commits a record
    per block or two; the plan reads them all). Returns how many records went away.

    Runs under the chain's commit lock, so no commit interleaves; merged records keep the
    highest fence and the summed event count, and cover exactly the same blocks."""
    async with db.pool.acquire() as conn, conn.transaction():
        await db.bound(conn)
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


async def table_counts(db: Database, chain_id: int) -> dict[str, int]:
    """Rows of the chain per event table."""
    names = [r["table_name"] for r in await db.pool.fetch(
        "SELECT table_name FROM indexer.event_tables ORDER BY table_name")]
    counts: dict[str, int] = {}
    for name in names:
        if not await table_exists(db.pool, db.schema, name):
            continue
        counts[name] = await db.pool.fetchval(
            f"SELECT count(*) FROM {ddl.qualified(db.schema, name)} WHERE chain_id = $1",
            chain_id)
    return counts
