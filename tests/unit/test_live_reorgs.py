"""The live tail's repair decisions through its seams (a fake chain and sink, a fake clock):
never an undo because of a node that is behind or syncing, a deep fork point looked at twice,
the whole chain undone only when no stored block agrees and the node still serves the chain
indexed, and no repair deeper than the chain's cap."""

from __future__ import annotations

import pytest

from indexer import metrics
from indexer.lease.board import MemoryLeaseBoard
from indexer.live.reorgs import Reorgs, RepairRefused, Undo
from indexer.live.repair import Repairer
from indexer.live.window import Window
from tests.fakes.chain import FakeChain, chain_config
from tests.fakes.clock import FakeClock
from tests.fakes.parts import fake_parts
from tests.fakes.sink import FakeSink, Stored

DEPTH = 5


def follower_at(tip: int, chain: FakeChain, *, first: int = 90) -> tuple[Reorgs, FakeSink,
                                                                          FakeClock]:
    """A live tail that followed ``chain`` from block ``first`` to ``tip``."""
    sink = FakeSink(genesis=chain.block_hash(0))
    clock = FakeClock()
    for n in range(first, tip + 1):
        sink.blocks[n] = Stored(chain.header(n), live=True, checkpoint=False)
    parts = fake_parts(chain, sink, clock, chain_config(finality_depth=DEPTH, start_block=10))
    window = Window(retain=256)
    window.load([chain.header(n) for n in range(tip, first - 1, -1)])
    return Reorgs(parts, window), sink, clock


async def test_a_head_below_the_tip_is_waited_for_and_never_undone_while_syncing():
    chain = FakeChain(head=100)
    reorgs, _, clock = follower_at(100, chain)
    chain.head = 97  # the node went back three blocks, on our chain
    assert await reorgs.at_or_below(chain.header(97)) is None  # first sight: wait
    clock.advance(4.0)
    assert await reorgs.at_or_below(chain.header(97)) is None  # not settled yet (5 s)
    clock.advance(10.0)
    chain.syncing_answer = True
    assert await reorgs.at_or_below(chain.header(97)) is None  # settled, but it is syncing
    chain.syncing_answer = False
    undo = await reorgs.at_or_below(chain.header(97))
    assert undo == Undo(97, chain.header(97), chain.header(97), "the chain got shorter")


async def test_a_node_far_behind_the_tip_never_makes_blocks_go():
    chain = FakeChain(head=100)
    reorgs, _, clock = follower_at(100, chain)
    chain.head = 100 - DEPTH - 1  # more than finality_depth behind: a lagging node
    for _ in range(5):
        assert await reorgs.at_or_below(chain.header(chain.head)) is None
        clock.advance(60.0)


async def test_a_stored_block_that_differs_from_a_syncing_node_is_not_repaired():
    chain = FakeChain(head=100)
    reorgs, _, _ = follower_at(100, chain)
    chain.reorg(98)
    chain.syncing_answer = True
    assert await reorgs.judge(chain.header(100)) is None
    chain.syncing_answer = False
    undo = await reorgs.judge(chain.header(100))
    assert undo is not None and undo.keep == 97 and undo.why == "reorg"


async def test_a_reorg_deeper_than_finality_is_looked_at_twice():
    chain = FakeChain(head=100)
    reorgs, _, clock = follower_at(100, chain)
    chain.reorg(92)  # 9 blocks: deeper than finality_depth 5

    real = chain.get_headers

    async def flapping(numbers):  # after the pause, the node serves blocks 92-94 as before
        if clock.sleeps and chain.branch.get(92):
            chain.branch = {n: 1 for n in range(95, 101)}
        return await real(numbers)

    chain.get_headers = flapping  # type: ignore[method-assign]
    assert await reorgs.judge(chain.header(100)) is None  # the fork point moved: not undone
    assert clock.sleeps == [1.0]  # min(2 s, block time): the second look came after a pause
    chain.get_headers = real  # type: ignore[method-assign]
    chain.reorg(92)
    undo = await reorgs.judge(chain.header(100))  # a steady node: the same fork twice
    assert undo is not None and undo.keep == 91 and len(clock.sleeps) == 2


@pytest.mark.parametrize("stored_from", [90, 11])
async def test_when_no_stored_block_agrees_everything_from_the_first_source_goes(stored_from):
    chain = FakeChain(head=100)
    reorgs, _, _ = follower_at(100, chain, first=stored_from)
    chain.reorg(1)  # every block the indexer stored is on another branch now
    undo = await reorgs.judge(chain.header(100))
    assert undo == Undo(9, None, chain.header(100),
                        "reorg (no stored block agrees with the node)")


async def test_newest_checkpoints_are_compared_while_the_tail_has_no_block():
    chain = FakeChain(head=100)
    sink = FakeSink()
    for n in (20, 40, 60, 80):
        sink.blocks[n] = Stored(chain.header(n), live=False, checkpoint=True)
    parts = fake_parts(chain, sink, FakeClock(), chain_config(finality_depth=0))
    reorgs = Reorgs(parts, Window(retain=256))
    assert await reorgs.verify_stored(chain.header(100)) is None
    chain.reorg(50)
    undo = await reorgs.verify_stored(chain.header(100))
    assert undo is not None and undo.keep == 40  # the highest checkpoint the node agrees with


def refused(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "indexer_reorg_repairs_refused_total", {"chain": "fake", "reason": reason}) or 0.0


@pytest.mark.parametrize("change", ["chain_id", "genesis"])
async def test_a_node_that_serves_another_chain_is_refused_and_nothing_is_undone(change):
    chain = FakeChain(head=100)
    reorgs, sink, _ = follower_at(100, chain, first=11)
    before = refused("other_chain")
    if change == "chain_id":
        chain.chain_id_answer = 8
        chain.reorg(1)
    else:
        chain.reorg(0)  # block 0 too: another chain behind the same chain id
    with pytest.raises(RepairRefused, match="Nothing was deleted") as info:
        await reorgs.judge(chain.header(100))
    assert ("eth_chainId=8" if change == "chain_id" else "block 0") in str(info.value)
    assert refused("other_chain") == before + 1
    assert sink.repairs == [] and len(sink.blocks) == 90


def repairer_at(tip: int, chain: FakeChain, *, first: int, **config: int) -> tuple[
        Repairer, FakeSink, list[int]]:
    sink = FakeSink(genesis=chain.block_hash(0))
    for n in range(first, tip + 1):
        sink.blocks[n] = Stored(chain.header(n), live=True, checkpoint=False)
    parts = fake_parts(chain, sink, FakeClock(),
                       chain_config(finality_depth=DEPTH, start_block=10, **config))
    window = Window(retain=1024)
    window.load([chain.header(n) for n in range(tip, first - 1, -1)])
    replans: list[int] = []
    return Repairer(parts, MemoryLeaseBoard(ttl=30), window, lambda rng: replans.append(1)), sink, \
        replans


async def test_a_repair_deeper_than_the_cap_is_refused_and_deletes_nothing():
    chain = FakeChain(head=400)
    repairer, sink, replans = repairer_at(400, chain, first=11)  # cap: max(10 x 5, 256)
    before = refused("too_deep")
    with pytest.raises(RepairRefused, match=r"blocks 10-400 \(391 blocks\).*max_reorg_depth: 391"):
        await repairer.carry_out(Undo(9, None, chain.header(400), "reorg"), fence=1)
    assert refused("too_deep") == before + 1
    assert sink.repairs == [] and len(sink.blocks) == 390 and replans == []


async def test_a_repair_within_the_cap_is_carried_out():
    chain = FakeChain(head=400)
    repairer, sink, replans = repairer_at(400, chain, first=11, max_reorg_depth=400)
    await repairer.carry_out(Undo(9, None, chain.header(400), "reorg"), fence=1)
    assert [(r.fork_block, r.old_tip) for r in sink.repairs] == [(9, 400)]
    assert sink.blocks == {} and replans == [1]
