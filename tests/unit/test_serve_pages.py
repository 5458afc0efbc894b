"""The SQL of one page (indexer/serve/pages.py), and the pure parts around it: tables and their
filters, cursors, values, limits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from graphql import parse

from indexer.naming import FIXED_COLUMNS
from indexer.serve import cursor, limits
from indexer.serve.cursor import Position
from indexer.serve.pages import Condition, PageRequest, page_query
from indexer.serve.tables import Op, catalogue, table_of
from indexer.serve.values import InputError, Kind, kind_of, parse_bytes, parse_integer, parse_time

FIXED = [{"name": n, "type": t} for n, t in zip(FIXED_COLUMNS, (
    "bigint", "bigint", "timestamptz", "bytea", "integer", "integer", "bytea"), strict=True)]
SWAP, _ = table_of("pair_swap", [*FIXED, {"name": "amount", "type": "numeric(78,0)"},
                                 {"name": "memo", "type": "text"},
                                 {"name": "extra", "type": "jsonb"}])
assert SWAP is not None


def req(*conds: Condition, descending: bool = False, first: int = 20, after: Position | None = None,
        bounds: dict[int, int] | None = None) -> PageRequest:
    return PageRequest(SWAP, conds, descending, first, after, {1: 100} if bounds is None else bounds)


def cond(column: str, op: Op, value: object) -> Condition:
    return Condition(SWAP.column(column), op, value)


def test_a_page_of_one_chain_is_cut_at_its_indexed_block_and_ordered_by_the_key():
    q = page_query("chaindata", req(cond("address", Op.EQ, b"\x01" * 20), descending=True))
    assert q is not None
    assert 'FROM "chaindata"."pair_swap" WHERE chain_id = $1::bigint AND block_number <= ' \
           '$2::bigint AND "address" = $3::bytea ORDER BY block_number DESC, log_index DESC ' \
           'LIMIT $4::bigint' in q.sql
    assert q.params == (1, 100, b"\x01" * 20, 21)  # one more row than asked: is there a next?
    assert q.chains == (1,)


def test_several_chains_are_each_cut_at_their_own_block():
    q = page_query("s", req(bounds={1: 100, 2: 50, 3: -1}))
    assert q is not None
    assert "chain_id = ANY($1::bigint[])" in q.sql
    assert "block_number <= CASE chain_id WHEN $2::bigint THEN $3::bigint WHEN $4::bigint " \
           "THEN $5::bigint END" in q.sql
    assert q.params[:5] == ([1, 2], 1, 100, 2, 50)  # chain 3 has nothing indexed
    assert "ORDER BY chain_id ASC, block_number ASC, log_index ASC" in q.sql


def test_chain_id_filters_choose_the_chains_and_nothing_is_asked_when_none_is_left():
    q = page_query("s", req(cond("chain_id", Op.IN, [2, 9]), bounds={1: 100, 2: 50}))
    assert q is not None and q.chains == (2,)
    assert page_query("s", req(cond("chain_id", Op.EQ, 7))) is None
    assert page_query("s", req(bounds={})) is None


def test_the_keyset_continues_strictly_after_the_cursor_in_either_order():
    q = page_query("s", req(after=Position(1, 40, 3)))
    assert q is not None and "(block_number, log_index) > ($3::bigint, $4::integer)" in q.sql
    q = page_query("s", req(after=Position(1, 40, 3), descending=True))
    assert q is not None and "(block_number, log_index) < ($3::bigint, $4::integer)" in q.sql
    q = page_query("s", req(after=Position(1, 40, 3), bounds={1: 9, 2: 9}))
    assert q is not None and "(chain_id, block_number, log_index) > (" in q.sql
    # a cursor of another chain: all of this chain is after it, or none is
    assert page_query("s", req(after=Position(0, 40, 3))) is not None
    assert page_query("s", req(after=Position(5, 40, 3))) is None
    assert page_query("s", req(after=Position(5, 40, 3), descending=True)) is not None


@pytest.mark.parametrize(("op", "sql"), [
    (Op.EQ, '"amount" = $3::numeric'), (Op.GT, '"amount" > $3::numeric'),
    (Op.GTE, '"amount" >= $3::numeric'), (Op.LT, '"amount" < $3::numeric'),
    (Op.LTE, '"amount" <= $3::numeric'), (Op.IN, '"amount" = ANY($3::numeric[])')])
def test_every_operator_is_a_parameter_cast_to_the_columns_type(op: Op, sql: str):
    q = page_query("s", req(cond("amount", op, [5] if op is Op.IN else 5)))
    assert q is not None and sql in q.sql


def test_text_is_compared_by_code_point_and_null_equality_is_is_null():
    q = page_query("s", req(cond("memo", Op.LT, "b"), cond("extra", Op.EQ, None)))
    assert q is not None
    assert '"memo" COLLATE "C" < $3::text' in q.sql and '"extra" IS NULL' in q.sql


def test_bigint_bounds_beyond_64_bits_are_decided_without_asking():
    big = 2**70
    assert page_query("s", req(cond("block_number", Op.EQ, big))) is None
    assert page_query("s", req(cond("block_number", Op.GT, big))) is None
    assert page_query("s", req(cond("block_number", Op.IN, [big]))) is None
    q = page_query("s", req(cond("block_number", Op.LT, big), cond("block_number", Op.GT, -big)))
    assert q is not None and q.params == (1, 100, 21)  # both always true: no condition


def test_tables_have_every_operator_per_column_and_leave_out_what_they_cannot_serve():
    assert set(SWAP.filters) >= {"amount", "amount_gt", "amount_gte", "amount_lt", "amount_lte",
                                 "amount_in", "address_in", "block_time_gt"}
    cat = catalogue([("ok_t", FIXED), ("__bad", FIXED),
                     ("odd_t", [*FIXED, {"name": "x", "type": "point"},
                                {"name": "y", "type": "bigint"},
                                {"name": "y_gt", "type": "boolean"}])])
    assert [t.name for t in cat.tables] == ["odd_t", "ok_t"]
    odd = cat.table("odd_t")
    assert "x" not in {c.name for c in odd.columns}
    assert odd.filters["y_gt"][0].name == "y_gt"  # the column's equality, not y's "greater"
    assert any("__bad" in n for n in cat.left_out) and any("x left out" in n for n in cat.left_out)
    assert any("filter y_gt left out" in n for n in cat.left_out)
    assert table_of("t", FIXED[1:])[0] is None  # not an event table


def test_cursors_round_trip_and_refuse_other_orders_and_garbage():
    pos = Position(31337, 123456, 7)
    assert cursor.decode(cursor.encode(pos, True), True) == pos
    with pytest.raises(InputError, match="other order_by"):
        cursor.decode(cursor.encode(pos, True), False)
    for bad in ("", "x", "MTpkOjE6Mjoz===", cursor.encode(Position(1, 2, 2**31), False)):
        with pytest.raises(InputError):
            cursor.decode(bad, False)


def test_values_in():
    assert parse_bytes("0xAbCd") == b"\xab\xcd"
    assert parse_integer("-12") == -12 and parse_integer(2**80) == 2**80
    assert parse_time(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_time("2024-05-01T12:00:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    for bad, parse_ in (("abcd", parse_bytes), ("0xabc", parse_bytes), ("1.5", parse_integer),
                        (True, parse_integer), ("yesterday", parse_time)):
        with pytest.raises(InputError):
            parse_(bad)
    assert kind_of("numeric(20,0)") is Kind.NUMERIC and kind_of("timestamp with time zone") \
        is Kind.TIME and kind_of("point") is None


def _op(text: str):
    doc = parse(text)
    frags = {d.name.value: d for d in doc.definitions if d.kind == "fragment_definition"}
    ops = [d for d in doc.definitions if d.kind == "operation_definition"]
    return ops[0], frags


def test_limits_count_every_aliased_field_and_read_first_from_variables():
    op, frags = _op("query($n: Int) { a: pair_swap(first: 1000) { next } "
                    "b: pair_swap(first: $n) { next } ...F } fragment F on Query { "
                    "c: pair_swap { next } }")
    assert limits.check(op, frags, {"n": 5}, {"pair_swap"}) == []
    got = limits.check(op, frags, {"n": 5000}, {"pair_swap"})
    assert any("b: first is 5000" in p for p in got)
    many = "{ " + " ".join(f"a{i}: pair_swap(first: 1000) {{ next }}" for i in range(10)) + " }"
    op, frags = _op(many)
    assert any("costs" in p for p in limits.check(op, frags, {}, {"pair_swap"}))
    op, frags = _op("{ a { b { c { d } } } }")
    assert limits.depth(op.selection_set, frags) == 4
