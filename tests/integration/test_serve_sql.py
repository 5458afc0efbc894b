"""`POST /sql` of `indexer serve` against a real Postgres: it answers reads; a write, DDL,
`COPY ... PROGRAM`, `SET ROLE` or anything else that returns no rows is refused and changes
nothing; a statement past the timeout is stopped at it; more rows than the limit is an error;
a login that could write is never used for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.cli import env_for, indexer
from tests.support.serve import Served, start_serve
from tests.support.services import Anvil, drop_database, fresh_database

MARK = Path("/tmp/indexer-sql-endpoint-copy-program-ran")


def _fetchval(url: str, sql: str) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()
    return asyncio.run(go())


@pytest.fixture(scope="module")
def served(anvil_module: Anvil, database_admin_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    url = asyncio.run(fresh_database(database_admin_url))
    env = env_for(url, anvil_module.url)
    assert indexer(["migrate"], env).code == 0
    _fetchval(url, "CREATE TABLE chaindata.t (n bigint, b bytea, x numeric(78,0), j jsonb,"
                   " at timestamptz)")
    _fetchval(url, "INSERT INTO chaindata.t SELECT n, '\\x0a0b', power(2::numeric, 200), '[1, 99999999999999999999"
                   "9]', '2024-05-01T12:00:00Z' FROM generate_series(1, 30) AS n")
    s = start_serve(env, tmp_path_factory.mktemp("sql") / "serve.log",
                    ["--timeout", "1", "--row-limit", "20"])
    try:
        yield s, url
    finally:
        s.stop()
        asyncio.run(drop_database(database_admin_url, url))


def test_a_read_is_answered_with_columns_and_rows(served: tuple[Served, str]):
    s, _ = served
    got = s.sql("SELECT n, b, x, j, at FROM chaindata.t WHERE n <= $1 AND b = $2 ORDER BY n",
                [2, "0x0A0B"])
    assert got.status == 200, got.body
    assert got.body["columns"] == ["n", "b", "x", "j", "at"]
    assert got.body["types"] == ["int8", "bytea", "numeric", "jsonb", "timestamptz"]
    assert got.body["rows"] == [
        [n, "0x0a0b", str(2**200), [1, 999999999999999999999], "2024-05-01T12:00:00+00:00"]
        for n in (1, 2)]
    got = s.sql("SELECT count(*) AS n FROM indexer.migrations")
    assert got.status == 200 and got.body["rows"][0][0] >= 5  # the system tables are readable


@pytest.mark.parametrize("statement", [
    "INSERT INTO chaindata.t (n) VALUES (999)",
    "UPDATE chaindata.t SET n = 999",
    "DELETE FROM chaindata.t",
    "WITH d AS (DELETE FROM chaindata.t RETURNING n) SELECT n FROM d",
    "TRUNCATE chaindata.t",
    "DROP TABLE chaindata.t",
    "CREATE TABLE chaindata.evil (n int)",
    "ALTER TABLE chaindata.t ADD COLUMN evil int",
    "SELECT n INTO chaindata.evil FROM chaindata.t",
    f"COPY (SELECT 1) TO PROGRAM 'touch {MARK}'",
    "COPY chaindata.t FROM PROGRAM 'echo 999'",
    "SET ROLE postgres",
    "SELECT set_config('role', 'postgres', false)",
    "DO $$ BEGIN DELETE FROM chaindata.t; END $$",
    "SELECT n FROM chaindata.t FOR UPDATE",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT 1; DELETE FROM chaindata.t",
])
def test_what_is_not_a_read_is_refused_and_changes_nothing(served: tuple[Served, str],
                                                           statement: str):
    s, url = served
    MARK.unlink(missing_ok=True)
    got = s.sql(statement)
    assert got.status == 400, got.body
    assert got.body["error"]
    assert _fetchval(url, "SELECT count(*) FROM chaindata.t") == 30
    assert _fetchval(url, "SELECT count(*) FROM chaindata.t WHERE n = 999") == 0
    assert _fetchval(url, "SELECT to_regclass('chaindata.evil')") is None
    assert _fetchval(url, "SELECT count(*) FROM information_schema.columns WHERE "
                          "table_name = 't' AND column_name = 'evil'") == 0
    assert not MARK.exists()


def test_a_statement_past_the_timeout_is_stopped_at_it(served: tuple[Served, str]):
    s, _ = served
    started = time.monotonic()
    got = s.sql("SELECT pg_sleep(30)")
    took = time.monotonic() - started
    assert got.status == 400 and "statement timeout" in got.body["error"], got.body
    assert took < 15  # the timeout is 1 s; the statement would sleep 30
    got = s.sql("SELECT 1 AS one")  # the connection is usable afterwards
    assert got.status == 200 and got.body["rows"] == [[1]]


def test_more_rows_than_the_limit_is_an_error_not_a_cut(served: tuple[Served, str]):
    s, _ = served
    assert s.sql("SELECT n FROM chaindata.t LIMIT 20").status == 200
    got = s.sql("SELECT n FROM chaindata.t")
    assert got.status == 400 and "more than 20 rows" in got.body["error"]


def test_errors_carry_postgres_message_and_bad_params_are_refused(served: tuple[Served, str]):
    s, _ = served
    got = s.sql("SELECT nope FROM chaindata.t")
    assert got.status == 400 and 'column "nope" does not exist' in got.body["error"]
    assert got.body["code"] == "42703"
    assert s.sql("SELECT $1::bytea", ["zz"]).status == 400
    assert s.sql("SELECT $1::int", []).status == 400
    assert s.sql("SELECT $1::int", [1, 2]).status == 400
    assert s.post("/sql", {"params": []}).status == 400


def test_a_login_that_could_write_is_not_used_for_sql(anvil_module: Anvil, database_admin_url: str,
                                                      tmp_path: Path):
    url = asyncio.run(fresh_database(database_admin_url))
    try:
        env = env_for(url, anvil_module.url, INDEXER_SQL_URL=url)  # the superuser of the tests
        assert indexer(["migrate"], env).code == 0
        s = start_serve(env, tmp_path / "serve.log")
        got = s.sql("SELECT 1")
        assert got.status == 503 and "/sql is off" in got.body["error"]
        assert "super" in got.body["error"]
        assert "/sql is off" in s.output()
        assert s.graphql("{ chains { name } }").status == 200  # GraphQL is served all the same
        s.stop()
    finally:
        asyncio.run(drop_database(database_admin_url, url))
