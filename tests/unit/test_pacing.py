"""How large the next unit is and whether another may start (pure)."""

from __future__ import annotations

import pytest

from indexer.backfill.pacing import SLOW_START_BLOCKS, Pacer
from indexer.plan import Unit
from indexer.types import BlockRange as R


def pacer(**changes: object) -> Pacer:
    p = Pacer.start(target_logs=1_000, concurrency=4, max_range=100_000, first_range=2_000)
    for k, v in changes.items():
        setattr(p, k, v)
    return p


def unit(start: int, end: int, factory: str | None = None) -> Unit:
    return Unit(R(start, end), ("A",), factory)


@pytest.mark.parametrize(("first_range", "size"), [(2_000, SLOW_START_BLOCKS), (5, 5), (1, 1)])
def test_the_first_unit_is_small(first_range: int, size: int):
    p = Pacer.start(target_logs=1_000, concurrency=4, max_range=100_000,
                    first_range=first_range)
    assert p.size == size


@pytest.mark.parametrize(("state", "may"), [
    ({}, True),  # nothing in flight: one unit always runs
    ({"held": {unit(0, 15): 0}}, False),  # slow start: density unknown, one unit in flight
    ({"held": {unit(0, 15): 0}, "measured": True}, True),  # measured (empty blocks): go
    ({"held": {unit(0, 9): 100}, "density": 10.0, "measured": True, "size": 100}, True),
    # 7,100 in flight + 1,000 expected is over the budget of 2 x 4 x 1,000
    ({"held": {unit(0, 9): 7_100}, "density": 10.0, "measured": True, "size": 100}, False),
    ({"held": {unit(0, 9): 7_000}, "density": 10.0, "measured": True, "size": 100}, True),
    ({"held": {unit(0, 9): 50_000}, "density": 0.0, "measured": True, "size": 100}, False),
])
def test_another_unit_may_start_only_within_the_budget(state: dict, may: bool):
    assert pacer(**state).may_start() is may


def test_a_started_unit_holds_its_estimate_until_its_answer_replaces_it():
    p = pacer(density=5.0, measured=True)
    u = unit(0, 99)
    p.started(u)
    assert p.held[u] == 500
    p.fetched(u, 7_950)
    assert p.held[u] == 7_950 and not p.may_start()
    p.ended(u)
    assert p.held == {} and p.may_start()


def test_at_most_concurrency_units_are_fetched_at_once():
    p = pacer(density=1.0, measured=True, size=10)
    units = [unit(10 * i, 10 * i + 9) for i in range(4)]
    for u in units:
        assert p.may_start()
        p.started(u)
    assert not p.may_start()  # four answers awaited
    p.fetched(units[0], 10)  # one is in memory, being committed: the next may be fetched
    assert p.may_start()
    p.started(unit(40, 49))
    assert not p.may_start()


def test_at_most_twice_concurrency_units_are_in_flight_in_all():
    p = pacer(density=1.0, measured=True, size=10)
    for i in range(8):
        u = unit(10 * i, 10 * i + 9)
        assert p.may_start()
        p.started(u)
        p.fetched(u, 10)  # all answered, all being committed
    assert not p.may_start()
    p.ended(unit(0, 9))
    assert p.may_start()


@pytest.mark.parametrize(("size", "logs", "blocks", "density", "new_size", "new_density"), [
    (16, 0, 16, 0.0, 32, 0.0),  # empty blocks: grow 2x
    (16, 160, 16, 0.0, 32, 10.0),  # first density taken as is; 1,000 logs = 100 blocks, 2x cap
    (100, 1_000, 100, 10.0, 100, 10.0),  # on target
    (100, 8_000, 100, 10.0, 25, 0.7 * 10 + 0.3 * 80),  # 8x denser: shrink at most 4x
])
def test_a_committed_unit_sizes_the_next(size, logs, blocks, density, new_size, new_density):
    p = pacer(size=size, density=density)
    p.committed(unit(0, blocks - 1), logs)
    assert p.size == new_size
    assert p.density == pytest.approx(new_density)
    assert p.measured


def test_children_units_do_not_size_the_main_ones():
    p = pacer(size=64, density=3.0)
    p.committed(unit(0, 999, factory="Factory"), 50_000)
    assert (p.size, p.density, p.measured) == (64, 3.0, False)


def test_children_units_are_sized_by_their_own_density():
    p = pacer(size=2, density=500.0, measured=True)  # dense main sources: 2 blocks a unit
    assert p.size_for("Factory") == 2  # children start at the main size
    p.committed(unit(0, 1, factory="Factory"), 0)
    p.committed(unit(2, 5, factory="Factory"), 0)
    assert p.size_for("Factory") == 8 and p.size_for(None) == 2  # empty: 2x per unit
    assert p.size_for("Other") == 2
    p.started(unit(6, 13, factory="Factory"))
    assert p.held[unit(6, 13, factory="Factory")] == 0  # estimated from the children's density
    p.committed(unit(6, 13, factory="Factory"), 8_000)  # 1,000 a block: shrink at most 4x
    assert p.size_for("Factory") == 2
    assert p.estimate(10, "Factory") == 10_000  # the first density seen is taken as is


@pytest.mark.parametrize(("blocks", "size"), [(800, 100), (9, 1), (1, 1)])
def test_an_answer_too_large_makes_the_next_units_an_eighth(blocks: int, size: int):
    p = pacer(size=blocks)
    assert p.too_large(unit(0, blocks - 1)) == size == p.size


def test_a_children_answer_too_large_shrinks_the_children_only():
    p = pacer(size=800)
    assert p.too_large(unit(0, 799, factory="Factory")) == 100
    assert (p.size_for("Factory"), p.size) == (100, 800)
