"""The live tail's leadership kept in Postgres, for processes that share no lease board (no
``REDIS_URL``: each has a board of its own, or its ``--workers`` parent's): ``indexer.chains``
records the holder, its term and until when it holds it.

- claim: taken when nobody holds it or the holder's time ran out (the database's clock decides,
  so the hosts' clocks do not matter); the term (``live_fence``) goes up by one, so a commit or
  a repair under the term of an earlier holder is refused (``Fenced``) by the checks that
  every live commit and repair already makes under the chain's lock;
- extend: only by the holder of the current term, else ``LeaseLost``;
- release: the holder steps down (on stop), so another process takes over at once.

A ``LeaderBoard`` (``lease.leadership``) for one chain; ``chain`` and ``group`` arguments are
taken as given (the live tail's). Each call gives up after a third of the TTL (a connection
that hangs counts as a failed renewal, not as a renewal that may still come).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from indexer.lease.board import Lease, LeaseLost, new_token
from indexer.sink.database import Database
from indexer.types import BlockRange


class PostgresLeadership:
    def __init__(self, db: Database, chain_id: int, ttl: float) -> None:
        self.db = db
        self.chain_id = chain_id
        self.ttl = ttl

    async def _one(self, sql: str, *args: Any) -> Any:
        timeout = self.ttl / 3
        async with self.db.pool.acquire(timeout=timeout) as conn:
            return await conn.fetchval(sql, *args, timeout=timeout)

    async def claim(self, chain: str, group: str, candidates: Sequence[BlockRange], size: int,
                    worker: str) -> Lease | None:
        term = await self._one(
            "UPDATE indexer.chains SET live_fence = live_fence + 1, live_holder = $2,"
            " live_expires = now() + make_interval(secs => $3)"
            " WHERE chain_id = $1 AND (live_holder IS NULL OR live_expires IS NULL"
            " OR live_expires < now()) RETURNING live_fence",
            self.chain_id, worker, self.ttl)
        if term is None:
            return None
        return Lease(chain, group, BlockRange(0, 0), new_token(), int(term), worker)

    async def extend(self, lease: Lease) -> None:
        kept = await self._one(
            "UPDATE indexer.chains SET live_expires = now() + make_interval(secs => $4)"
            " WHERE chain_id = $1 AND live_holder = $2 AND live_fence = $3 RETURNING 1",
            self.chain_id, lease.worker, lease.fence, self.ttl)
        if kept is None:
            raise LeaseLost(f"the live tail of {lease.chain} is led by another process now "
                            f"(term {lease.fence} is over)")

    async def release(self, lease: Lease, done: bool) -> None:
        await self._one(
            "UPDATE indexer.chains SET live_holder = NULL, live_expires = NULL"
            " WHERE chain_id = $1 AND live_holder = $2 AND live_fence = $3 RETURNING 1",
            self.chain_id, lease.worker, lease.fence)
