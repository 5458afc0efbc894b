"""The GraphQL scalars of the API: ``BigInt`` (bigint and numeric columns, decimal strings),
``Bytes`` (0x hex), ``JSON`` (jsonb columns), ``Timestamp`` (ISO 8601 in UTC) and ``Cursor``.
A value that does not parse is a request error (the query is refused before it runs)."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLScalarType, IntValueNode, StringValueNode, ValueNode
from graphql.utilities import value_from_ast_untyped

from indexer.serve import cursor
from indexer.serve.values import (
    InputError,
    parse_bytes,
    parse_integer,
    parse_json,
    parse_time,
)


def _out(value: Any) -> Any:
    return value  # rows are rendered before (values.OUTPUTS)


def _string_literal(node: ValueNode) -> str:
    if not isinstance(node, StringValueNode):
        raise InputError("expected a string")
    return node.value


def _integer_literal(node: ValueNode, _variables: Any = None) -> int:
    if isinstance(node, IntValueNode | StringValueNode):
        return parse_integer(int(node.value) if isinstance(node, IntValueNode) else node.value)
    raise InputError("expected an integer or a decimal string")


def _time_literal(node: ValueNode, _variables: Any = None) -> Any:
    if isinstance(node, IntValueNode):
        return parse_time(int(node.value))
    return parse_time(_string_literal(node))


def _cursor_form(value: Any) -> str:
    if not isinstance(value, str) or cursor.form(value) is None:
        raise InputError("not a cursor (pass the `next` of a page)")
    return value


def _bytes_literal(node: ValueNode, _variables: Any = None) -> bytes:
    return parse_bytes(_string_literal(node))


def _json_literal(node: ValueNode, variables: Any = None) -> str:
    return parse_json(value_from_ast_untyped(node, variables))


def _cursor_literal(node: ValueNode, _variables: Any = None) -> str:
    return _cursor_form(_string_literal(node))


BIG_INT = GraphQLScalarType(
    "BigInt", description="An integer of any size, as a decimal string (input: a string or an "
    "integer literal).", serialize=_out, parse_value=parse_integer,
    parse_literal=_integer_literal)
BYTES = GraphQLScalarType(
    "Bytes", description="Bytes as 0x-prefixed hex; input case-insensitive.", serialize=_out,
    parse_value=parse_bytes, parse_literal=_bytes_literal)
JSON = GraphQLScalarType(
    "JSON", description="A JSON value (integers of any size exact).", serialize=_out,
    parse_value=parse_json, parse_literal=_json_literal)
TIMESTAMP = GraphQLScalarType(
    "Timestamp", description="A time, ISO 8601 in UTC (`2024-05-01T12:00:00Z`); input also "
    "unix seconds, and ISO 8601 without an offset is taken as UTC.", serialize=_out,
    parse_value=parse_time, parse_literal=_time_literal)
CURSOR = GraphQLScalarType(
    "Cursor", description="Where a page ends: pass a page's `next` as `after` to read the "
    "next one (with the same order_by).", serialize=_out, parse_value=_cursor_form,
    parse_literal=_cursor_literal)
