"""Column kinds of the event tables and their values in the API (pure).

Out: bytes as lower-case ``0x`` hex; ``bigint`` and ``numeric`` as decimal strings (they do not
fit GraphQL's 32-bit Int, nor a JavaScript number); ``jsonb`` as the JSON it holds, exactly (the
text Postgres returns is embedded as it is, so integers of any size stay exact); times as
ISO 8601 in UTC (``2024-05-01T12:00:00Z``). In: the same forms; bytes case-insensitive, integers
as decimal strings or JSON integers, times as ISO 8601 (UTC when no offset is given) or unix
seconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import orjson


class Kind(Enum):
    BYTES = "bytea"
    BOOL = "boolean"
    INT = "integer"
    BIGINT = "bigint"
    NUMERIC = "numeric"
    TEXT = "text"
    JSON = "jsonb"
    TIME = "timestamptz"

    @property
    def sql(self) -> str:
        """The type a parameter compared with such a column is cast to."""
        return self.value


_KINDS = {k.value: k for k in Kind} | {"timestamp with time zone": Kind.TIME}

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INTEGER = re.compile(r"-?[0-9]{1,80}")
_HEX = re.compile(r"0[xX]((?:[0-9a-fA-F]{2})*)")


class InputError(ValueError):
    """A value given to the API that is not of its column's kind."""


def kind_of(pg_type: str) -> Kind | None:
    """The kind of a column of contract 3's types; None for any other type."""
    t = pg_type.strip().lower()
    if re.fullmatch(r"numeric(\(\d+,\s*0\))?", t):
        return Kind.NUMERIC
    return _KINDS.get(t)


# ------------------------------------------------------------------------------------- in


def parse_bytes(value: Any) -> bytes:
    m = _HEX.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise InputError(f"expected 0x-prefixed hex with an even number of digits, got "
                         f"{_show(value)}")
    return bytes.fromhex(m.group(1))


def parse_integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    raise InputError(f"expected an integer (a JSON integer or a decimal string), got "
                     f"{_show(value)}")


def parse_time(value: Any) -> datetime:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise InputError(f"{value} is out of range for a time (unix seconds)") from None
    if isinstance(value, str):
        try:
            got = datetime.fromisoformat(value)
        except ValueError:
            raise InputError(f"expected an ISO 8601 time or unix seconds, got "
                             f"{_show(value)}") from None
        return got if got.tzinfo is not None else got.replace(tzinfo=UTC)
    raise InputError(f"expected an ISO 8601 time or unix seconds, got {_show(value)}")


def parse_json(value: Any) -> str:
    """The JSON text of ``value`` (integers of any size kept exact)."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise InputError(f"not a JSON value: {e}") from None


PARSERS: dict[Kind, Callable[[Any], Any]] = {
    Kind.BYTES: parse_bytes,
    Kind.BOOL: lambda v: v,
    Kind.INT: lambda v: v,
    Kind.BIGINT: parse_integer,
    Kind.NUMERIC: parse_integer,
    Kind.TEXT: lambda v: v,
    Kind.JSON: parse_json,
    Kind.TIME: parse_time,
}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ------------------------------------------------------------------------------------ out


def integer_out(value: int | None) -> str | None:
    return None if value is None else str(value)


def time_out(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_out(value: str | None) -> orjson.Fragment | None:
    return None if value is None else orjson.Fragment(value)


# What a column's value, as the page query selects it (``select_expression``), becomes; None:
# it is selected in its output form already.
OUTPUTS: dict[Kind, Callable[[Any], Any] | None] = {
    Kind.BYTES: None,  # selected as 0x hex
    Kind.BOOL: None,
    Kind.INT: None,
    Kind.BIGINT: integer_out,  # selected as bigint: the keys of a page are read as integers
    Kind.NUMERIC: None,  # selected as text
    Kind.TEXT: None,
    Kind.JSON: json_out,  # selected as text
    Kind.TIME: time_out,
}


def select_expression(quoted: str, kind: Kind) -> str:
    """How a column is selected for the API: bytes as 0x hex, numeric and jsonb as their
    text (Postgres formats them faster than Python would)."""
    if kind is Kind.BYTES:
        return f"'0x' || encode({quoted}, 'hex') AS {quoted}"
    if kind in (Kind.NUMERIC, Kind.JSON):
        return f"{quoted}::text AS {quoted}"
    return quoted


def parse_request(raw: bytes | str) -> Any:
    """A request body's JSON, integers of any size exact (orjson would turn those past 64 bits
    into floats: a uint256 in a JSON filter would silently change). ValueError when it is not
    JSON."""
    return json.loads(raw)
