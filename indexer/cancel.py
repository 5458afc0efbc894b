"""A guard for loops whose awaits may swallow a cancellation.

redis-py's asyncio client can catch a ``CancelledError`` that lands inside its own timeout
block and not raise it again (redis/redis-py#2551, #2028). A loop that keeps calling it (a
heartbeat, a claim loop) then goes on for ever in a task that was told to stop, and the
process never exits. Python keeps count of cancel requests (``Task.cancelling``), so each such
loop asks at the top of every turn and raises what was swallowed.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise CancelledError when the current task was cancelled (and not uncancelled) but is
    still running: something below it swallowed the cancellation."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
