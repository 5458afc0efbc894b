"""Every filter operator of `indexer serve` (equality, _gt, _gte, _lt, _lte, _in) on every
column of every type family (boolean, integer, bigint, numeric(20,0) and numeric(78,0), bytea,
text, jsonb, timestamptz), over the AllTypes contract's events indexed from a real anvil: the
rows each filter returns are those the same predicate selects in Python from the rows read
from Postgres (jsonb ordering, which Python does not have, from Postgres's own operators)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from indexer.serve.values import Kind, kind_of
from tests.integration.test_all_types import ALL_TABLES, _chain_file, _send_all
from tests.support.cli import env_for, indexer
from tests.support.serve import Served, start_serve
from tests.support.services import Anvil, drop_database, fresh_database

GRAPHQL_TYPE = {Kind.BYTES: "Bytes", Kind.BOOL: "Boolean", Kind.INT: "Int",
                Kind.BIGINT: "BigInt", Kind.NUMERIC: "BigInt", Kind.TEXT: "String",
                Kind.JSON: "JSON", Kind.TIME: "Timestamp"}
OPS = {"_gt": lambda a, b: a > b, "_gte": lambda a, b: a >= b, "_lt": lambda a, b: a < b,
       "_lte": lambda a, b: a <= b}


@dataclass
class Setup:
    served: Served
    url: str
    rows: dict[str, list[dict[str, Any]]]  # table -> rows as asyncpg reads them
    kinds: dict[str, dict[str, Kind]]  # table -> column -> kind


async def _read(url: str) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Kind]]]:
    conn = await asyncpg.connect(url)
    try:
        rows, kinds = {}, {}
        for t in ALL_TABLES:
            rows[t] = [dict(r) for r in await conn.fetch(f'SELECT * FROM chaindata."{t}"')]
            cols = json.loads(await conn.fetchval(
                "SELECT columns::text FROM indexer.event_tables WHERE table_name = $1", t))
            kinds[t] = {c["name"]: kind_of(c["type"]) for c in cols}
        return rows, kinds
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def setup(anvil_module: Anvil, database_admin_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    all_types, nft, _ = _send_all(anvil_module.url)
    tmp = tmp_path_factory.mktemp("filters")
    url = asyncio.run(fresh_database(database_admin_url))
    env = env_for(url, anvil_module.url)
    done = indexer(["run", "--chain", str(_chain_file(tmp, anvil_module.url, all_types, nft)),
                    "--once"], env)
    assert done.code == 0, done.err
    served = start_serve(env, tmp / "serve.log")
    rows, kinds = asyncio.run(_read(url))
    try:
        yield Setup(served, url, rows, kinds)
    finally:
        served.stop()
        asyncio.run(drop_database(database_admin_url, url))


def _api_value(kind: Kind, value: Any, upper: bool = False) -> Any:
    """A value as a client sends it."""
    if kind is Kind.BYTES:
        text = value.hex()
        return "0x" + (text.upper() if upper else text)
    if kind in (Kind.BIGINT, Kind.NUMERIC):
        return str(int(value))
    if kind is Kind.JSON:
        return json.loads(value)
    if kind is Kind.TIME:
        return value.isoformat()
    return value


def _comparable(kind: Kind, value: Any) -> Any:
    return json.loads(value) if kind is Kind.JSON and value is not None else value


def _ask(setup: Setup, table: str, key: str, gtype: str, value: Any) -> list[tuple[int, int]]:
    got = setup.served.graphql(
        f"query($v: {gtype}) {{ {table}(where: {{{key}: $v}}, first: 1000) "
        f"{{ items {{ block_number log_index }} next }} }}", {"v": value})
    assert got.status == 200 and "errors" not in got.body, (key, value, got.body)
    page = got.body["data"][table]
    assert page["next"] is None
    return sorted((int(i["block_number"]), i["log_index"]) for i in page["items"])


def _keys(rows: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return sorted((r["block_number"], r["log_index"]) for r in rows)


def _sql_keys(setup: Setup, table: str, column: str, op: str, value: Any) -> list[tuple[int, int]]:
    async def go() -> list[tuple[int, int]]:
        conn = await asyncpg.connect(setup.url)
        try:
            rows = await conn.fetch(f'SELECT block_number, log_index FROM chaindata."{table}"'
                                    f' WHERE "{column}" {op} $1::jsonb', json.dumps(value))
            return sorted((r["block_number"], r["log_index"]) for r in rows)
        finally:
            await conn.close()
    return asyncio.run(go())


@pytest.mark.parametrize("table", ALL_TABLES)
def test_every_operator_on_every_column_selects_what_the_predicate_does(setup: Setup,
                                                                       table: str):
    rows = setup.rows[table]
    assert rows, f"{table}: no rows: the filters would prove nothing"
    kinds = setup.kinds[table]
    checked: set[Kind] = set()
    for column, kind in kinds.items():
        values = sorted({_key(kind, r[column]) for r in rows})
        pivot_raw = next(r[column] for r in rows if _key(kind, r[column]) == values[len(values) // 2])
        pivot = _comparable(kind, pivot_raw)
        gtype = GRAPHQL_TYPE[kind]
        # equality, with bytes spelled in upper case too
        for upper in (False, True):
            want = _keys([r for r in rows if _comparable(kind, r[column]) == pivot])
            assert _ask(setup, table, column, gtype, _api_value(kind, pivot_raw, upper)) == want, \
                (table, column)
        for suffix, cmp in OPS.items():
            if kind is Kind.JSON:
                want = _sql_keys(setup, table, column, suffix_sql(suffix), pivot)
            else:
                want = _keys([r for r in rows if cmp(r[column], pivot_raw)])
            got = _ask(setup, table, column + suffix, gtype, _api_value(kind, pivot_raw))
            assert got == want, (table, column + suffix, pivot_raw)
        some = [r[column] for r in rows[:2]]
        want = _keys([r for r in rows if _comparable(kind, r[column])
                      in [_comparable(kind, v) for v in some]])
        got = _ask(setup, table, column + "_in", f"[{gtype}!]", [_api_value(kind, v) for v in some])
        assert got == want, (table, column + "_in")
        assert _ask(setup, table, column + "_in", f"[{gtype}!]", []) == []
        checked.add(kind)
    assert {Kind.BIGINT, Kind.BYTES, Kind.TIME, Kind.INT} <= checked


def _key(kind: Kind, value: Any) -> Any:
    """A sortable, hashable stand-in of a value (jsonb by its text)."""
    return value if kind is not Kind.JSON else str(value)


def suffix_sql(suffix: str) -> str:
    return {"_gt": ">", "_gte": ">=", "_lt": "<", "_lte": "<="}[suffix]


def test_every_type_family_of_contract_3_is_covered(setup: Setup):
    every = {k for kinds in setup.kinds.values() for k in kinds.values()}
    assert every == set(Kind)
    # rows that differ in every column family, so each filter splits them
    assert all(len(setup.rows[t]) >= 2 for t in ("all_types_ints", "all_types_scalars",
                                                 "all_types_dynamic", "all_types_arrays",
                                                 "all_types_structs"))
    ints = setup.kinds["all_types_ints"]
    assert ints["u64"] is Kind.NUMERIC and ints["u256"] is Kind.NUMERIC  # (20,0) and (78,0)


def test_null_equality_is_is_null_and_huge_numbers_compare_exactly(setup: Setup):
    assert _ask(setup, "all_types_ints", "u256", "BigInt", None) == []
    rows = setup.rows["all_types_ints"]
    top = max(r["u256"] for r in rows)
    assert int(top) == 2**256 - 1
    assert _ask(setup, "all_types_ints", "u256_gte", "BigInt", str(2**256 - 1)) == \
        _keys([r for r in rows if r["u256"] == top])
    # as a JSON integer too: the request's JSON keeps integers past 64 bits exact
    assert _ask(setup, "all_types_ints", "u256", "BigInt", 2**256 - 1) == \
        _keys([r for r in rows if r["u256"] == top])
    assert _ask(setup, "all_types_ints", "u256_gt", "BigInt", str(2**256 - 2)) == \
        _keys([r for r in rows if r["u256"] == top])
    assert _ask(setup, "all_types_ints", "i256_lt", "BigInt", str(-(2**255) + 1)) == \
        _keys([r for r in rows if r["i256"] == -(2**255)])
    assert _ask(setup, "all_types_ints", "i8_lt", "BigInt", str(2**80)) == _keys(rows)
    assert _ask(setup, "all_types_ints", "i8", "BigInt", str(2**80)) == []
