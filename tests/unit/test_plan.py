import pytest

from indexer.plan import (
    Source,
    Unit,
    covered_until,
    merge,
    next_size,
    subtract,
    todo,
    watermark,
)
from indexer.types import BlockRange as R


@pytest.mark.parametrize(
    ("ranges", "expected"),
    [
        ([], []),
        ([R(5, 9), R(0, 4)], [R(0, 9)]),
        ([R(0, 3), R(5, 9)], [R(0, 3), R(5, 9)]),
        ([R(0, 10), R(2, 3)], [R(0, 10)]),
        ([R(0, 5), R(3, 8), R(20, 20)], [R(0, 8), R(20, 20)]),
    ],
)
def test_merge_coalesces_overlapping_and_adjacent_ranges(ranges, expected):
    assert merge(ranges) == expected


@pytest.mark.parametrize(
    ("rng", "done", "expected"),
    [
        (R(0, 9), [], [R(0, 9)]),
        (R(0, 9), [R(0, 9)], []),
        (R(0, 9), [R(3, 4)], [R(0, 2), R(5, 9)]),
        (R(0, 9), [R(0, 2), R(8, 20)], [R(3, 7)]),
        (R(5, 9), [R(0, 4), R(10, 12)], [R(5, 9)]),
        (R(5, 9), [R(7, 7), R(6, 6)], [R(5, 5), R(8, 9)]),
    ],
)
def test_subtract_returns_the_blocks_not_done(rng, done, expected):
    assert subtract(rng, done) == expected


def test_covered_until_stops_at_first_gap():
    assert covered_until(0, [R(0, 4), R(6, 9)]) == 4
    assert covered_until(0, []) == -1
    assert covered_until(10, [R(0, 20)]) == 20
    assert covered_until(10, [R(12, 20)]) == 9


def test_watermark_is_the_minimum_over_sources_and_counts_blocks_before_start_as_done():
    sources = [Source("A", 0), Source("B", 100)]
    assert watermark(sources, {"A": [R(0, 150)], "B": [R(100, 120)]}) == 120
    assert watermark(sources, {"A": [R(0, 50)]}) == 50
    assert watermark(sources, {"A": [R(0, 500)]}) == 99


def test_todo_splits_where_the_set_of_sources_changes():
    sources = [Source("A", 0), Source("B", 10)]
    units = todo(sources, {"A": [R(0, 4)]}, 19)
    assert units == [Unit(R(5, 9), ("A",)), Unit(R(10, 19), ("A", "B"))]


def test_todo_skips_done_ranges_per_source():
    sources = [Source("A", 0), Source("B", 0)]
    units = todo(sources, {"A": [R(0, 9)], "B": [R(5, 9)]}, 9)
    assert units == [Unit(R(0, 4), ("B",))]


def test_todo_plans_factory_children_apart():
    sources = [Source("F", 0), Source("Child", 0, factory="F")]
    units = todo(sources, {}, 9)
    assert units == [Unit(R(0, 9), ("F",)), Unit(R(0, 9), ("Child",), factory="F")]


def test_todo_is_empty_when_everything_is_done_or_not_started():
    assert todo([Source("A", 50)], {}, 10) == []
    assert todo([Source("A", 0)], {"A": [R(0, 10)]}, 10) == []


@pytest.mark.parametrize(
    ("current", "logs", "blocks", "expected"),
    [
        (100, 0, 100, 200),  # empty: grow 2x
        (100, 10_000, 100, 100),  # on target
        (100, 100_000, 100, 25),  # too dense: shrink at most 4x
        (100, 5_000, 100, 200),  # sparse: grow at most 2x
        (1, 50_000, 1, 1),  # never below 1
    ],
)
def test_next_size_aims_at_target_logs_per_unit(current, logs, blocks, expected):
    assert next_size(current, logs, blocks, target_logs=10_000) == expected


def test_candidate_pieces_never_cross_a_partition_boundary():
    from indexer.plan import pieces

    assert pieces(R(990, 2500), 1000) == [R(990, 999), R(1000, 1999), R(2000, 2500)]
    assert pieces(R(0, 5), 1000) == [R(0, 5)]


def test_redo_plans_the_done_blocks_of_a_range_with_the_sources_done_there():
    from indexer.plan import redo

    sources = [Source("A", 0), Source("B", 0), Source("P", 0, factory="F")]
    done = {"A": [R(0, 99)], "B": [R(50, 149)], "P": [R(0, 10), R(90, 120)]}
    assert redo(sources, done, R(40, 130)) == [
        Unit(R(40, 49), ("A",)),
        Unit(R(50, 99), ("A", "B")),
        Unit(R(90, 120), ("P",), "F"),
        Unit(R(100, 130), ("B",)),
    ]
    assert redo(sources, {}, R(0, 10)) == []
