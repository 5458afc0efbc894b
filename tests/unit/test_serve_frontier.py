"""What the query API takes as indexed (indexer/serve/frontier.py), the subscriptions' memory
and mailbox (live.py), the answer cache and the rate limit: pure rules."""

from __future__ import annotations

import pytest

from indexer.serve.cache import AnswerCache, key_of
from indexer.serve.errors import ApiError
from indexer.serve.frontier import ChainRow, RangeRow, Scope, Snapshot, SourceRow, compute
from indexer.serve.live import Mailbox, Memory
from indexer.serve.ratelimit import RateLimit
from indexer.serve.watch import Repair

CHAIN = ChainRow(1, "one", 3, 0)
SOURCES = (SourceRow(10, 1, "A:0xa:t", "tok_transfer", 0),
           SourceRow(11, 1, "B:0xb:t", "tok_transfer", 50),
           SourceRow(12, 1, "P:factory:F:s", "pair_swap", 0))


def snap(*ranges: tuple[int, int, int]) -> Snapshot:
    """Range records (coverage, from, to); coverage 1 is {A, P}, 2 is {B}, 3 is {A, B, P}."""
    return Snapshot((CHAIN,), SOURCES, {1: (10, 12), 2: (11,), 3: (10, 11, 12)},
                    tuple(RangeRow(1, c, a, b) for c, a, b in ranges), "1:0")


def test_a_table_is_indexed_up_to_where_every_source_writing_it_is_complete():
    f = compute(snap((1, 0, 99), (2, 50, 79), (1, 100, 120)))
    assert f.tables["tok_transfer"] == {1: 79}  # B stops at 79
    assert f.tables["pair_swap"] == {1: 120}
    view = f.chains[1]
    assert (view.indexed, view.head, view.safe, view.lag) == (79, 120, 117, 41)


def test_a_gap_is_not_indexed_past_even_when_later_blocks_are_done():
    f = compute(snap((3, 0, 40), (3, 60, 90)))
    assert f.tables["pair_swap"] == {1: 40} and f.chains[1].head == 90


def test_a_source_not_started_counts_as_done_before_its_start_block():
    f = compute(snap((1, 0, 30)))
    assert f.tables["tok_transfer"] == {1: 30}  # B starts at 50: nothing of it is missing


def test_finalized_bounds_stop_at_the_safe_head_and_node_heads_raise_it():
    f = compute(snap((3, 0, 100)))
    assert f.bounds("pair_swap", finalized=True) == {1: 97}
    assert f.bounds("pair_swap", finalized=False) == {1: 100}
    assert compute(snap((3, 0, 100)), heads={1: 130}).bounds("pair_swap", True) == {1: 100}
    assert compute(snap((3, 0, 100)), heads={1: 130}).chains[1].safe == 127


def test_the_chain_files_sources_decide_when_given():
    scope = Scope({1: {"A:0xa:t": ("tok_transfer", 0)}})  # B and P are no longer in the file
    f = compute(snap((1, 0, 99), (2, 50, 60)), scope)
    assert f.tables == {"tok_transfer": {1: 99}} and f.chains[1].indexed == 99
    assert compute(snap((1, 0, 99)), Scope({2: {}})).chains == {}  # another chain served


def test_memory_retracts_what_it_pushed_above_the_fork_and_refuses_past_what_it_forgot():
    m = Memory(limit=3)
    m.add(1, [(None, 1, 10), (None, 1, 11), (None, 1, 12)])  # records: (.., chain, block)
    assert [r[2] for r in m.take_above(1, 10)] == [11, 12]
    assert m.take_above(1, 10) == []
    m.add(1, [(None, 1, 13), (None, 1, 14), (None, 1, 15)])  # 10 is forgotten
    with pytest.raises(ApiError, match="subscribe again"):
        m.take_above(1, 9)
    assert [r[2] for r in m.take_above(1, 13)] == [14, 15]


async def test_a_mailbox_keeps_the_newest_frontier_and_the_lowest_fork_per_chain():
    box = Mailbox()
    first, second = compute(snap((3, 0, 10))), compute(snap((3, 0, 20)))
    box.put(first, [Repair(1, 8)])
    box.put(second, [Repair(1, 5), Repair(2, 7)])
    frontier, forks = await box.get()
    assert frontier is second and forks == {1: 5, 2: 7}
    box.put(second, [])
    assert (await box.get())[1] == {}


def test_the_cache_keys_on_the_frontier_and_expires():
    c = AnswerCache(ttl=1.0)
    k = key_of("{ x }", None, {"b": 1, "a": [2]})
    assert k == key_of("{ x }", None, {"a": [2], "b": 1})  # variables in any order
    assert k is not None
    c.put(k, 7, b"answer", now=100.0)
    assert c.get(k, 7, now=100.5) == b"answer"
    assert c.get(k, 8, now=100.5) is None  # another frontier
    assert c.get(k, 7, now=101.5) is None  # too old
    c.clear()
    assert c.get(k, 7, now=100.5) is None


def test_the_rate_limit_refills_per_client():
    r = RateLimit(rate=2, burst=2)
    assert [r.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert r.allow("b", 0.0)
    assert r.allow("a", 0.5) and not r.allow("a", 0.5)
