"""raise_if_cancelled: a loop whose await swallows a cancellation still stops."""

from __future__ import annotations

import asyncio

import pytest

from indexer.cancel import raise_if_cancelled


async def _swallowing_call() -> None:
    """What a client that catches CancelledError inside its own timeout block does."""
    try:
        await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        pass


async def _heartbeat(turns: list[int], guarded: bool) -> None:
    while True:
        if guarded:
            raise_if_cancelled()
        await _swallowing_call()
        turns.append(1)
        if len(turns) > 20:
            return  # the unguarded loop would run for ever: end it for the test


@pytest.mark.parametrize("guarded", [True, False])
async def test_a_loop_over_a_swallowing_call_stops_when_cancelled_only_with_the_guard(
    guarded: bool,
):
    turns: list[int] = []
    task = asyncio.create_task(_heartbeat(turns, guarded))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if guarded:
        assert task.cancelled() and len(turns) <= 1
    else:  # what the guard is there for: the cancel is lost and the loop runs on
        assert not task.cancelled() and len(turns) > 20


async def test_a_cancel_taken_back_by_a_timeout_does_not_count():
    raise_if_cancelled()  # nothing pending: no exception
    timed_out = False
    try:
        async with asyncio.timeout(0.01):  # cancels the task, then takes the cancel back
            await asyncio.sleep(1)
    except TimeoutError:
        timed_out = True
    assert timed_out
    raise_if_cancelled()  # no exception: the timeout's cancel was taken back
