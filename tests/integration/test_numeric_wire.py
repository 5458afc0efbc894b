"""The numeric codec against a real Postgres: every value written through it reads back as
Postgres's own text of the same value, and every value Postgres sends decodes to the value
asyncpg's own codec gives, written as Postgres writes it (its text: ``1e30`` is
``1000000000000000000000000000000``, where asyncpg's gives ``1.00E+30``)."""

from __future__ import annotations

import random
from decimal import Decimal

import asyncpg

from indexer.sink import numeric


async def test_written_values_are_postgres_values(database_url: str):
    rng = random.Random(11)
    ints = [0, 1, -1, 9999, 10000, 10**8, 10**8 - 1, 2**63, 2**256 - 1, -(2**255), 10**77]
    ints += [rng.getrandbits(rng.randrange(1, 257)) * rng.choice((1, -1)) for _ in range(2000)]
    decimals = [Decimal(t) for t in ("0.00", "1.50", "-123.456789", "0.0001", "1E+30", "-7E-9",
                                     "12345678901234567890.1234567")]
    conn = await asyncpg.connect(database_url)
    try:
        await numeric.install(conn)
        await conn.execute("CREATE TEMP TABLE n (i int, v numeric(78,0), d numeric)")
        await conn.copy_records_to_table(
            "n", records=[(i, v, None) for i, v in enumerate(ints)])
        await conn.executemany("INSERT INTO n VALUES ($1, NULL, $2)",
                               [(-i - 1, d) for i, d in enumerate(decimals)])
        got = {r["i"]: r["t"] for r in await conn.fetch(
            "SELECT i, coalesce(v::text, d::text) AS t FROM n")}
        assert [int(got[i]) for i in range(len(ints))] == ints
        for i, d in enumerate(decimals):
            assert Decimal(got[-i - 1]) == d and got[-i - 1] == await conn.fetchval(
                "SELECT $1::text::numeric::text", str(d)), d
    finally:
        await conn.close()


async def test_read_values_are_what_asyncpg_gives(database_url: str):
    texts = ["0", "0.00", "1.50", "-0.0001", "12345678901234567890.123", "1e30", "NaN",
             "Infinity", "-Infinity", str(2**256 - 1), str(-(2**255)), "100", "10000.0000"]
    plain = await asyncpg.connect(database_url)
    ours = await asyncpg.connect(database_url)
    try:
        await numeric.install(ours)
        for t in texts:
            want = await plain.fetchval("SELECT $1::numeric", t)
            got = await ours.fetchval("SELECT $1::text::numeric", t)
            text = await plain.fetchval("SELECT $1::numeric::text", t)
            assert (got.is_nan() and want.is_nan()) or got == want, t
            assert str(got) == text, t
    finally:
        await plain.close()
        await ours.close()
