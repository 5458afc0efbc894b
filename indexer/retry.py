"""What a retry loop may wait out, and how long it waits: one list and one formula for every
loop (the backfill's units, the live tail, the lease board's callers, the RPC client), and the
bounded wait for Postgres.

A transient failure is one of a dependency that went away for a while (the RPC, Postgres, the
lease board), a statement Postgres cancelled (a timeout, a terminated stall) or a transaction
it chose as a deadlock victim: nothing of the work was committed, so doing it again is safe.
An ``RpcError`` says by its type whether it is worth another try (``retryable``).

Postgres gone (``DATABASE_DOWN``, or ``DatabaseUnavailable`` from the sink) is waited for with
a back-off, each attempt logged, for at most the run's ``INDEXER_DB_WAIT`` seconds in a row
(``Patience``); past that the run ends with ``DatabaseGone`` (exit 1).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import asyncpg
import redis.exceptions

from indexer.clock import Clock
from indexer.rpc.errors import RpcError
from indexer.sink.api import DatabaseGone
from indexer.sink.database import DATABASE_DOWN, database_down

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["DATABASE_DOWN", "ROLLED_BACK", "TRANSIENT", "Patience", "backoff", "database_down", "is_transient",
           "patiently"]

# Postgres cancelled a statement (statement_timeout, a stall ended by another worker) or chose
# a victim: the transaction rolled back, nothing of it went in, and it may be done again.
ROLLED_BACK: tuple[type[Exception], ...] = (
    asyncpg.QueryCanceledError, asyncpg.IdleInTransactionSessionTimeoutError,
    asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError, asyncpg.SerializationError,
)

# The classes a retry loop catches; ``is_transient`` then tells the ones that are not.
TRANSIENT: tuple[type[BaseException], ...] = (
    RpcError,
    *DATABASE_DOWN,
    *ROLLED_BACK,
    # The network, and the lease board (Redis, or the --workers parent over HTTP).
    aiohttp.ClientError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
)


def is_transient(error: BaseException) -> bool:
    """Whether waiting and doing the same work again may succeed."""
    if isinstance(error, RpcError):
        return error.retryable
    if isinstance(error, asyncpg.ProtocolViolationError):
        return False  # e.g. a pooler refusing a startup parameter: a setup problem
    return isinstance(error, TRANSIENT)


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before attempt ``attempt + 1`` after ``attempt`` failures in a row
    (``attempt`` >= 1): ``base``, then doubling, at most ``cap``."""
    return min(cap, base * 2 ** min(max(attempt, 1) - 1, 30))


class Patience:
    """How long one loop has been waiting for Postgres, in a row: each failure logs what was
    being done and how long the loop now waits (0.5 s doubling to 10 s); once Postgres has
    been unreachable for ``limit`` seconds, ``DatabaseGone``. Any success resets it."""

    BASE = 0.5
    CAP = 10.0

    def __init__(self, limit: float, clock: Clock, name: str) -> None:
        self.limit = limit
        self.clock = clock
        self.name = name  # for the log: the chain, or "startup"
        self.since: float | None = None
        self.attempts = 0

    @property
    def waiting(self) -> bool:
        return self.since is not None

    def ok(self) -> None:
        if self.since is not None:
            log.info("%s: Postgres is back after %.1fs", self.name,
                     self.clock.monotonic() - self.since)
        self.since = None
        self.attempts = 0

    async def wait(self, error: BaseException, doing: str) -> None:
        """Postgres failed while ``doing``: sleep before the next attempt, or raise
        DatabaseGone when it has been unreachable for too long."""
        now = self.clock.monotonic()
        if self.since is None:
            self.since = now
        down = now - self.since
        what = f"{type(error).__name__}: {error}".rstrip(": ")
        if down >= self.limit:
            raise DatabaseGone(
                f"{self.name}: Postgres unreachable for {down:.0f}s while {doing}, giving up "
                f"(INDEXER_DB_WAIT={self.limit:g}); last error: {what}") from error
        self.attempts += 1
        # Waiters of one loop share ``since``: the delay grows with the time down, not with
        # how many of them failed at once.
        delay = min(self.CAP, max(self.BASE, down), self.limit - down)
        log.warning("%s: Postgres unreachable while %s (%s); attempt %d, retrying in %.1fs "
                    "(down for %.0fs, giving up after %.0fs)", self.name, doing, what,
                    self.attempts, delay, down, self.limit)
        await self.clock.sleep(delay)


async def patiently(patience: Patience, doing: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` until it gets through, waiting for Postgres between attempts (see
    ``Patience``); errors that are not Postgres being unreachable are raised at once."""
    while True:
        try:
            result = await call()
        except DATABASE_DOWN as e:
            if not database_down(e):
                raise
            await patience.wait(e, doing)
            continue
        patience.ok()
        return result
