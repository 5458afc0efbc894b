"""The one transaction that commits a batch's rows together with its record of being done.

Invariants:
- the rows of a batch, its children and its ``indexer.ranges`` rows commit in one
  transaction, so a crash at any point leaves either both or neither;
- ranges of one source never overlap: the check runs under the chain's advisory lock inside
  the committing transaction, and the primary key of every event table refuses a second copy
  of a log, so a second writer of the same blocks rolls back;
- the fence, the reorg epoch, the overlap check, the record and the block rows are decided in
  one statement under that lock (its snapshot sees every commit before it);
- no transaction is open across RPC I/O: the caller fetched and decoded before;
- the transaction is bounded (``Database.bound``: statement and idle timeouts of twice the
  lease TTL), so a writer that stops in it cannot hold its key locks for ever;
- a backfill unit's commit does not wait for its WAL to reach the disk: a server crash may
  lose the last ones, each whole (rows and record together), and they are done again; the
  live tail's commits and every repair wait for it;
- a primary-key refusal is told apart: another writer's record over the blocks is a
  RangeConflict, anything else (the same key twice in the batch, a stored row without a
  record) a DuplicateKey.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from indexer import faults
from indexer.sink import schema as ddl
from indexer.sink.api import Batch, DuplicateKey, Fenced, RangeConflict, StaleBranch, Writer
from indexer.sink.database import Database, chain_lock_key
from indexer.sink.tables import ensure_partitions
from indexer.types import BlockHeader


async def commit(db: Database, conn: asyncpg.Connection, chain_id: int, span: int,
                 columns: Mapping[str, Sequence[str]], batch: Batch, writer: Writer,
                 coverage: int | None, members: Sequence[int]) -> None:
    """Write ``batch`` on ``conn`` and record its range done for its sources (``coverage``,
    the set of source ids ``members``; None when the batch has no source: block rows only),
    atomically.

    The range must lie inside one block partition of ``span`` blocks. Raises RangeConflict when
    any of it is already recorded for one of the sources, StaleBranch when a block row is
    stored already with another hash or when ``writer.epoch`` is no longer the chain's, Fenced
    when a newer live follower has written (``writer.live_term``): nothing is written then."""
    rng = batch.range
    index = rng.start // span
    if rng.end // span != index:
        raise ValueError(f"range {rng} crosses a partition boundary of span {span}")
    tables = sorted(t for t, recs in batch.rows.items() if recs)  # one lock order for all
    await ensure_partitions(db, chain_id, tables, rng, span)
    live = writer.live_term is not None
    blocks = batch.blocks
    try:
        async with conn.transaction():
            await db.bound(conn, redo=not live)  # a backfill unit a crash can redo
            for t in tables:
                await conn.copy_records_to_table(
                    ddl.block_partition_name(t, chain_id, index),
                    records=faults.records("during_copy", batch.rows[t]),
                    columns=list(columns[t]), schema_name=db.schema)
            if batch.children:
                await conn.executemany(
                    "INSERT INTO indexer.contracts (chain_id, contract, address, factory,"
                    " block_number, log_index, tx_hash) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    # Announced twice (a registry, a CREATE2 redeploy): the first announcement
                    # is kept, whichever unit commits first (as every process's memory does).
                    " ON CONFLICT (chain_id, contract, address) DO UPDATE SET"
                    " factory = EXCLUDED.factory, block_number = EXCLUDED.block_number,"
                    " log_index = EXCLUDED.log_index, tx_hash = EXCLUDED.tx_hash"
                    " WHERE (EXCLUDED.block_number, EXCLUDED.log_index)"
                    " < (indexer.contracts.block_number, indexer.contracts.log_index)",
                    [(chain_id, c.contract, c.address, c.factory, c.block_number, c.log_index,
                      c.tx_hash) for c in batch.children],
                )
            await faults.point("after_copy")
            await conn.execute("SELECT pg_advisory_xact_lock($1)", chain_lock_key(chain_id))
            r = await conn.fetchrow(
                _RECORD, chain_id, coverage, rng.start, rng.end,
                sum(len(batch.rows[t]) for t in tables), writer.worker, writer.fence,
                writer.live_term, writer.epoch, [h.number for h in blocks],
                [h.hash for h in blocks], [h.parent_hash for h in blocks],
                [h.timestamp for h in blocks], [h.number in batch.checkpoints for h in blocks],
                live, list(members),
            )
            if live and not r["fenced"]:
                raise Fenced(f"chain {chain_id}: a newer live follower (fence above "
                             f"{writer.live_term}) has written")
            if writer.epoch is not None and r["epoch"] != writer.epoch:
                raise StaleBranch(f"chain {chain_id}: blocks {rng} were fetched "
                                  f"before a reorg repair; fetching them again")
            if r["from_block"] is not None:
                raise RangeConflict(
                    f"chain {chain_id}: blocks {r['from_block']}-{r['to_block']} of "
                    f"{r['source']} are already done; refusing to commit {rng} again")
            if r["blocks"] != len(blocks):
                await _stale_block(conn, chain_id, blocks)
    except asyncpg.UniqueViolationError as e:
        raise await _refusal(conn, chain_id, columns, batch, tables, e) from e


_RECORD = """
WITH fence AS (
    UPDATE indexer.chains SET live_fence = $8
    WHERE chain_id = $1 AND $8::bigint IS NOT NULL AND live_fence <= $8 RETURNING 1
), clash AS (
    -- A record over any of these blocks whose coverage shares a source with this one.
    SELECT (SELECT s.key FROM indexer.sources s
            WHERE s.id = ANY(c.members) AND s.id = ANY($16::bigint[]) LIMIT 1) AS source,
           r.from_block, r.to_block
    FROM indexer.ranges r JOIN indexer.coverages c ON c.id = r.coverage
    WHERE r.chain_id = $1 AND r.to_block >= $3 AND r.from_block <= $4
      AND c.members && $16::bigint[]
    LIMIT 1
), go AS (
    SELECT ($8::bigint IS NULL OR EXISTS (SELECT 1 FROM fence))
       AND ($9::bigint IS NULL
            OR $9 = (SELECT reorg_epoch FROM indexer.chains WHERE chain_id = $1))
       AND NOT EXISTS (SELECT 1 FROM clash) AS ok
), record AS (
    INSERT INTO indexer.ranges (chain_id, coverage, from_block, to_block, events, worker, fence)
    SELECT $1, $2::bigint, $3, $4, $5, $6, $7
    WHERE (SELECT ok FROM go) AND $2::bigint IS NOT NULL
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


async def _stale_block(conn: asyncpg.Connection, chain_id: int,
                       blocks: Sequence[BlockHeader]) -> None:
    """Raise StaleBranch naming the lowest of ``blocks`` stored with another hash."""
    ours = {h.number: h.hash for h in blocks}
    stored = await conn.fetch(
        "SELECT number, hash FROM indexer.blocks WHERE chain_id = $1 AND number = ANY($2::bigint[])"
        " ORDER BY number", chain_id, list(ours))
    for r in stored:
        if bytes(r["hash"]) != ours[r["number"]]:
            raise StaleBranch(f"chain {chain_id}: block {r['number']} is stored with hash "
                              f"0x{bytes(r['hash']).hex()} but was fetched as "
                              f"0x{ours[r['number']].hex()}", r["number"])
    raise StaleBranch(f"chain {chain_id}: block rows of {sorted(ours)} were not all written")


async def _refusal(conn: asyncpg.Connection, chain_id: int, columns: Mapping[str, Sequence[str]],
                   batch: Batch, tables: Sequence[str],
                   error: asyncpg.UniqueViolationError) -> Exception:
    """What a primary-key refusal of ``batch`` means (its transaction rolled back): another
    writer recorded some of its blocks (RangeConflict), or not (DuplicateKey: the batch holds a
    key twice, or the key is stored without a range record over it)."""
    rng = batch.range
    table = getattr(error, "table_name", None) or "?"
    for t in tables:
        cols = list(columns[t])
        b, i = cols.index("block_number"), cols.index("log_index")
        seen: set[tuple[int, int]] = set()
        for r in batch.rows[t]:
            key = (r[b], r[i])
            if key in seen:
                return DuplicateKey(
                    f"chain {chain_id}: the rows of blocks {rng} hold two {t} logs at block "
                    f"{key[0]}, log index {key[1]} (the node answered a log twice, or two logs "
                    f"under one index): not committed", t, key[0], key[1], "batch")
            seen.add(key)
    clash = await conn.fetchrow(
        "SELECT source, from_block, to_block FROM indexer.source_ranges WHERE chain_id = $1"
        " AND source = ANY($2::text[]) AND from_block <= $4 AND to_block >= $3 LIMIT 1",
        chain_id, list(batch.sources), rng.start, rng.end)
    if clash is not None:
        return RangeConflict(f"chain {chain_id}: {clash['source']} {clash['from_block']}-"
                             f"{clash['to_block']} was committed meanwhile; refusing {rng}: "
                             f"{error}")
    return DuplicateKey(
        f"chain {chain_id}: rows of blocks {rng} are stored already in {table} though no range "
        f"record covers them ({error}): written outside the indexer, or left by a bug; "
        f"not committed", table, None, None, "stored")
