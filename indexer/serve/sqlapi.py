"""``POST /sql``: one statement, read-only, bounded.

Every statement runs in its own read-only transaction (``SET TRANSACTION READ ONLY``) on a
login that may only read (``indexer_reader`` by default: SELECT on the event tables and the
system tables, nothing else; ``check_login`` refuses to serve through any login that could
do more), with a statement timeout, and only if Postgres describes it as returning rows: a
write, DDL, ``COPY`` (to a program or anywhere), ``SET`` or ``DO`` is refused before it runs,
and would fail if it did. At most ``row_limit`` rows: a statement returning more is refused
(400), never cut short. Errors are 400 with Postgres's message.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from indexer.serve.values import InputError, parse_bytes, parse_integer, parse_json, parse_time

READER_ROLE = "indexer_reader"

# Role attributes and memberships through which a statement could write, run programs, read
# files or change its role: a login holding any of them is not used for /sql.
_LOGIN_CHECK = """
SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
       ARRAY(SELECT m.rolname::text FROM pg_roles m
             WHERE pg_has_role(current_user, m.oid, 'MEMBER') AND m.oid <> r.oid
               AND (m.rolsuper OR m.rolcreaterole OR m.rolname IN ('pg_execute_server_program',
                    'pg_write_server_files', 'pg_read_server_files', 'pg_write_all_data',
                    'pg_signal_backend', 'pg_database_owner'))) AS powers,
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p')
          AND (pg_has_role(current_user, c.relowner, 'USAGE')
               OR has_table_privilege(c.oid, 'INSERT') OR has_table_privilege(c.oid, 'UPDATE')
               OR has_table_privilege(c.oid, 'DELETE')
               OR has_table_privilege(c.oid, 'TRUNCATE'))) AS writable,
       (SELECT count(*) FROM pg_namespace n WHERE n.nspname = ANY($1::text[])
          AND has_schema_privilege(n.oid, 'CREATE')) AS creatable
FROM pg_roles r WHERE r.rolname = current_user
"""


class SqlError(Exception):
    """A statement refused or failed: ``status`` and the body to answer with."""

    def __init__(self, status: int, message: str, **more: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **{k: v for k, v in more.items() if v is not None}}


async def check_login(conn: asyncpg.Connection, schemas: Sequence[str]) -> str | None:
    """Why this connection's login must not serve /sql (None: it only reads)."""
    r = await conn.fetchrow(_LOGIN_CHECK, list(schemas))
    user = await conn.fetchval("SELECT current_user")
    if r is None:
        return f"login {user}: no such role"
    attrs = [a for a in ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication",
                         "rolbypassrls") if r[a]]
    if attrs:
        return f"login {user} has {', '.join(a[3:] for a in attrs)}"
    if r["powers"]:
        return f"login {user} is a member of {', '.join(r['powers'])}"
    if r["writable"]:
        return f"login {user} owns or may write {r['writable']} tables of {', '.join(schemas)}"
    if r["creatable"]:
        return f"login {user} may create objects in {', '.join(schemas)}"
    return None


@dataclass(frozen=True, slots=True)
class Result:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]

    def body(self) -> bytes:
        return orjson.dumps({"columns": self.columns, "types": self.types, "rows": self.rows})


class SqlEndpoint:
    def __init__(self, pool: asyncpg.Pool, timeout: float, row_limit: int) -> None:
        self.pool = pool
        self.timeout = timeout
        self.row_limit = row_limit

    async def run(self, sql: Any, params: Any) -> Result:
        if not isinstance(sql, str) or not sql.strip():
            raise SqlError(400, "the request has no sql (a statement, as a string)")
        if params is None:
            params = []
        if not isinstance(params, list):
            raise SqlError(400, "params must be a list")
        try:
            async with self.pool.acquire() as conn, conn.transaction(readonly=True):
                await conn.execute(f"SET LOCAL statement_timeout = {int(self.timeout * 1000)}")
                return await self._statement(conn, sql, params)
        except asyncpg.PostgresError as e:
            raise SqlError(400, e.args[0] if e.args else str(e), code=e.sqlstate,
                           detail=getattr(e, "detail", None), hint=getattr(e, "hint", None),
                           position=getattr(e, "position", None)) from e
        except TimeoutError as e:
            raise SqlError(400, f"canceling statement due to statement timeout "
                           f"({self.timeout:g} s)") from e
        except (asyncpg.InterfaceError, OSError) as e:
            raise SqlError(503, f"the database cannot be reached: {type(e).__name__}") from e

    async def _statement(self, conn: asyncpg.Connection, sql: str, params: list[Any]) -> Result:
        stmt = await conn.prepare(sql, timeout=self.timeout + 2)
        attrs = stmt.get_attributes()
        if not attrs:
            raise SqlError(400, "only a statement that returns rows is served (SELECT, WITH, "
                           "VALUES, TABLE, EXPLAIN, SHOW)")
        wanted = stmt.get_parameters()
        if len(params) != len(wanted):
            raise SqlError(400, f"the statement takes {len(wanted)} parameters, "
                           f"{len(params)} given")
        args = [_param(i, p, t) for i, (p, t) in enumerate(zip(params, wanted, strict=True))]
        cur = await stmt.cursor(*args, timeout=self.timeout + 2)
        records = await cur.fetch(self.row_limit + 1, timeout=self.timeout + 2)
        if len(records) > self.row_limit:
            raise SqlError(400, f"the statement returns more than {self.row_limit:,} rows (the "
                           f"row limit); add a LIMIT, or page with a WHERE on the last row")
        outs = [_json if a.type.name in ("json", "jsonb") else _out for a in attrs]
        return Result([a.name for a in attrs], [a.type.name for a in attrs],
                      [[out(v) for out, v in zip(outs, r, strict=True)] for r in records])


def _param(i: int, value: Any, pg_type: Any) -> Any:
    """A JSON value as the parameter type Postgres inferred."""
    name = pg_type.name
    try:
        if value is None:
            return None
        if pg_type.kind == "array" and isinstance(value, list):
            return [_param(i, v, pg_type.element_type) for v in value]
        if name == "bytea":
            return parse_bytes(value)
        if name in ("int2", "int4", "int8", "oid"):
            return parse_integer(value)
        if name == "numeric":
            return decimal.Decimal(value) if isinstance(value, str | int | float) \
                and not isinstance(value, bool) else _wrong(value)
        if name in ("json", "jsonb"):
            return parse_json(value)
        if name in ("timestamptz", "timestamp"):
            got = parse_time(value)
            return got if name == "timestamptz" else got.replace(tzinfo=None)
        if name in ("float4", "float8") and isinstance(value, int | float):
            return float(value)
        if name == "bool" and isinstance(value, bool):
            return value
        if isinstance(value, str):
            return value
        return _wrong(value)
    except (InputError, decimal.InvalidOperation, ValueError) as e:
        raise SqlError(400, f"params[{i}]: not a value of type {name}: {e}") from None


def _wrong(value: Any) -> Any:
    raise InputError(f"{type(value).__name__} given")


def _json(value: str | None) -> Any:
    return None if value is None else orjson.Fragment(value)


def _out(value: Any) -> Any:
    """A value of a row as JSON: bytes as 0x hex, numeric as a decimal string, times as ISO
    8601, json as itself, composite and array values as lists."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, decimal.Decimal):  # never in exponent notation
        return str(value) if not value.is_finite() else format(value, "f")
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list | tuple | asyncpg.Record):
        return [_out(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)
