"""The GraphQL schema, generated from the tables served (``tables.Catalogue``).

Per table ``T`` (names exactly as the table and its columns):
- ``Query.T(where: T_Where, order_by: OrderBy = block_number_asc, first: Int = 100,
  after: Cursor, finalized: Boolean = false): T_Page!`` with ``T_Page { items: [T!]!,
  next: Cursor }``;
- ``T_Where``: per column ``c`` the keys ``c`` (equality; null: IS NULL), ``c_gt``, ``c_gte``,
  ``c_lt``, ``c_lte`` and ``c_in``;
- ``Subscription.T(where, finalized): T_Change!``: rows as they are indexed (``INSERT``) and
  withdrawn by a reorg repair (``RETRACT``).
And ``Query.chains: [Chain!]!``: per chain its head, safe head, indexed block and lag.

Types the API adds start with a capital letter or end in ``_Page``, ``_Where``, ``_Change``;
table names are lower-case, so they never collide. Root fields are non-null: a field that
fails fails the whole answer (never a partial answer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLEnumValue,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLString,
    specified_directives,
)

from indexer.naming import FIXED_COLUMNS
from indexer.serve.scalars import BIG_INT, BYTES, CURSOR, JSON, TIMESTAMP
from indexer.serve.tables import Catalogue, Op, Table
from indexer.serve.values import Kind

DEFAULT_FIRST = 100

SCALARS: dict[Kind, Any] = {
    Kind.BYTES: BYTES, Kind.BOOL: GraphQLBoolean, Kind.INT: GraphQLInt, Kind.BIGINT: BIG_INT,
    Kind.NUMERIC: BIG_INT, Kind.TEXT: GraphQLString, Kind.JSON: JSON, Kind.TIME: TIMESTAMP,
}

ORDER_BY = GraphQLEnumType("OrderBy", {
    "block_number_asc": GraphQLEnumValue("asc", description="oldest first (chain_id, "
                                         "block_number, log_index)"),
    "block_number_desc": GraphQLEnumValue("desc", description="newest first"),
}, description="The order of a page: by (chain_id, block_number, log_index).")

CHANGE_KIND = GraphQLEnumType("ChangeKind", {
    "INSERT": GraphQLEnumValue("INSERT", description="rows newly indexed"),
    "RETRACT": GraphQLEnumValue("RETRACT", description="rows sent before that a reorg repair "
                                "deleted: every row of chain_id above after_block is gone"),
})


def _nn(t: Any) -> Any:
    return GraphQLNonNull(t)


CHAIN = GraphQLObjectType("Chain", {
    "name": GraphQLField(_nn(GraphQLString)),
    "chain_id": GraphQLField(_nn(BIG_INT)),
    "head": GraphQLField(_nn(BIG_INT), description="the node's head (serve --chain), else the "
                         "highest block recorded"),
    "safe": GraphQLField(_nn(BIG_INT), description="head minus the chain's finality depth"),
    "indexed": GraphQLField(_nn(BIG_INT), description="every event of the chain is indexed up "
                            "to this block"),
    "lag": GraphQLField(_nn(BIG_INT), description="head minus indexed"),
    "finality_depth": GraphQLField(_nn(GraphQLInt)),
}, description="One chain as indexed.")


@dataclass(frozen=True, slots=True)
class Resolvers:
    """What the schema's root fields call (``resolve``)."""

    page: Callable[[Table], Callable[..., Any]]  # Query.T
    chains: Callable[..., Any]  # Query.chains
    changes: Callable[[Table], Callable[..., Any]] | None = None  # Subscription.T (subscribe)


@dataclass(frozen=True, slots=True)
class TableTypes:
    row: GraphQLObjectType
    page: GraphQLObjectType
    where: GraphQLInputObjectType
    change: GraphQLObjectType


def row_type(table: Table) -> GraphQLObjectType:
    return GraphQLObjectType(table.name, {
        c.name: GraphQLField(_nn(SCALARS[c.kind]) if c.name in FIXED_COLUMNS else SCALARS[c.kind])
        for c in table.columns
    }, description=f"One row of table {table.name}.")


def where_type(table: Table) -> GraphQLInputObjectType:
    fields: dict[str, GraphQLInputField] = {}
    for key, (col, op) in table.filters.items():
        scalar: GraphQLInputType = SCALARS[col.kind]
        if op is Op.IN:
            scalar = GraphQLList(_nn(scalar))
        fields[key] = GraphQLInputField(scalar, description=_describe(col.name, op))
    return GraphQLInputObjectType(f"{table.name}_Where", fields,
                                  description=f"Filters of {table.name}; all must hold.")


def _describe(column: str, op: Op) -> str:
    return {Op.EQ: f"{column} equals (null: is null)", Op.GT: f"{column} greater than",
            Op.GTE: f"{column} at least", Op.LT: f"{column} less than",
            Op.LTE: f"{column} at most", Op.IN: f"{column} is one of"}[op]


def table_types(table: Table) -> TableTypes:
    row = row_type(table)
    items: GraphQLOutputType = _nn(GraphQLList(_nn(row)))
    page = GraphQLObjectType(f"{table.name}_Page", {
        "items": GraphQLField(items),
        "next": GraphQLField(CURSOR, description="the cursor of the next page; null: no more "
                             "rows now"),
    })
    change = GraphQLObjectType(f"{table.name}_Change", {
        "kind": GraphQLField(_nn(CHANGE_KIND)),
        "chain_id": GraphQLField(_nn(BIG_INT)),
        "items": GraphQLField(items),
        "after_block": GraphQLField(BIG_INT, description="RETRACT: rows above this block are "
                                    "withdrawn"),
        "indexed": GraphQLField(_nn(BIG_INT), description="the table is indexed up to here "
                                "on this chain"),
        "safe": GraphQLField(_nn(BIG_INT)),
    })
    return TableTypes(row, page, where_type(table), change)


def page_arguments(types: TableTypes) -> dict[str, GraphQLArgument]:
    return {
        "where": GraphQLArgument(types.where),
        "order_by": GraphQLArgument(ORDER_BY, default_value="asc"),
        "first": GraphQLArgument(GraphQLInt, default_value=DEFAULT_FIRST,
                                 description="rows in the page, 0 to 1000 (default 100)"),
        "after": GraphQLArgument(CURSOR, description="the `next` of the page before"),
        "finalized": GraphQLArgument(GraphQLBoolean, default_value=False,
                                     description="only rows at or below the safe head"),
    }


def build_schema(catalogue: Catalogue, resolvers: Resolvers) -> GraphQLSchema:
    query: dict[str, GraphQLField] = {
        "chains": GraphQLField(_nn(GraphQLList(_nn(CHAIN))), resolve=resolvers.chains,
                               description="Every chain served: head, safe, indexed, lag."),
    }
    subscription: dict[str, GraphQLField] = {}
    for table in catalogue.tables:
        types = table_types(table)
        args = page_arguments(types)
        query[table.name] = GraphQLField(_nn(types.page), args=args,
                                         resolve=resolvers.page(table))
        if resolvers.changes is not None:
            subscription[table.name] = GraphQLField(
                _nn(types.change), args={k: args[k] for k in ("where", "finalized")},
                subscribe=resolvers.changes(table), resolve=lambda event, _info, **_: event)
    return GraphQLSchema(
        GraphQLObjectType("Query", query),
        subscription=GraphQLObjectType("Subscription", subscription) if subscription else None,
        directives=specified_directives,
    )
