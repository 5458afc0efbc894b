"""The sink's bookkeeping against a real Postgres."""

from __future__ import annotations

import pytest

from indexer.sink import queries
from indexer.sink.api import Batch, RangeConflict, Writer
from indexer.sink.database import Database
from indexer.sink.postgres import PostgresSink
from indexer.types import BlockRange as R


@pytest.fixture
async def db(database_url: str):
    d = await Database.connect(database_url, "chaindata", max_size=2)
    await d.migrate()
    yield d
    await d.close()


async def _sink(db: Database) -> PostgresSink:
    """The sink of chain 1, with sources A, B and C registered (as ``attach`` registers a chain
    file's sources)."""
    ids = {}
    for key in ("A", "B", "C"):
        ids[key] = await db.pool.fetchval(
            "INSERT INTO indexer.sources (chain_id, key, contract, target, event, layout,"
            " table_name, start_block) VALUES (1, $1, $1, '0x00', 'E()', 'E()', 't', 0)"
            " ON CONFLICT (chain_id, key) DO UPDATE SET key = EXCLUDED.key RETURNING id", key)
    sink = PostgresSink(db, 1, 1_000_000, {})
    sink.bind(ids, {})
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
