"""The live tail's pure decisions: links, fork point, what to fetch next."""

from __future__ import annotations

from indexer.live.rules import (
    first_unlinked,
    fork_point,
    live_cut,
    live_holes,
    live_units,
    next_span,
)
from indexer.plan import Source, Unit
from indexer.types import BlockHeader, BlockRange


def chain(start: int, end: int, branch: bytes = b"a", parent_of_first: bytes | None = None) -> list[BlockHeader]:
    """Linked headers ``start..end``; hashes carry the branch name so branches differ."""
    out: list[BlockHeader] = []
    for n in range(start, end + 1):
        parent = out[-1].hash if out else (parent_of_first or _h(n - 1, branch))
        out.append(BlockHeader(n, _h(n, branch), parent, 1000 + n))
    return out


def _h(n: int, branch: bytes) -> bytes:
    return branch * 4 + n.to_bytes(28, "big")


def test_linked_headers_pass_and_the_first_broken_link_is_named():
    main = chain(10, 15)
    assert first_unlinked(main[0], main[1:]) is None
    other = chain(13, 15, b"b", parent_of_first=main[2].hash)  # forks after block 12
    assert first_unlinked(main[2], other) is None
    assert first_unlinked(main[3], other) == 0  # block 13 of b does not follow block 13 of a
    mixed = [*main[1:3], *chain(13, 14, b"b")]  # b's 13 names a parent that is not a's 12
    assert first_unlinked(main[0], mixed) == 2


def test_without_a_previous_block_the_first_header_is_taken_as_it_is():
    assert first_unlinked(None, chain(5, 7)) is None
    assert first_unlinked(None, [chain(5, 5)[0], chain(7, 7)[0]]) == 1  # a gap is no link


def test_fork_point_is_the_highest_block_the_node_agrees_with():
    stored = chain(100, 110)
    node = {h.number: h.hash for h in chain(100, 106)} | {
        h.number: h.hash for h in chain(107, 112, b"b")}
    assert fork_point(stored, node) == 106
    assert fork_point(stored, {n: b"x" * 32 for n in node}) is None
    assert fork_point(stored, {}) is None  # nothing compared, nothing agreed


def test_fork_point_stays_below_an_old_branch_block_under_a_new_one():
    # Checkpoints written at different times: 120 fetched before the switch (old branch),
    # 130 after it (new branch). The fork cannot be 130: block 120 is wrong.
    stored = [BlockHeader(110, _h(110, b"a"), b"", 0), BlockHeader(120, _h(120, b"a"), b"", 0),
              BlockHeader(130, _h(130, b"b"), b"", 0)]
    node = {110: _h(110, b"a"), 120: _h(120, b"b"), 130: _h(130, b"b")}
    assert fork_point(stored, node) == 110


def test_next_span_continues_the_tip_within_reach_else_starts_above_the_safe_head():
    # within reach: from the tip, even below the safe head (after a repair)
    assert next_span(100, 103, 108, most=32, partition=1000, reach=256) == BlockRange(101, 108)
    # far behind (a long stop): the backfill takes up to the safe head
    assert next_span(100, 995, 1000, most=32, partition=10_000, reach=256) == BlockRange(996, 1000)
    assert next_span(None, 95, 100, most=32, partition=1000, reach=256) == BlockRange(96, 100)
    assert next_span(100, 95, 100, most=32, partition=1000, reach=256) is None
    assert next_span(0, 0, 100, most=8, partition=1000, reach=256) == BlockRange(1, 8)
    # a span never crosses a table partition
    assert next_span(995, 990, 1010, most=32, partition=1000, reach=256) == BlockRange(996, 999)


SOURCES = [
    Source("Token", 0),
    Source("Factory", 0),
    Source("Pair", 0, factory="Factory"),
    Source("Late", 500),
]
DISCOVERY = {"Factory": ("Factory",)}  # the factory's one source announces the pairs


def test_live_units_fetch_every_free_source_and_children_once_the_factory_is_complete():
    done = {"Token": [BlockRange(0, 99)], "Factory": [BlockRange(0, 99)], "Pair": [BlockRange(0, 99)]}
    units = live_units(SOURCES, done, BlockRange(100, 101), DISCOVERY)
    assert units == [Unit(BlockRange(100, 101), ("Factory", "Token")),
                     Unit(BlockRange(100, 101), ("Pair",), "Factory")]


def test_live_units_leave_children_out_while_their_factory_is_being_backfilled():
    done = {"Token": [BlockRange(0, 99)], "Factory": [BlockRange(0, 40)]}
    units = live_units(SOURCES, done, BlockRange(100, 100), DISCOVERY)
    assert units == [Unit(BlockRange(100, 100), ("Factory", "Token"))]


def test_live_units_skip_sources_done_already_or_starting_inside_the_span():
    done = {"Token": [BlockRange(0, 100)], "Factory": [BlockRange(0, 99)], "Pair": [BlockRange(0, 99)]}
    units = live_units(SOURCES, done, BlockRange(100, 100), DISCOVERY)
    assert units == [Unit(BlockRange(100, 100), ("Factory",)),
                     Unit(BlockRange(100, 100), ("Pair",), "Factory")]
    done = {s: [BlockRange(0, 498)] for s in ("Token", "Factory", "Pair", "Late")}
    units = live_units(SOURCES, done, BlockRange(499, 501), DISCOVERY)
    assert all("Late" not in u.sources for u in units)


def test_live_holes_fill_children_left_out_up_to_where_the_factory_is_complete():
    done = {"Token": [BlockRange(0, 110)], "Factory": [BlockRange(0, 110)],
            "Pair": [BlockRange(0, 99)], "Late": []}
    holes = live_holes(SOURCES[:3], done, BlockRange(100, 110), DISCOVERY)
    assert holes == [Unit(BlockRange(100, 110), ("Pair",), "Factory")]
    done["Factory"] = [BlockRange(0, 104)]
    holes = live_holes(SOURCES[:3], done, BlockRange(100, 110), DISCOVERY)
    assert Unit(BlockRange(100, 104), ("Pair",), "Factory") in holes
    assert Unit(BlockRange(105, 110), ("Factory",)) in holes
    assert live_holes(SOURCES[:3], {s.name: [BlockRange(0, 110)] for s in SOURCES},
                      BlockRange(100, 110), DISCOVERY) == []


def test_live_cut_ends_where_a_source_changes_state():
    done = {"Token": [BlockRange(0, 99)], "Factory": [BlockRange(0, 103)], "Pair": [BlockRange(0, 99)]}
    # Factory is done over 100-103 already: the span stops before its state changes...
    assert live_cut(SOURCES[:3], done, BlockRange(100, 120)) == BlockRange(100, 103)
    # ...and the next span starts where every source is to do.
    assert live_cut(SOURCES[:3], done, BlockRange(104, 120)) == BlockRange(104, 120)
    # A source done only in the middle of the span: up to the block before it.
    done = {"Token": [BlockRange(0, 99), BlockRange(105, 106)]}
    assert live_cut(SOURCES[:1], done, BlockRange(100, 120)) == BlockRange(100, 104)
    # A source starting inside the span: cut before its first block.
    assert live_cut(SOURCES, {}, BlockRange(490, 520)) == BlockRange(490, 499)
    assert live_cut(SOURCES, {}, BlockRange(500, 520)) == BlockRange(500, 520)
