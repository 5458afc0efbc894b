"""The backfill loop through its seams: a fake chain, a fake sink, the in-process lease board
and a fake clock; the loop, the unit worker, the pacing, the catalogue and the decoder are the
real ones. Every test ends with the sink holding exactly the chain's rows, each block of the
source recorded once."""

from __future__ import annotations

import asyncio

import pytest

from indexer.backfill.loop import Backfill, BackfillOptions
from indexer.backfill.pacing import SLOW_START_BLOCKS
from indexer.lease.board import MemoryLeaseBoard
from indexer.lease.claims import Claims
from indexer.plan import Unit
from indexer.rpc.errors import AnswerTooLarge, RpcFatal, RpcTimeout
from indexer.sink.api import Batch, Writer
from indexer.types import BlockRange
from tests.fakes.chain import TOKEN_SOURCE, FakeChain
from tests.fakes.clock import FakeClock
from tests.fakes.parts import fake_parts
from tests.fakes.sink import FakeSink


def backfill(chain: FakeChain, sink: FakeSink | None = None, clock: FakeClock | None = None,
             **options: object) -> tuple[Backfill, FakeSink, FakeClock]:
    sink = sink or FakeSink()
    clock = clock or FakeClock()
    parts = fake_parts(chain, sink, clock)
    board = MemoryLeaseBoard(ttl=30, clock=clock.monotonic)
    claims = Claims("fake", board, "w", parts.chain.partition_blocks, 30)
    opts = BackfillOptions(once=True, **options)  # type: ignore[arg-type]
    return Backfill(parts, claims, "w", opts), sink, clock


async def run(bf: Backfill) -> None:
    await bf.parts.state.reload(bf.parts.sink)
    await asyncio.wait_for(bf.run(), timeout=30)


def assert_exact(chain: FakeChain, sink: FakeSink, upto: int) -> None:
    assert sink.transfers() == chain.rows_expected(upto)
    assert sink.done() == {TOKEN_SOURCE: [BlockRange(0, upto)]}
    assert sink.overlapping() == []


async def test_the_first_unit_is_small_and_runs_alone():
    chain = FakeChain(head=2_000)
    seen_while_first: list[BlockRange] = []

    async def hold_the_first(rng: BlockRange) -> None:
        if len(chain.calls) == 1:
            await asyncio.sleep(0.05)  # time for the loop to claim more, if it would
            seen_while_first.extend(chain.calls[1:])

    chain.before_logs = hold_the_first
    bf, sink, _ = backfill(chain, concurrency=4)
    await run(bf)
    assert len(chain.calls[0]) <= SLOW_START_BLOCKS
    assert seen_while_first == []
    assert chain.most_in_flight > 1  # after the slow start, units run side by side
    assert_exact(chain, sink, 2_000)


async def test_unit_sizes_follow_the_density_towards_the_target():
    chain = FakeChain(head=20_000, logs_per_block=10)
    bf, sink, _ = backfill(chain, target_logs=1_000, concurrency=2)
    await run(bf)
    sizes = [len(r) for r in chain.calls]
    assert sizes[0] <= SLOW_START_BLOCKS
    assert max(sizes) <= 100  # 1,000 logs at 10 a block
    assert sizes.count(100) > len(sizes) // 2
    assert_exact(chain, sink, 20_000)


async def test_an_answer_too_large_is_asked_again_in_eighths():
    chain = FakeChain(head=1_000)

    def refuse_long(rng: BlockRange) -> None:
        if len(rng) > 40:
            raise AnswerTooLarge(f"answer for {rng} over the cap")

    chain.before_logs = refuse_long
    bf, sink, _ = backfill(chain, target_logs=100_000, concurrency=1)  # sizes grow past 40
    await run(bf)
    refused = [r for r in chain.calls if len(r) > 40]
    assert refused, "the test never made the loop ask for a large range"
    first = chain.calls.index(refused[0])
    again = next(r for r in chain.calls[first + 1:] if r.start == refused[0].start)
    assert len(again) == len(refused[0]) // 8  # the refused blocks, asked again in eighths
    assert_exact(chain, sink, 1_000)


async def test_transient_failures_back_off_doubling_and_the_unit_is_done_after_them():
    chain = FakeChain(head=500)
    failures = [RpcTimeout("no answer within 30s") for _ in range(4)]

    def fail_four_times(rng: BlockRange) -> None:
        if failures:
            raise failures.pop()

    chain.before_logs = fail_four_times
    bf, sink, clock = backfill(chain)
    await run(bf)
    backoffs = [s for s in clock.sleeps if s >= 1.0 and s not in (10.0,)]  # 10 s: heartbeats
    assert backoffs[:4] == [1.0, 2.0, 4.0, 8.0]
    assert bf.failures == 0  # a success resets the back-off
    assert_exact(chain, sink, 500)


async def test_a_failure_that_retrying_cannot_fix_ends_the_run():
    chain = FakeChain(head=500)

    def fatal(rng: BlockRange) -> None:
        raise RpcFatal("method eth_getLogs not found")

    chain.before_logs = fatal
    bf, sink, _ = backfill(chain)
    with pytest.raises(RpcFatal):
        await run(bf)
    assert sink.ranges == []


async def test_blocks_another_writer_committed_are_skipped_after_a_conflict():
    chain = FakeChain(head=600)
    sink = FakeSink()
    bf, sink, _ = backfill(chain, sink)
    await bf.parts.state.reload(sink)  # the plan is made before the other writer commits

    other = fake_parts(chain, sink)
    rng = BlockRange(5, 9)  # inside the loop's slow-start unit: its commit conflicts
    fetched = await other.fetcher.unit(Unit(rng, (TOKEN_SOURCE,)), {})
    await sink.commit(Batch(rng, (TOKEN_SOURCE,), fetched.rows), Writer("other", fence=1))

    await asyncio.wait_for(bf.run(), timeout=30)
    assert [w for _, _, _, w in sink.ranges].count("other") == 1
    assert_exact(chain, sink, 600)


async def test_rows_fetched_before_a_repair_are_fetched_again():
    chain = FakeChain(head=300)
    sink = FakeSink()
    bf, sink, _ = backfill(chain, sink)
    bumped = []

    def repair_once(rng: BlockRange) -> None:
        if not bumped:
            sink.epoch += 1  # a repair ran in another process while this unit was fetched
            bumped.append(rng)

    chain.before_logs = repair_once
    await run(bf)
    assert chain.calls.count(bumped[0]) == 2  # refused once (stale branch), fetched again
    assert_exact(chain, sink, 300)


async def test_a_lost_database_commit_is_retried_and_nothing_is_recorded_twice():
    chain = FakeChain(head=400)
    sink = FakeSink(fail_next=[ConnectionResetError("connection reset by peer")])
    bf, sink, clock = backfill(chain, sink)
    await run(bf)
    assert 1.0 in clock.sleeps
    assert_exact(chain, sink, 400)


async def test_no_unit_starts_while_the_logs_in_flight_exceed_the_budget():
    chain = FakeChain(head=3_000, logs_per_block=1)
    chain.dense = {1_500: 5_000}  # one block far denser than the budget (4 x 100 logs)
    sink = FakeSink()
    started_during_hold: list[BlockRange] = []

    async def hold_the_dense_commit(batch: Batch) -> None:
        if 1_500 in batch.range:
            before = len(chain.calls)
            await asyncio.sleep(0.05)  # time for the loop to start more, if it would
            started_during_hold.extend(chain.calls[before:])

    sink.before_commit = hold_the_dense_commit
    bf, sink, _ = backfill(chain, sink, target_logs=100, concurrency=4)
    await run(bf)
    assert any(1_500 in r for r in chain.calls)
    assert started_during_hold == []
    assert chain.most_in_flight > 1  # elsewhere, units run side by side
    assert_exact(chain, sink, 3_000)


async def test_a_unit_let_go_early_leaves_the_lease_of_its_blocks_claimed_again_alone():
    """A failed commit lets go of its lease before its back-off; when a replan meanwhile
    plans the same blocks and they are claimed again, the end of the first task must not
    release the second one's lease (it did: the second's commit then found no lease)."""
    chain = FakeChain(head=600)
    bf, sink, clock = backfill(chain, concurrency=2)
    failed: list[BlockRange] = []

    async def fail_the_last_unit_once(batch: Batch) -> None:
        if 600 in batch.range and not failed:
            failed.append(batch.range)
            raise ConnectionResetError("connection reset by peer")

    async def slow_second_fetch(rng: BlockRange) -> None:
        if failed and rng == failed[0]:
            await asyncio.sleep(0.2)  # still before its lease is confirmed when the first ends

    real_sleep = clock.sleep

    async def sleep(seconds: float) -> None:
        await real_sleep(seconds)
        if failed and seconds == 1.0:  # the failed unit's back-off, its lease let go
            bf.replan()  # e.g. a repair: the same blocks are planned and claimed again
            await asyncio.sleep(0.05)

    sink.before_commit = fail_the_last_unit_once
    chain.before_logs = slow_second_fetch
    clock.sleep = sleep  # type: ignore[method-assign]
    await run(bf)
    assert chain.calls.count(failed[0]) >= 2  # claimed again while the first task was alive
    assert_exact(chain, sink, 600)
