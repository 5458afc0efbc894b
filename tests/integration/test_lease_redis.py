"""The Redis lease board against a real Redis: the same guarantees as the in-process board,
under real concurrency and real expiry."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from indexer.lease import LeaseLost, RedisLeaseBoard
from indexer.types import BlockRange as R
from tests.unit.test_lease import forget_done_scenario


@pytest.fixture
async def board(redis_url: str):
    b = RedisLeaseBoard(redis_url, namespace=secrets.token_hex(4), ttl=0.6, done_ttl=0.4)
    yield b, f"t{secrets.token_hex(4)}"
    await b.close()


async def test_concurrent_claims_are_disjoint_and_cover_the_range(board):
    b, chain = board
    leases = await asyncio.gather(*(b.claim(chain, "main", [R(0, 999)], 37, f"w{i}") for i in range(40)))
    got = sorted(lease.range for lease in leases if lease is not None)
    assert got[0].start == 0
    for a, c in zip(got, got[1:], strict=False):
        assert c.start == a.end + 1  # disjoint and contiguous
    assert got[-1].end == min(999, 40 * 37 - 1)
    fences = [lease.fence for lease in leases if lease is not None]
    assert len(set(fences)) == len(fences)


async def test_expired_lease_is_taken_over_and_old_holder_cannot_extend(board):
    b, chain = board
    old = await b.claim(chain, "main", [R(0, 9)], 10, "w1")
    assert await b.claim(chain, "main", [R(0, 9)], 10, "w2") is None
    await asyncio.sleep(0.8)
    new = await b.claim(chain, "main", [R(0, 9)], 10, "w2")
    assert new is not None and new.range == R(0, 9) and new.fence > old.fence
    with pytest.raises(LeaseLost):
        await b.extend(old)


async def test_heartbeats_keep_a_lease(board):
    b, chain = board
    lease = await b.claim(chain, "main", [R(0, 9)], 10, "w1")
    for _ in range(4):
        await asyncio.sleep(0.3)
        await b.extend(lease)
    assert await b.claim(chain, "main", [R(0, 9)], 10, "w2") is None


async def test_done_marker_blocks_then_expires(board):
    b, chain = board
    lease = await b.claim(chain, "main", [R(0, 9)], 10, "w1")
    await b.release(lease, done=True)
    assert await b.claim(chain, "main", [R(0, 9)], 10, "w2") is None
    held = await b.held(chain)
    assert [(h.range, h.done, h.worker) for h in held] == [(R(0, 9), True, "w1")]
    await asyncio.sleep(0.6)
    assert (await b.claim(chain, "main", [R(0, 9)], 10, "w2")).range == R(0, 9)


async def test_flushall_loses_leases_but_fences_resume_above_the_floor(board, redis_url):
    b, chain = board
    first = await b.claim(chain, "main", [R(0, 9)], 10, "w1")
    await b.redis.delete(b.keys.leases(chain, "main"), b.keys.fence(chain))
    await b.raise_fence(chain, first.fence + 100)
    again = await b.claim(chain, "main", [R(0, 9)], 10, "w2")
    assert again.range == R(0, 9) and again.fence == first.fence + 101


async def test_workers_lists_live_heartbeats_only(board):
    b, chain = board
    await b.heartbeat(chain, "host-a:1")
    await b.heartbeat(chain, "host b 2")  # spaces are not allowed in entries: cleaned
    assert await b.workers(chain) == ["host-a:1", "host_b_2"]
    await asyncio.sleep(0.8)
    assert await b.workers(chain) == []


async def test_databases_sharing_a_redis_do_not_see_each_others_leases(redis_url):
    a = RedisLeaseBoard(redis_url, namespace=secrets.token_hex(4), ttl=5)
    b = RedisLeaseBoard(redis_url, namespace=secrets.token_hex(4), ttl=5)
    try:
        la = await a.claim("anvil", "main", [R(0, 9)], 10, "w")
        lb = await b.claim("anvil", "main", [R(0, 9)], 10, "w")
        assert la.range == lb.range == R(0, 9)
        assert await a.forget("anvil") >= 1
        assert (await b.held("anvil"))[0].range == R(0, 9)
    finally:
        await a.forget("anvil")
        await b.forget("anvil")
        await a.close()
        await b.close()


async def test_forget_done_frees_the_blocks_above_a_fork(redis_url):
    b = RedisLeaseBoard(redis_url, namespace=secrets.token_hex(4), ttl=30, done_ttl=60)
    try:
        await forget_done_scenario(b, "anvil")
    finally:
        await b.forget("anvil")
        await b.close()
