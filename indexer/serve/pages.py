"""The SQL of one page of a table (pure): the filters, the rows complete so far (per chain, up to
the block the frontier says is indexed for that table), the keyset after the cursor, the order
and the limit. Every value is a parameter; every name is quoted.

The statement also reads the reorg epochs (``EPOCH``) in the same snapshot as the rows, so the
caller can tell whether a repair ran since the frontier it cut the rows at was read: rows only
ever appear below an indexed block, except when a repair deletes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from indexer.serve.cursor import Position
from indexer.serve.tables import Column, Op, Table
from indexer.serve.values import INT64_MAX, INT64_MIN, Kind, select_expression
from indexer.sink.schema import qualified, quote_ident

EPOCH = ("coalesce((SELECT string_agg(chain_id::text || ':' || reorg_epoch::text, ','"
         " ORDER BY chain_id) FROM indexer.chains), '')")

_OPERATORS = {Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}


@dataclass(frozen=True, slots=True)
class Condition:
    column: Column
    op: Op
    value: Any  # parsed (values.PARSERS); a list for IN; None: IS NULL (EQ only)


@dataclass(frozen=True, slots=True)
class PageRequest:
    table: Table
    conditions: tuple[Condition, ...]
    descending: bool
    first: int
    after: Position | None
    bounds: Mapping[int, int]  # chain id -> highest block whose rows are complete


@dataclass(frozen=True, slots=True)
class PageQuery:
    sql: str
    params: tuple[Any, ...]
    chains: tuple[int, ...]  # the chains it reads


class _Params:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any, cast: str) -> str:
        self.values.append(value)
        return f"${len(self.values)}::{cast}"


def page_query(schema: str, req: PageRequest) -> PageQuery | None:
    """The statement of the page, or None when no row can match (nothing to ask)."""
    chains = _chains(req)
    if not chains:
        return None
    p = _Params()
    where: list[str] = []
    if len(chains) == 1:
        (chain,) = chains
        where.append(f"chain_id = {p.add(chain, 'bigint')}")
        where.append(f"block_number <= {p.add(req.bounds[chain], 'bigint')}")
    else:
        where.append(f"chain_id = ANY({p.add(list(chains), 'bigint[]')})")
        cases = " ".join(f"WHEN {p.add(c, 'bigint')} THEN {p.add(req.bounds[c], 'bigint')}"
                         for c in chains)
        where.append(f"block_number <= CASE chain_id {cases} END")
    for cond in req.conditions:
        if cond.column.name == "chain_id" and cond.op in (Op.EQ, Op.IN):
            continue  # decided by _chains
        sql = _condition(cond, p)
        if sql is False:
            return None
        if sql is not True:
            where.append(sql)
    if req.after is not None:
        keyset = _keyset(req.after, req.descending, chains, p)
        if keyset is False:
            return None
        if keyset is not True:
            where.append(keyset)
    direction = "DESC" if req.descending else "ASC"
    keys = ("block_number", "log_index") if len(chains) == 1 else (
        "chain_id", "block_number", "log_index")
    order = ", ".join(f"{k} {direction}" for k in keys)
    outer = ", ".join(f"t.{k} {direction}" for k in keys)
    cols = ", ".join(select_expression(quote_ident(c.name), c.kind) for c in req.table.columns)
    limit = p.add(req.first + 1, "bigint")
    sql = (f"SELECT e.epoch, t.* FROM (SELECT {EPOCH} AS epoch) AS e LEFT JOIN LATERAL ("
           f"SELECT {cols} FROM {qualified(schema, req.table.name)} WHERE {' AND '.join(where)}"
           f" ORDER BY {order} LIMIT {limit}) AS t ON true ORDER BY {outer}")
    return PageQuery(sql, tuple(p.values), chains)


def _chains(req: PageRequest) -> tuple[int, ...]:
    """The chains whose rows may match: those served (with a block indexed), narrowed by
    equality and ``_in`` filters on chain_id."""
    chains = {c for c, b in req.bounds.items() if b >= 0}
    for cond in req.conditions:
        if cond.column.name != "chain_id":
            continue
        if cond.op is Op.EQ:
            chains &= {cond.value} if cond.value is not None else set()
        elif cond.op is Op.IN:
            chains &= set(cond.value)
    return tuple(sorted(chains))


def _condition(cond: Condition, p: _Params) -> str | bool:
    """The SQL of one filter; True when it holds for every row, False for none."""
    col, op, value = cond.column, cond.op, cond.value
    name = quote_ident(col.name)
    ranged = col.kind in (Kind.BIGINT, Kind.INT)
    if op is Op.IN:
        values = [v for v in value if not ranged or INT64_MIN <= v <= INT64_MAX]
        if not values:
            return False
        return f"{name} = ANY({p.add(values, col.kind.sql + '[]')})"
    if value is None:
        if op is not Op.EQ:
            raise ValueError(f"{col.name}{op.value}: null cannot be compared")
        return f"{name} IS NULL"
    if ranged and not INT64_MIN <= value <= INT64_MAX:
        # Beyond any value the column can hold: decided without asking.
        if op is Op.EQ:
            return False
        above = value > INT64_MAX
        return above == (op in (Op.LT, Op.LTE))
    if op is Op.EQ:
        return f"{name} = {p.add(value, col.kind.sql)}"
    collate = ' COLLATE "C"' if col.kind is Kind.TEXT else ""
    return f"{name}{collate} {_OPERATORS[op]} {p.add(value, col.kind.sql)}"


def _keyset(after: Position, descending: bool, chains: tuple[int, ...],
            p: _Params) -> str | bool:
    """Rows strictly after ``after`` in the page order."""
    cmp = "<" if descending else ">"
    if len(chains) == 1:
        (chain,) = chains
        if chain != after.chain_id:
            return (chain < after.chain_id) == descending
        return (f"(block_number, log_index) {cmp} ({p.add(after.block_number, 'bigint')}, "
                f"{p.add(after.log_index, 'integer')})")
    return (f"(chain_id, block_number, log_index) {cmp} ({p.add(after.chain_id, 'bigint')}, "
            f"{p.add(after.block_number, 'bigint')}, {p.add(after.log_index, 'integer')})")
