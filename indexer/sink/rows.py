"""Stored rows read back, for comparing with the chain."""

from __future__ import annotations

from collections.abc import Sequence

from indexer.sink import schema as ddl
from indexer.sink.database import Database, table_exists
from indexer.types import BlockRange


async def stored_rows(db: Database, chain_id: int, table: str, columns: Sequence[str],
                      rng: BlockRange, addresses: Sequence[bytes]) -> list[tuple]:
    """The rows of ``table`` in ``rng`` emitted by ``addresses``, in (block, log index) order,
    columns as given."""
    part = ddl.chain_partition_name(table, chain_id)
    if not await table_exists(db.pool, db.schema, part):
        return []
    cols = ", ".join(ddl.quote_ident(c) for c in columns)
    rows = await db.pool.fetch(
        f"SELECT {cols} FROM {ddl.qualified(db.schema, part)} WHERE chain_id = $1"
        " AND block_number BETWEEN $2 AND $3 AND address = ANY($4::bytea[])"
        " ORDER BY block_number, log_index", chain_id, rng.start, rng.end, list(addresses))
    return [tuple(r) for r in rows]
