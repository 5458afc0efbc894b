"""What is done, read back: the range records, the discovered children and the reorg epoch
(together, in one snapshot), the highest fence, the merging of adjacent records, row counts,
the recorded genesis hash."""

from __future__ import annotations

import asyncpg

from indexer.plan import merge
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
    """Source key -> the block ranges committed for it, merged, in order."""
    async with db.pool.acquire() as conn:
        return await _done_ranges(conn, chain_id)


async def _done_ranges(conn: asyncpg.Connection, chain_id: int) -> dict[str, list[BlockRange]]:
    """Each range record counts for every source of its coverage (sources forgotten by a
    prune no longer count)."""
    keys = {r["id"]: r["key"] for r in await conn.fetch(
        "SELECT id, key FROM indexer.sources WHERE chain_id = $1", chain_id)}
    members = {r["id"]: r["members"] for r in await conn.fetch(
        "SELECT id, members FROM indexer.coverages WHERE chain_id = $1", chain_id)}
    per_coverage: dict[int, list[BlockRange]] = {}
    for r in await conn.fetch(
            "SELECT coverage, from_block, to_block FROM indexer.ranges WHERE chain_id = $1"
            " AND coverage IS NOT NULL", chain_id):
        per_coverage.setdefault(r["coverage"], []).append(BlockRange(r["from_block"],
                                                                     r["to_block"]))
    out: dict[str, list[BlockRange]] = {}
    for cov, ranges in per_coverage.items():
        merged = merge(ranges)
        for sid in members.get(cov, ()):
            key = keys.get(sid)
            if key is not None:
                out.setdefault(key, []).extend(merged)
    return {k: merge(v) for k, v in out.items()}


async def max_fence(db: Database, chain_id: int) -> int:
    """Highest fencing token recorded for the chain (range records and the live tail's): a new
    lease board resumes above it."""
    return int(await db.pool.fetchval(
        "SELECT greatest((SELECT coalesce(max(fence), 0) FROM indexer.ranges"
        " WHERE chain_id = $1), (SELECT coalesce(max(live_fence), 0) FROM indexer.chains"
        " WHERE chain_id = $1))", chain_id
    ))


async def compact_ranges(db: Database, chain_id: int) -> int:
    """Merge adjacent range records of each coverage into one (the live tail commits a record
    per block or two; the plan reads them all). Returns how many records went away.

    Runs under the chain's commit lock, so no commit interleaves; merged records keep the
    highest fence and the summed event count, and cover exactly the same blocks."""
    async with db.pool.acquire() as conn, conn.transaction():
        await db.bound(conn)
        await conn.execute("SELECT pg_advisory_xact_lock($1)", chain_lock_key(chain_id))
        rows = await conn.fetch(
            "SELECT coverage, from_block, to_block, events, fence FROM indexer.ranges"
            " WHERE chain_id = $1 AND coverage IS NOT NULL ORDER BY coverage, from_block",
            chain_id,
        )
        merged: list[list] = []
        for r in rows:
            last = merged[-1] if merged else None
            if last is not None and last[0] == r["coverage"] and r["from_block"] == last[2] + 1:
                last[2] = r["to_block"]
                last[3] += r["events"]
                last[4] = max(last[4] or 0, r["fence"] or 0) or None
            else:
                merged.append([r["coverage"], r["from_block"], r["to_block"], r["events"],
                               r["fence"]])
        if len(rows) - len(merged) < max(16, len(rows) // 4):
            return 0
        await conn.execute("DELETE FROM indexer.ranges WHERE chain_id = $1"
                           " AND coverage IS NOT NULL", chain_id)
        await conn.executemany(
            "INSERT INTO indexer.ranges (chain_id, coverage, from_block, to_block, events,"
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


async def recent_blocks(db: Database, chain_id: int, seconds: float) -> dict[str, int]:
    """Source key -> blocks recorded for it in the last ``seconds`` (merged records aside):
    how fast each source is being indexed now."""
    rows = await db.pool.fetch(
        "SELECT s.key, sum(r.to_block - r.from_block + 1) AS blocks"
        " FROM indexer.ranges r JOIN indexer.coverages c ON c.id = r.coverage"
        " JOIN indexer.sources s ON s.id = ANY(c.members)"
        " WHERE r.chain_id = $1 AND r.worker IS DISTINCT FROM 'merged'"
        " AND r.done_at > now() - make_interval(secs => $2) GROUP BY s.key",
        chain_id, seconds)
    return {r["key"]: int(r["blocks"]) for r in rows}


async def record_count(db: Database, chain_id: int) -> int:
    return int(await db.pool.fetchval(
        "SELECT count(*) FROM indexer.ranges WHERE chain_id = $1", chain_id))
async def genesis_hash(db: Database, chain_id: int) -> bytes | None:
    """The hash of block 0 recorded when the chain was first indexed."""
    got = await db.pool.fetchval(
        "SELECT genesis_hash FROM indexer.chains WHERE chain_id = $1", chain_id)
    return None if got is None else bytes(got)
