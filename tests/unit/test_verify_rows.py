"""verify's row comparison (pure): stored rows against the rows the chain decodes to."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from indexer.verify.rows import Difference, blocks_of, compare

T = datetime(2026, 1, 1, tzinfo=UTC)
TYPES = ["bigint", "bigint", "timestamptz", "bytea", "integer", "integer", "bytea",
         "numeric(78,0)", "jsonb"]


def row(block: int, index: int, value: object = 5, doc: str = '{"a": 1, "b": [2]}') -> tuple:
    return (1, block, T, b"\x01" * 32, 0, index, b"\x02" * 20, value, doc)


def test_equal_tables_have_no_difference_whatever_the_forms() -> None:
    chain = [row(10, 0, 2**255 + 7), row(10, 1)]
    # As Postgres gives them back: numeric as Decimal, jsonb with its own spacing and key order.
    stored = [row(10, 0, Decimal(2**255 + 7), '{"b": [2], "a": 1}'), row(10, 1, Decimal(5))]
    assert compare("t", TYPES, chain, stored) == []


def test_missing_extra_and_changed_rows_are_named_by_block_and_log_index() -> None:
    chain = [row(10, 0), row(10, 1), row(11, 0, 2**200), row(12, 3, doc='{"a": 1}')]
    stored = [row(10, 0), row(11, 0, Decimal(2**200 + 1)), row(12, 3, doc='{"a": 2}'),
              row(13, 0)]
    got = compare("t", TYPES, chain, stored)
    assert got == [Difference("t", 10, 1, "missing"), Difference("t", 11, 0, "changed"),
                   Difference("t", 12, 3, "changed"), Difference("t", 13, 0, "extra")]
    assert blocks_of(got) == [10, 11, 12, 13]


def test_a_null_or_other_bytes_in_a_stored_row_is_a_change() -> None:
    chain = [row(10, 0), row(10, 1)]
    stored = [row(10, 0, None), (1, 10, T, b"\x01" * 32, 0, 1, b"\x03" * 20, 5,
                                 '{"a": 1, "b": [2]}')]
    assert [d.kind for d in compare("t", TYPES, chain, stored)] == ["changed", "changed"]
