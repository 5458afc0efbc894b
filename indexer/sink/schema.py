"""DDL of event tables and their partitions (pure: names and SQL text only).

An event table is partitioned by LIST (chain_id); each chain's partition is partitioned by
RANGE (block_number) in spans of the chain's ``partition_blocks``.
"""

from __future__ import annotations

from collections.abc import Sequence

from indexer.naming import FIXED_COLUMNS, shorten
from indexer.types import BlockRange


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def chain_partition_name(table: str, chain_id: int) -> str:
    suffix = f"_c{chain_id}"
    return shorten(table, 63 - len(suffix)) + suffix


def block_partition_name(table: str, chain_id: int, index: int) -> str:
    suffix = f"_c{chain_id}_p{index}"
    return shorten(table, 63 - len(suffix)) + suffix


def partition_index(block: int, span: int) -> int:
    return block // span


def partition_bounds(index: int, span: int) -> BlockRange:
    return BlockRange(index * span, (index + 1) * span - 1)


def partitions_of(rng: BlockRange, span: int) -> range:
    """Indexes of the block partitions that ``rng`` touches."""
    return range(partition_index(rng.start, span), partition_index(rng.end, span) + 1)


def create_event_table(schema: str, table: str, columns: Sequence[str], types: Sequence[str]) -> str:
    if tuple(columns[: len(FIXED_COLUMNS)]) != FIXED_COLUMNS:
        raise ValueError(f"table {table}: columns must start with {FIXED_COLUMNS}")
    cols = ",\n    ".join(
        f"{quote_ident(c)} {t}{' NOT NULL' if i < len(FIXED_COLUMNS) else ''}"
        for i, (c, t) in enumerate(zip(columns, types, strict=True))
    )
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified(schema, table)} (\n    {cols},\n"
        f"    PRIMARY KEY (chain_id, block_number, log_index)\n) PARTITION BY LIST (chain_id)"
    )


# The index the query API needs (issue #12): one address's rows in block order, in the order
# of the primary key within a chain, so "the latest rows of this contract" and "its rows in a
# block window" read only those rows (keyset pagination on (block_number, log_index)).
API_INDEX_COLUMNS = ("address", "block_number", "log_index")
_API_INDEX_SUFFIX = "_address_idx"


def api_index_name(relation: str) -> str:
    """The name of the API index of a table or of one of its partitions."""
    return shorten(relation, 63 - len(_API_INDEX_SUFFIX)) + _API_INDEX_SUFFIX


def create_api_index(schema: str, relation: str, *, only: bool = False,
                     concurrently: bool = False) -> str:
    """The API index on ``relation``: on an event table (or a chain partition) with ``only``
    it is made on that level alone (invalid until every partition's index is attached); on a
    block partition ``concurrently`` builds it without blocking writers."""
    cols = ", ".join(quote_ident(c) for c in API_INDEX_COLUMNS)
    return (f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS "
            f"{quote_ident(api_index_name(relation))} ON {'ONLY ' if only else ''}"
            f"{qualified(schema, relation)} ({cols})")


def attach_index(schema: str, parent_index: str, child_index: str) -> str:
    return (f"ALTER INDEX {qualified(schema, parent_index)} ATTACH PARTITION "
            f"{qualified(schema, child_index)}")


def create_chain_partition(schema: str, table: str, chain_id: int) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified(schema, chain_partition_name(table, chain_id))} "
        f"PARTITION OF {qualified(schema, table)} FOR VALUES IN ({int(chain_id)}) "
        f"PARTITION BY RANGE (block_number)"
    )


def create_block_partition(schema: str, table: str, chain_id: int, index: int, span: int) -> str:
    bounds = partition_bounds(index, span)
    return (
        f"CREATE TABLE IF NOT EXISTS "
        f"{qualified(schema, block_partition_name(table, chain_id, index))} "
        f"PARTITION OF {qualified(schema, chain_partition_name(table, chain_id))} "
        f"FOR VALUES FROM ({bounds.start}) TO ({bounds.end + 1})"
    )
