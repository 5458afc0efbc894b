"""The live tail through its seams: a fake chain and sink, the in-process lease board; the
follower, tail, window, reorg decisions and repair are the real ones. It follows new heads,
repairs a reorg at the head and ends with the stored rows and blocks of the new branch."""

from __future__ import annotations

import asyncio

from indexer.lease.board import MemoryLeaseBoard
from indexer.live.follower import LiveFollower
from indexer.types import BlockRange
from tests.fakes.chain import TOKEN_SOURCE, FakeChain, chain_config
from tests.fakes.clock import FakeClock
from tests.fakes.parts import fake_parts
from tests.fakes.sink import FakeSink


async def until(check, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def stored_tip(sink: FakeSink) -> int:
    return max((n for n, s in sink.blocks.items() if s.live), default=-1)


async def test_the_live_tail_follows_the_head_and_repairs_a_reorg_at_the_head():
    chain = FakeChain(head=50)
    sink = FakeSink()
    parts = fake_parts(chain, sink, FakeClock(), chain_config(finality_depth=5, start_block=10))
    repairs: list[BlockRange] = []
    follower = LiveFollower(parts, MemoryLeaseBoard(), "w",
                            on_repair=repairs.append)
    task = asyncio.create_task(follower.run())
    try:
        await until(lambda: stored_tip(sink) == 50)
        assert sink.done() == {TOKEN_SOURCE: [BlockRange(46, 50)]}  # from above the safe head
        chain.head = 60
        await until(lambda: stored_tip(sink) == 60)
        chain.reorg(58)  # the last three blocks are replaced
        await until(lambda: sink.repairs and stored_tip(sink) == 60
                    and sink.blocks[60].header.hash == chain.block_hash(60))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [(r.fork_block, r.old_tip, r.deep) for r in sink.repairs] == [(57, 60, False)]
    assert repairs == [BlockRange(58, 60)]  # told the blocks replaced: the backfill plans again
    assert sink.transfers() == chain.rows_expected(60, start=46)
    assert [s.hash if s else None for s in sink.stored(range(46, 61))] == \
        [chain.block_hash(n) for n in range(46, 61)]
    assert sink.overlapping() == []
