"""Postgres side of the live tail: stored block hashes, the repair of a reorg, pruning.

The repair runs in one transaction under the chain's commit lock (the lock every commit takes
before recording its range), so no commit interleaves with it: a commit that fetched the old
branch before the repair is refused afterwards by the reorg epoch the repair raises.
"""

from __future__ import annotations

from indexer.sink import schema as ddl
from indexer.sink.api import Fenced, Repair
from indexer.sink.database import Database, chain_lock_key, table_exists
from indexer.types import BlockHeader


async def stored_blocks(db: Database, chain_id: int, *, live: bool, below: int | None = None,
                        limit: int = 256) -> list[BlockHeader]:
    """The highest stored blocks under ``below``, highest first: the live tail's (``live``)
    or the backfill's checkpoints."""
    rows = await db.pool.fetch(
        "SELECT number, hash, parent_hash, extract(epoch FROM timestamp)::bigint AS ts"
        " FROM indexer.blocks WHERE chain_id = $1 AND number < $2 AND live = $4"
        " ORDER BY number DESC LIMIT $3",
        chain_id, below if below is not None else 2**62, limit, live,
    )
    return [BlockHeader(r["number"], bytes(r["hash"]), bytes(r["parent_hash"]), r["ts"])
            for r in rows]


async def stored_block(db: Database, chain_id: int, number: int | None = None) -> BlockHeader | None:
    """The stored block (the live tail's or a backfill checkpoint) at ``number``, or the
    highest stored one when ``number`` is None."""
    r = await db.pool.fetchrow(
        "SELECT number, hash, parent_hash, extract(epoch FROM timestamp)::bigint AS ts"
        " FROM indexer.blocks WHERE chain_id = $1 AND number <= $2 ORDER BY number DESC LIMIT 1",
        chain_id, number if number is not None else 2**62)
    if r is None or (number is not None and r["number"] != number):
        return None
    return BlockHeader(r["number"], bytes(r["hash"]), bytes(r["parent_hash"]), r["ts"])


async def rollback(db: Database, chain_id: int, repair: Repair, fence: int) -> dict[str, int]:
    """Delete everything of ``chain_id`` above ``repair.fork_block`` in one transaction: event
    rows, children discovered there, block rows, and the range records over those blocks
    (trimmed). Returns rows deleted per table. Raises Fenced when a newer live follower wrote."""
    keep = repair.fork_block
    deleted: dict[str, int] = {}
    async with db.pool.acquire() as conn, conn.transaction():
        await db.bound(conn, statement=False)  # a deep repair may take long; never idle long
        await conn.execute("SELECT pg_advisory_xact_lock($1)", chain_lock_key(chain_id))
        status = await conn.execute(
            "UPDATE indexer.chains SET reorg_epoch = reorg_epoch + 1,"
            " live_fence = greatest(live_fence, $2) WHERE chain_id = $1 AND live_fence <= $2",
            chain_id, fence,
        )
        if status.endswith(" 0"):
            raise Fenced(f"chain {chain_id}: a newer live follower has written; not repairing")
        names = [r["table_name"] for r in await conn.fetch(
            "SELECT table_name FROM indexer.event_tables ORDER BY table_name")]
        for name in names:
            part = ddl.chain_partition_name(name, chain_id)
            if not await table_exists(conn, db.schema, part):
                continue
            # The chain's partition: only its block partitions above the fork are scanned, by
            # the primary key's index.
            status = await conn.execute(
                f"DELETE FROM {ddl.qualified(db.schema, part)}"
                " WHERE chain_id = $1 AND block_number > $2", chain_id, keep)
            if n := int(status.split()[-1]):
                deleted[name] = n
        for t, col in (("contracts", "block_number"), ("blocks", "number")):
            status = await conn.execute(
                f"DELETE FROM indexer.{t} WHERE chain_id = $1 AND {col} > $2", chain_id, keep)
            deleted[f"indexer.{t}"] = int(status.split()[-1])
        status = await conn.execute(
            "DELETE FROM indexer.ranges WHERE chain_id = $1 AND from_block > $2", chain_id, keep)
        trimmed = await conn.execute(
            "UPDATE indexer.ranges SET to_block = $2 WHERE chain_id = $1 AND to_block > $2",
            chain_id, keep)
        deleted["indexer.ranges"] = int(status.split()[-1]) + int(trimmed.split()[-1])
        await conn.execute(
            "INSERT INTO indexer.reorgs (chain_id, fork_block, old_tip, new_tip, depth, deep,"
            " rows_deleted, old_hash, new_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            chain_id, keep, repair.old_tip, repair.new_tip, max(0, repair.old_tip - keep),
            repair.deep, sum(n for t, n in deleted.items() if not t.startswith("indexer.")),
            repair.old_hash, repair.new_hash,
        )
    return deleted


async def prune_blocks(db: Database, chain_id: int, below: int) -> int:
    """Forget live blocks under ``below`` (checkpoints stay)."""
    status = await db.pool.execute(
        "DELETE FROM indexer.blocks WHERE chain_id = $1 AND number < $2 AND live"
        " AND NOT checkpoint",
        chain_id, below)
    return int(status.split()[-1])


async def live_summary(db: Database, chain_id: int) -> dict[str, object]:
    """What ``indexer status`` shows of the live tail: its tip, the reorgs repaired, and its
    leader where Postgres decides it (no Redis) and the leader's time has not run out."""
    tip = await db.pool.fetchval(
        "SELECT max(number) FROM indexer.blocks WHERE chain_id = $1 AND live", chain_id)
    count, deep = await db.pool.fetchrow(
        "SELECT count(*), count(*) FILTER (WHERE deep) FROM indexer.reorgs WHERE chain_id = $1",
        chain_id)
    last = await db.pool.fetchrow(
        "SELECT detected_at, fork_block, depth, deep, rows_deleted FROM indexer.reorgs"
        " WHERE chain_id = $1 ORDER BY detected_at DESC LIMIT 1", chain_id)
    leader = await db.pool.fetchrow(
        "SELECT CASE WHEN live_expires > now() THEN live_holder END AS holder, live_fence"
        " FROM indexer.chains WHERE chain_id = $1", chain_id)
    return {
        "tip": tip, "reorgs": count, "deep_reorgs": deep,
        "leader": None if leader is None else leader["holder"],
        "term": None if leader is None else leader["live_fence"],
        "last_reorg": None if last is None else {
            "at": last["detected_at"].isoformat(), "fork_block": last["fork_block"],
            "depth": last["depth"], "deep": last["deep"], "rows_deleted": last["rows_deleted"],
        },
    }
