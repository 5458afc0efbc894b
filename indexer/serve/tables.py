"""The event tables the API serves, read from ``indexer.event_tables`` (pure): their columns
with their kinds, and the filter keys of each (``<column>`` for equality, ``<column>_gt``,
``_gte``, ``_lt``, ``_lte``, ``_in``).

A table or a column that cannot be served as it is named (not a GraphQL name, a type outside
contract 3) is left out with the reason, which the process logs: never silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from indexer.naming import FIXED_COLUMNS
from indexer.serve.values import Kind, kind_of

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEY_COLUMNS = ("chain_id", "block_number", "log_index")  # the keyset order of every page


class Op(Enum):
    EQ = ""
    GT = "_gt"
    GTE = "_gte"
    LT = "_lt"
    LTE = "_lte"
    IN = "_in"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: Kind
    position: int  # in the table, from 0


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    filters: Mapping[str, tuple[Column, Op]] = field(default_factory=dict)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True, slots=True)
class Catalogue:
    tables: tuple[Table, ...]
    left_out: tuple[str, ...]  # why a table, a column or a filter is not served

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


def graphql_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and not name.startswith("__")


def table_of(name: str, columns: Sequence[Mapping[str, Any]]) -> tuple[Table | None, list[str]]:
    """The table as the API serves it (None when it cannot be), and what is left out of it."""
    notes: list[str] = []
    if not graphql_name(name):
        return None, [f"table {name}: not a GraphQL name"]
    cols: list[Column] = []
    for i, c in enumerate(columns):
        cname, ctype = str(c.get("name", "")), str(c.get("type", ""))
        kind = kind_of(ctype)
        if kind is None or not graphql_name(cname):
            why = "not a GraphQL name" if kind is not None else f"type {ctype} is not served"
            if cname in FIXED_COLUMNS:
                return None, [f"table {name}: column {cname}: {why}"]
            notes.append(f"table {name}: column {cname} left out: {why}")
            continue
        cols.append(Column(cname, kind, i))
    names = [c.name for c in cols]
    if tuple(names[:len(FIXED_COLUMNS)]) != FIXED_COLUMNS:
        return None, [f"table {name}: its columns do not start with {', '.join(FIXED_COLUMNS)}"]
    filters: dict[str, tuple[Column, Op]] = {}
    taken = set(names)
    for col in cols:
        for op in Op:
            key = col.name + op.value
            if op is not Op.EQ and key in taken:
                notes.append(f"table {name}: filter {key} left out: a column has that name")
                continue
            filters[key] = (col, op)
            taken.add(key)
    return Table(name, tuple(cols), filters), notes


def catalogue(rows: Iterable[tuple[str, Sequence[Mapping[str, Any]]]]) -> Catalogue:
    """The tables served of ``(table_name, columns)`` rows, in name order."""
    tables: list[Table] = []
    notes: list[str] = []
    for name, columns in sorted(rows, key=lambda r: r[0]):
        table, why = table_of(name, columns)
        notes.extend(why)
        if table is not None:
            tables.append(table)
    return Catalogue(tuple(tables), tuple(notes))
