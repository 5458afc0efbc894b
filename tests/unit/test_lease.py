import pytest

from indexer.lease import LeaseLost, MemoryLeaseBoard, pick
from indexer.lease.http import HttpLeaseBoard, LeaseServer
from indexer.types import BlockRange as R


@pytest.mark.parametrize(
    ("busy", "candidates", "size", "expected"),
    [
        ([], [R(0, 99)], 10, R(0, 9)),
        ([(0, 9)], [R(0, 99)], 10, R(10, 19)),
        ([(5, 9)], [R(0, 99)], 10, R(0, 4)),  # stops before the next busy run
        ([(0, 4), (5, 20)], [R(0, 99)], 10, R(21, 30)),
        ([(0, 99)], [R(0, 99), R(200, 300)], 10, R(200, 209)),
        ([(0, 99)], [R(0, 99)], 10, None),
        ([(50, 60)], [R(55, 58)], 10, None),
        ([], [R(7, 7)], 10, R(7, 7)),
        ([(3, 3)], [R(0, 9)], 100, R(0, 2)),
    ],
)
def test_pick_takes_the_first_free_blocks_of_the_candidates(busy, candidates, size, expected):
    assert pick(busy, candidates, size) == expected


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def board():
    clock = Clock()
    return MemoryLeaseBoard(ttl=10, done_ttl=5, clock=clock), clock


async def test_two_claims_never_overlap_and_fences_grow(board):
    b, _ = board
    first = await b.claim("c", "main", [R(0, 99)], 30, "w1")
    second = await b.claim("c", "main", [R(0, 99)], 30, "w2")
    assert first.range == R(0, 29) and second.range == R(30, 59)
    assert second.fence > first.fence


async def test_groups_are_independent(board):
    b, _ = board
    a = await b.claim("c", "main", [R(0, 9)], 10, "w1")
    c = await b.claim("c", "children:F", [R(0, 9)], 10, "w1")
    assert a.range == c.range == R(0, 9)


async def test_an_expired_lease_is_taken_over_and_its_holder_loses_it(board):
    b, clock = board
    old = await b.claim("c", "main", [R(0, 9)], 10, "w1")
    clock.now += 11
    new = await b.claim("c", "main", [R(0, 9)], 10, "w2")
    assert new.range == R(0, 9) and new.fence > old.fence
    with pytest.raises(LeaseLost):
        await b.extend(old)
    await b.extend(new)


async def test_extend_keeps_a_lease_alive_past_its_first_ttl(board):
    b, clock = board
    lease = await b.claim("c", "main", [R(0, 9)], 10, "w1")
    for _ in range(5):
        clock.now += 6
        await b.extend(lease)
    assert await b.claim("c", "main", [R(0, 9)], 10, "w2") is None


async def test_release_done_marks_the_range_for_a_while_then_frees_it(board):
    b, clock = board
    lease = await b.claim("c", "main", [R(0, 9)], 10, "w1")
    await b.release(lease, done=True)
    assert await b.claim("c", "main", [R(0, 9)], 10, "w2") is None
    with pytest.raises(LeaseLost):
        await b.extend(lease)
    clock.now += 6
    assert (await b.claim("c", "main", [R(0, 9)], 10, "w2")).range == R(0, 9)


async def test_release_not_done_frees_the_range_at_once(board):
    b, _ = board
    lease = await b.claim("c", "main", [R(0, 9)], 10, "w1")
    await b.release(lease, done=False)
    assert (await b.claim("c", "main", [R(0, 9)], 10, "w2")).range == R(0, 9)


async def test_raise_fence_keeps_fences_growing_after_a_reset(board):
    b, _ = board
    await b.raise_fence("c", 500)
    lease = await b.claim("c", "main", [R(0, 9)], 10, "w1")
    assert lease.fence == 501


async def test_workers_alive_are_those_with_a_recent_heartbeat(board):
    b, clock = board
    await b.heartbeat("c", "w1")
    clock.now += 6
    await b.heartbeat("c", "w2")
    assert await b.workers("c") == ["w1", "w2"]
    clock.now += 6
    assert await b.workers("c") == ["w2"]


async def forget_done_scenario(b, chain: str) -> None:
    """Done markers reaching above the fork go; those under it, held leases and other groups'
    markers under it stay."""
    for _ in range(2):
        await b.release(await b.claim(chain, "main", [R(0, 99)], 10, "w1"), done=True)
    held = await b.claim(chain, "main", [R(0, 99)], 10, "w1")
    await b.release(await b.claim(chain, "children:F", [R(0, 9)], 10, "w1"), done=True)
    assert held.range == R(20, 29)
    assert await b.forget_done(chain, 14) == 1  # main 10-19 only
    assert (await b.claim(chain, "main", [R(0, 99)], 10, "w2")).range == R(10, 19)
    assert await b.claim(chain, "children:F", [R(0, 9)], 10, "w2") is None
    await b.extend(held)  # a lease being worked on is not touched
    assert [(h.group, h.range, h.done) for h in await b.held(chain)] == [
        ("children:F", R(0, 9), True), ("main", R(0, 9), True), ("main", R(10, 19), False),
        ("main", R(20, 29), False)]


async def test_forget_done_frees_the_blocks_above_a_fork(board):
    b, _ = board
    await forget_done_scenario(b, "c")


async def test_forget_done_through_the_workers_board_of_one_host():
    server = LeaseServer(MemoryLeaseBoard(ttl=10, done_ttl=60))
    board = HttpLeaseBoard(await server.start())
    try:
        await forget_done_scenario(board, "c")
    finally:
        await board.close()
        await server.stop()
