"""What a retry loop may wait out, and how long it waits: one list and one formula for every
loop (the backfill's units, the live tail, the lease board's callers, the RPC client).

A transient failure is one of a dependency that went away for a while (the RPC, Postgres, the
lease board) or a transaction Postgres chose as a deadlock victim: nothing of the work was
committed, so doing it again is safe. An ``RpcError`` says by its type whether it is worth
another try (``retryable``).
"""

from __future__ import annotations

import aiohttp
import asyncpg
import redis.exceptions

from indexer.rpc.errors import RpcError

# The classes a retry loop catches; ``is_transient`` then tells the RPC errors that are not.
TRANSIENT: tuple[type[BaseException], ...] = (
    RpcError,
    # Postgres: the connection or the server went away, or is starting; deadlock victims.
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
    asyncpg.DeadlockDetectedError, asyncpg.SerializationError,
    # The network, and the lease board (Redis, or the --workers parent over HTTP).
    OSError, TimeoutError, aiohttp.ClientError,
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
)


def is_transient(error: BaseException) -> bool:
    """Whether waiting and doing the same work again may succeed."""
    if isinstance(error, RpcError):
        return error.retryable
    return isinstance(error, TRANSIENT)


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before attempt ``attempt + 1`` after ``attempt`` failures in a row
    (``attempt`` >= 1): ``base``, then doubling, at most ``cap``."""
    return min(cap, base * 2 ** min(max(attempt, 1) - 1, 30))
