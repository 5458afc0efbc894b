"""The sink's bookkeeping against a real Postgres."""

from __future__ import annotations

import asyncio
import datetime

import asyncpg
import pytest

from indexer.abi import FIXED_COLUMN_TYPES
from indexer.lease.board import LeaseLost
from indexer.naming import FIXED_COLUMNS, column_names
from indexer.sink import queries, sources
from indexer.sink.api import (
    Batch,
    Child,
    DuplicateKey,
    EventTable,
    Fenced,
    RangeConflict,
    Repair,
    Writer,
)
from indexer.sink.database import Database
from indexer.sink.leader import PostgresLeadership
from indexer.sink.postgres import PostgresSink
from indexer.sink.replace import replace
from indexer.sink.schema import block_partition_name
from indexer.sink.tables import ensure_event_tables, ensure_partitions
from indexer.types import BlockRange as R


@pytest.fixture
async def db(database_url: str):
    d = await Database.connect(database_url, "chaindata", max_size=2)
    await d.migrate()
    yield d
    await d.close()


async def _sink(db: Database, columns: dict | None = None,
                keys: tuple[str, ...] = ("A", "B", "C")) -> PostgresSink:
    """The sink of chain 1, with sources ``keys`` registered (as ``attach`` registers a chain
    file's sources)."""
    ids = {}
    for key in keys:
        ids[key] = await db.pool.fetchval(
            "INSERT INTO indexer.sources (chain_id, key, contract, target, event, layout,"
            " table_name, start_block) VALUES (1, $1, $1, '0x00', 'E()', 'E()', 't', 0)"
            " ON CONFLICT (chain_id, key) DO UPDATE SET key = EXCLUDED.key RETURNING id", key)
    sink = PostgresSink(db, 1, 1_000_000, {})
    sink.bind(ids, columns or {})
    return sink


async def _record(db: Database, source: str | tuple[str, ...], rng: R, fence: int) -> None:
    sources = (source,) if isinstance(source, str) else source
    await (await _sink(db)).commit(Batch(rng, sources, {}), Writer("w", fence=fence))


async def test_compaction_merges_adjacent_records_and_keeps_coverage_and_fences(db):
    for i in range(40):
        await _record(db, "A", R(i * 10, i * 10 + 9), fence=i + 1)
    await _record(db, "A", R(500, 509), fence=99)  # a gap before it: stays apart
    await _record(db, "B", R(0, 9), fence=7)
    assert await queries.compact_ranges(db, 1) == 39
    done = await queries.done_ranges(db, 1)
    assert done == {"A": [R(0, 399), R(500, 509)], "B": [R(0, 9)]}
    assert await queries.max_fence(db, 1) == 99
    with pytest.raises(RangeConflict):
        await _record(db, "A", R(395, 396), fence=100)  # still refused after the merge
    assert await queries.compact_ranges(db, 1) == 0  # nothing left to merge


async def test_a_second_commit_of_any_block_of_a_source_is_refused(db):
    await _record(db, "A", R(0, 99), fence=1)
    for rng in (R(0, 99), R(50, 60), R(99, 120)):
        with pytest.raises(RangeConflict):
            await _record(db, "A", rng, fence=2)
    await _record(db, "B", R(0, 99), fence=3)  # another source may
    await _record(db, "A", R(100, 120), fence=4)


async def test_records_of_different_source_sets_conflict_only_where_they_share_a_source(db):
    await _record(db, ("A", "B"), R(0, 99), fence=1)
    with pytest.raises(RangeConflict, match="of B are already done"):
        await _record(db, ("B", "C"), R(50, 60), fence=2)  # B is done over 50-60 already
    await _record(db, ("C",), R(0, 99), fence=3)  # C is not
    assert await queries.done_ranges(db, 1) == {"A": [R(0, 99)], "B": [R(0, 99)],
                                                "C": [R(0, 99)]}


# -- refusals told apart, stalls ended ------------------------------------------------------

TABLE = EventTable("t_transfer", "T", "Transfer", "Transfer(address,address,uint256)",
                   (*FIXED_COLUMNS, "value"), (*FIXED_COLUMN_TYPES, "numeric(78,0)"))
COLUMNS = {TABLE.name: TABLE.columns}


def _row(block: int, index: int, value: int = 1) -> tuple:
    return (1, block, datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC), b"\x01" * 32, 0,
            index, b"\x02" * 20, value)


@pytest.fixture
async def events(db: Database) -> PostgresSink:
    await ensure_event_tables(db, [TABLE])
    return await _sink(db, COLUMNS, ("T",))


async def test_a_key_twice_in_the_rows_is_a_duplicate_key_not_a_conflict(events: PostgresSink):
    batch = Batch(R(10, 19), ("T",), {TABLE.name: [_row(12, 0), _row(13, 1), _row(12, 0, 7)]})
    with pytest.raises(DuplicateKey, match="two t_transfer logs at block 12, log index 0") as e:
        await events.commit(batch, Writer("w", fence=1))
    assert (e.value.where, e.value.block, e.value.log_index) == ("batch", 12, 0)
    assert await queries.done_ranges(events.db, 1) == {}  # nothing of it went in


async def test_a_row_stored_without_a_record_is_a_duplicate_key(events: PostgresSink):
    async with events.db.pool.acquire() as conn:  # written behind the indexer's back
        await ensure_partitions(events.db, 1, [TABLE.name], R(10, 19), 1_000_000)
        await conn.copy_records_to_table(block_partition_name(TABLE.name, 1, 0),
                                         records=[_row(15, 3)], schema_name="chaindata")
    batch = Batch(R(10, 19), ("T",), {TABLE.name: [_row(15, 3)]})
    with pytest.raises(DuplicateKey, match="no range record covers them") as e:
        await events.commit(batch, Writer("w", fence=1))
    assert e.value.where == "stored"


async def test_rows_another_writer_committed_meanwhile_are_a_range_conflict(events: PostgresSink):
    """Writer A's COPY waits on B's uncommitted keys; B commits; A's COPY is refused by the
    primary key, and B's record explains it."""
    rows = {TABLE.name: [_row(20, 0), _row(21, 0)]}
    other = await _sink(events.db, COLUMNS, ("T",))
    copied = asyncio.Event()
    source = await events.db.pool.fetchval(
        "SELECT id FROM indexer.sources WHERE chain_id = 1 AND key = 'T'")
    coverage = await sources.coverage(events.db, 1, [source])

    async def slow_b() -> None:
        async with events.db.pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(block_partition_name(TABLE.name, 1, 0),
                                             records=rows[TABLE.name], schema_name="chaindata")
            copied.set()
            await asyncio.sleep(0.5)  # A's COPY blocks on these keys meanwhile
            await conn.execute(
                "INSERT INTO indexer.ranges (chain_id, coverage, from_block, to_block) VALUES"
                " (1, $1, 20, 21)", coverage)

    await ensure_partitions(events.db, 1, [TABLE.name], R(20, 21), 1_000_000)
    b = asyncio.create_task(slow_b())
    await copied.wait()
    with pytest.raises(RangeConflict, match="committed meanwhile"):
        await other.commit(Batch(R(20, 21), ("T",), rows), Writer("a", fence=2))
    await b


async def test_a_commit_stalled_in_its_copy_is_ended_and_frees_its_keys(db: Database,
                                                                        database_url: str):
    await ensure_event_tables(db, [TABLE])
    await ensure_partitions(db, 1, [TABLE.name], R(30, 31), 1_000_000)
    stalled = await asyncpg.connect(database_url)
    rows = [_row(30, i) for i in range(20_000)]  # past asyncpg's 512 kB buffer: sent
    gate, sent = asyncio.Event(), asyncio.Event()

    async def frozen():  # type: ignore[no-untyped-def]
        for r in rows:
            yield r
        sent.set()
        await gate.wait()  # the writer stops with its COPY open

    stall = asyncio.create_task(stalled.copy_records_to_table(
        block_partition_name(TABLE.name, 1, 0), records=frozen(), schema_name="chaindata"))
    try:
        await asyncio.wait_for(sent.wait(), 30)
        await asyncio.sleep(0.3)  # the server inserts what it was sent
        sink = await _sink(db, COLUMNS, ("T",))
        commit = asyncio.create_task(sink.commit(Batch(R(30, 31), ("T",), {TABLE.name: rows}),
                                                 Writer("w", fence=1)))
        await asyncio.sleep(1.5)
        assert not commit.done()  # blocked on the stalled writer's keys
        assert await db.end_stalled_copies(60) == []  # not stalled for that long
        ended = await db.end_stalled_copies(1.0)
        assert len(ended) == 1 and ended[0][1] >= 1.0
        await asyncio.wait_for(commit, 10)  # the keys are free: it goes in
        assert await queries.done_ranges(db, 1) == {"T": [R(30, 31)]}
    finally:
        stall.cancel()
        await asyncio.gather(stall, return_exceptions=True)
        stalled.terminate()


async def test_writing_transactions_are_bounded(db: Database):
    async with db.pool.acquire() as conn, conn.transaction():
        await db.bound(conn)
        got = {name: await conn.fetchval(f"SHOW {name}") for name in (
            "statement_timeout", "idle_in_transaction_session_timeout", "tcp_keepalives_idle")}
    assert got["statement_timeout"] == got["idle_in_transaction_session_timeout"] == "2min"
    async with db.pool.acquire() as conn:  # the settings were the transaction's only
        assert await conn.fetchval("SHOW statement_timeout") == "0"
    async with db.pool.acquire() as conn, conn.transaction():
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        await db.bound(conn, redo=True)  # a backfill unit: a crash redoes it whole
        assert await conn.fetchval("SHOW synchronous_commit") == "off"
        assert await conn.fetchval("SHOW statement_timeout") == "2min"


async def test_replacing_done_blocks_is_bounded_as_a_commit_is(database_url: str):
    """``reindex`` and a repair replace rows in a transaction bounded like a commit: waiting on
    a lock that is not let go, it is cancelled after the timeout instead of waiting forever."""
    db = await Database.connect(database_url, "chaindata", max_size=2, tx_timeout=1.0)
    holder = await asyncpg.connect(database_url)
    try:
        await db.migrate()
        await ensure_event_tables(db, [TABLE])
        await ensure_partitions(db, 1, [TABLE.name], R(40, 41), 1_000_000)
        part = block_partition_name(TABLE.name, 1, 0)
        lock = holder.transaction()
        await lock.start()
        await holder.execute(f"LOCK TABLE chaindata.{part} IN ACCESS EXCLUSIVE MODE")
        batch = Batch(R(40, 41), ("T",), {TABLE.name: [_row(40, 0)]})
        async with db.pool.acquire() as conn:
            with pytest.raises(asyncpg.QueryCanceledError, match="statement timeout"):
                await asyncio.wait_for(replace(db, conn, 1, 1_000_000, COLUMNS, batch,
                                               {TABLE.name: [b"\x02" * 20]}, 0), 30)
        await lock.rollback()
    finally:
        await holder.close()
        await db.close()


async def test_the_live_tail_leadership_in_postgres_has_one_holder_and_terms(db: Database):
    await db.register_chain(1, "one", 1_000_000, 3, 1.0)
    a, b = PostgresLeadership(db, 1, 1.0), PostgresLeadership(db, 1, 1.0)
    first = await a.claim("one", "live", [R(0, 0)], 1, "host-a")
    assert first is not None
    assert await b.claim("one", "live", [R(0, 0)], 1, "host-b") is None  # held: stand by
    await a.extend(first)
    sink = await _sink(db, {}, ("S",))
    await sink.commit(Batch(R(10, 10), ("S",), {}),
                      Writer("live:host-a", fence=first.fence, live_term=first.fence))
    await asyncio.sleep(1.2)  # the holder stopped renewing: its time runs out
    second = await b.claim("one", "live", [R(0, 0)], 1, "host-b")
    assert second is not None and second.fence == first.fence + 1  # a new term
    with pytest.raises(LeaseLost):
        await a.extend(first)
    with pytest.raises(Fenced):  # the old term can neither commit nor repair
        await sink.commit(Batch(R(11, 11), ("S",), {}),
                          Writer("live:host-a", fence=first.fence, live_term=first.fence))
    await sink.release_live()
    with pytest.raises(Fenced):
        await sink.rollback(Repair(5, 11, 11, False), first.fence)
    await b.release(second, done=False)  # stepping down: another takes over at once
    third = await a.claim("one", "live", [R(0, 0)], 1, "host-a")
    assert third is not None and third.fence == second.fence + 1


async def test_a_child_announced_twice_keeps_its_first_announcement_whatever_commits_first(db):
    """A registry (or a CREATE2 redeploy) announces one child twice: whichever unit commits
    first, the stored block is the lowest, as every process's memory keeps it."""
    sink = await _sink(db)

    def child(block: int, index: int) -> Child:
        return Child("Pair", b"\x0c" * 20, "Factory", block, index, b"\x01" * 32)

    await sink.commit(Batch(R(40, 59), ("A",), {}, [child(50, 3)]), Writer("w", fence=1))
    await sink.commit(Batch(R(10, 29), ("A",), {}, [child(20, 7)]), Writer("w", fence=2))
    await sink.commit(Batch(R(60, 79), ("A",), {}, [child(70, 0)]), Writer("w", fence=3))
    (row,) = await db.pool.fetch(
        "SELECT block_number, log_index FROM indexer.contracts WHERE chain_id = 1")
    assert (row["block_number"], row["log_index"]) == (20, 7)
    snap = await sink.snapshot()
    assert snap.children == {"Pair": {"0x" + "0c" * 20: 20}}


async def test_range_records_count_events_past_two_to_the_31(db):
    """A source past 2^31 events: its records still merge (events is a bigint), so a start
    that compacts them does not fail."""
    sink = await _sink(db)
    source = await db.pool.fetchval("SELECT id FROM indexer.sources WHERE chain_id = 1 AND key = 'A'")
    coverage = await sources.coverage(db, 1, [source])
    big = 2**31 - 1
    await db.pool.executemany(
        "INSERT INTO indexer.ranges (chain_id, coverage, from_block, to_block, events)"
        " VALUES (1, $1, $2, $3, $4)", [(coverage, i * 10, i * 10 + 9, big) for i in range(20)])
    assert await sink.compact() == 19
    assert await db.pool.fetchval("SELECT events FROM indexer.ranges WHERE chain_id = 1") == 20 * big
    assert await queries.done_ranges(db, 1) == {"A": [R(0, 199)]}


async def test_a_table_with_a_parameter_name_past_63_bytes_is_found_again(db: Database):
    """Postgres cuts identifiers at 63 bytes; the column is named within them, so the table
    made at one start matches its event at the next (it was refused as drifted)."""
    (long,) = column_names(["theAmountOfTokensThatWereTransferredFromTheSenderToTheReceiverInWei"])
    table = EventTable("t_long", "T", "Moved", "Moved(uint256)", (*FIXED_COLUMNS, long),
                       (*FIXED_COLUMN_TYPES, "numeric(78,0)"))
    await ensure_event_tables(db, [table])
    db.partitions.clear()
    await ensure_event_tables(db, [table])  # the next start
    cols = [r["attname"] for r in await db.pool.fetch(
        "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " WHERE c.relname = 't_long' AND a.attnum > 0 ORDER BY a.attnum")]
    assert cols[-1] == long
