"""Postgres going away, and commits refused again and again, through the loops' seams (a fake
chain, a fake sink that fails on demand, a fake clock): the backfill and the live tail wait for
the database with a bounded back-off and go on, or end the run once it stayed away too long;
a refusal that re-reading what is done does not explain is held back with a growing delay,
counted, and never retried at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from indexer import metrics
from indexer.backfill.loop import (
    CONFLICT_BACKOFF,
    DUPLICATE_BACKOFF,
    GIVE_UP_AFTER,
    Backfill,
    BackfillOptions,
)
from indexer.lease.board import MemoryLeaseBoard
from indexer.lease.claims import Claims
from indexer.live.follower import LiveFollower
from indexer.retry import Patience, backoff, patiently
from indexer.sink.api import (
    Batch,
    DatabaseGone,
    DatabaseUnavailable,
    DuplicateKey,
    RangeConflict,
    SinkError,
)
from indexer.types import BlockRange
from tests.fakes.chain import TOKEN_SOURCE, FakeChain, chain_config
from tests.fakes.clock import FakeClock
from tests.fakes.parts import fake_parts
from tests.fakes.sink import FakeSink


def down(n: int) -> list[BaseException]:
    return [DatabaseUnavailable("committing blocks: ConnectionRefusedError: [Errno 111]")
            for _ in range(n)]


def backfill(chain: FakeChain, sink: FakeSink, clock: FakeClock, *, db_wait: float = 300.0,
             **options: object) -> Backfill:
    parts = fake_parts(chain, sink, clock, db_wait=db_wait)
    board = MemoryLeaseBoard(ttl=30, clock=clock.monotonic)
    claims = Claims("fake", board, "w", parts.chain.partition_blocks, 30)
    opts = BackfillOptions(**{"once": True, **options})  # type: ignore[arg-type]
    return Backfill(parts, claims, "w", opts)


async def run(bf: Backfill) -> None:
    await bf.parts.state.reload(bf.parts.sink)
    await asyncio.wait_for(bf.run(), timeout=30)


def assert_exact(chain: FakeChain, sink: FakeSink, upto: int) -> None:
    assert sink.transfers() == chain.rows_expected(upto)
    assert sink.done() == {TOKEN_SOURCE: [BlockRange(0, upto)]}
    assert sink.overlapping() == []


def refused(reason: str) -> float:
    return metrics.COMMITS_REFUSED.labels(chain="fake", reason=reason)._value.get()


def duplicate() -> DuplicateKey:
    return DuplicateKey("the rows hold two token_transfer logs at block 3, log index 0",
                        "token_transfer", 3, 0, "batch")


# -- the bounded wait ---------------------------------------------------------------------------


async def test_patience_backs_off_with_the_time_down_and_gives_up_at_the_limit():
    clock = FakeClock()
    calls = []

    async def refused_connection() -> int:
        calls.append(clock.monotonic())
        raise ConnectionRefusedError(111, "Connect call failed")

    with pytest.raises(DatabaseGone, match=r"unreachable for 30s .*\(INDEXER_DB_WAIT=30\)"):
        await patiently(Patience(30, clock, "fake"), "reading", refused_connection)
    assert clock.sleeps[:6] == [0.5, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert max(clock.sleeps) <= Patience.CAP
    assert calls[-1] - calls[0] == pytest.approx(30)  # not a second past the limit


async def test_patience_is_reset_by_a_success():
    clock = FakeClock()
    patience = Patience(10, clock, "fake")
    for _ in range(3):
        failures = [OSError("gone")] * 5  # 0.5 + 0.5 + 1 + 2 + 4 s down

        async def flaky(failures: list[OSError] = failures) -> str:
            if failures:
                raise failures.pop()
            return "ok"

        assert await patiently(patience, "reading", flaky) == "ok"
        assert not patience.waiting
    assert clock.now - 1_000_000.0 == 24  # 24 s down in all, never 10 in a row


# -- the backfill -------------------------------------------------------------------------------


def waits(caplog: pytest.LogCaptureFixture, doing: str) -> int:
    return sum(f"Postgres unreachable while {doing}" in r.getMessage() for r in caplog.records)


def refusing(times: int, error: Callable[[], Exception], block: int = 3):  # type: ignore[no-untyped-def]
    """A ``before_commit`` hook refusing the batches holding ``block``, ``times`` times."""
    left = [times]

    async def hook(batch: Batch) -> None:
        if block in batch.range and left[0] > 0:
            left[0] -= 1
            raise error()

    return hook


async def test_the_backfill_waits_for_postgres_and_loses_nothing(caplog):
    chain, clock = FakeChain(head=600), FakeClock()
    sink = FakeSink(fail_next=down(6))
    bf = backfill(chain, sink, clock)
    await run(bf)
    assert waits(caplog, "committing blocks") == 6  # each attempt logged
    assert Patience.BASE in clock.sleeps
    assert not bf.db.waiting
    assert_exact(chain, sink, 600)


async def test_the_backfill_ends_the_run_when_postgres_stays_away():
    chain, clock = FakeChain(head=600), FakeClock()
    sink = FakeSink(fail_next=down(1000))
    bf = backfill(chain, sink, clock, db_wait=20)
    with pytest.raises(DatabaseGone, match=r"unreachable for \d+s while committing blocks .*"
                       r"\(INDEXER_DB_WAIT=20\)"):
        await run(bf)
    assert sink.ranges == []


async def test_reading_what_is_done_waits_for_postgres(caplog):
    chain, clock = FakeChain(head=300), FakeClock()
    sink = FakeSink(failing={"snapshot": down(4)})
    bf = backfill(chain, sink, clock, shared=True)
    await asyncio.wait_for(bf.run(), timeout=30)  # its first reload is the loop's own
    assert waits(caplog, "re-reading what is done") == 4
    assert_exact(chain, sink, 300)


async def test_rows_holding_a_key_twice_are_held_back_counted_and_fetched_again():
    chain, clock = FakeChain(head=300), FakeClock()
    sink = FakeSink(before_commit=refusing(2, duplicate))
    before = refused("duplicate_key")
    bf = backfill(chain, sink, clock)
    await run(bf)
    assert refused("duplicate_key") - before == 2
    assert sum(3 in r for r in chain.calls) == 3  # fetched again each time, after a while
    assert bf.refusals == {}  # forgotten once committed
    assert_exact(chain, sink, 300)


async def test_a_unit_held_back_is_not_claimed_before_its_time():
    chain, clock = FakeChain(head=300), FakeClock()
    refused_at: list[float] = []
    hook = refusing(2, duplicate)

    async def timed(batch: Batch) -> None:
        if 3 in batch.range:
            refused_at.append(clock.monotonic())
        await hook(batch)

    sink = FakeSink(before_commit=timed)
    await run(backfill(chain, sink, clock, concurrency=1))
    base, cap = DUPLICATE_BACKOFF
    gaps = [b - a for a, b in zip(refused_at, refused_at[1:], strict=False)]
    assert len(gaps) == 2
    assert gaps[0] >= backoff(1, base=base, cap=cap)
    assert gaps[1] >= backoff(2, base=base, cap=cap)
    assert_exact(chain, sink, 300)


async def test_a_bounded_run_gives_up_on_blocks_refused_again_and_again():
    chain, clock = FakeChain(head=300), FakeClock()
    sink = FakeSink(before_commit=refusing(1000, duplicate))
    bf = backfill(chain, sink, clock)
    with pytest.raises(SinkError, match=f"refused {GIVE_UP_AFTER} times in a row"):
        await run(bf)
    assert all(3 not in rng for _, rng, _, _ in sink.ranges)


async def test_a_conflict_that_re_reading_does_not_explain_is_not_retried_at_once():
    chain, clock = FakeChain(head=300), FakeClock()
    refused_at: list[float] = []
    hook = refusing(3, lambda: RangeConflict("rows of blocks 0-15 already present"))

    async def timed(batch: Batch) -> None:
        if 3 in batch.range:
            refused_at.append(clock.monotonic())
        await hook(batch)

    sink = FakeSink(before_commit=timed)
    before = refused("conflict")
    await run(backfill(chain, sink, clock, concurrency=1))
    base, cap = CONFLICT_BACKOFF
    gaps = [b - a for a, b in zip(refused_at, refused_at[1:], strict=False)]
    assert [g >= backoff(n, base=base, cap=cap) for n, g in enumerate(gaps, 1)] == [True] * 3
    assert refused("conflict") - before == 3
    assert_exact(chain, sink, 300)


# -- the live tail ------------------------------------------------------------------------------


def stored_tip(sink: FakeSink) -> int:
    return max((n for n, s in sink.blocks.items() if s.live), default=-1)


async def until(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def follower(chain: FakeChain, sink: FakeSink, clock: FakeClock,
             db_wait: float = 300.0) -> LiveFollower:
    parts = fake_parts(chain, sink, clock, chain_config(finality_depth=5, start_block=10),
                       db_wait=db_wait)
    return LiveFollower(parts, MemoryLeaseBoard(), "w", on_repair=lambda: None)


async def test_the_live_tail_waits_for_postgres_and_goes_on():
    chain, clock = FakeChain(head=50), FakeClock()
    sink = FakeSink(failing={"stored_blocks": down(3)}, fail_next=down(3))
    f = follower(chain, sink, clock)
    task = asyncio.create_task(f.run())
    try:
        await until(lambda: stored_tip(sink) == 50)
        chain.head = 55
        await until(lambda: stored_tip(sink) == 55)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [s for s in clock.sleeps if s in (0.5, 1.0, 2.0, 4.0)][:5] == [0.5, 0.5, 1.0, 2.0, 4.0]
    assert sink.transfers() == chain.rows_expected(55, start=46)


async def test_the_live_tail_ends_the_run_when_postgres_stays_away():
    chain, clock = FakeChain(head=50), FakeClock()
    sink = FakeSink(fail_next=down(10_000))
    f = follower(chain, sink, clock, db_wait=15)
    with pytest.raises(DatabaseGone, match="while following the head"):
        await asyncio.wait_for(f.run(), timeout=20)


async def test_the_live_tail_backs_off_from_rows_holding_a_key_twice():
    chain, clock = FakeChain(head=50), FakeClock()
    sink = FakeSink(fail_next=[duplicate(), duplicate()])
    before = refused("duplicate_key")
    f = follower(chain, sink, clock)
    task = asyncio.create_task(f.run())
    try:
        await until(lambda: stored_tip(sink) == 50)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert refused("duplicate_key") - before == 2
    assert 5.0 in clock.sleeps and 10.0 in clock.sleeps
    assert sink.transfers() == chain.rows_expected(50, start=46)
