"""One holder at a time: a lease of its own group on the lease board, held for as long as the
holder renews it (the live tail of a chain is led this way). The board may be any
``LeaderBoard``: the lease board, or Postgres itself for processes that share no board
(``indexer.sink.leader``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from indexer.cancel import raise_if_cancelled
from indexer.lease.board import Lease, LeaseLost
from indexer.retry import TRANSIENT
from indexer.types import BlockRange

log = logging.getLogger(__name__)


class LeaderBoard(Protocol):
    """What leadership needs of a board (``LeaseBoard`` has it)."""

    async def claim(
        self, chain: str, group: str, candidates: Sequence[BlockRange], size: int, worker: str
    ) -> Lease | None: ...

    async def extend(self, lease: Lease) -> None: ...

    async def release(self, lease: Lease, done: bool) -> None: ...


class Leadership:
    def __init__(self, board: LeaderBoard, chain: str, group: str, worker: str, ttl: float,
                 what: str) -> None:
        self.board = board
        self.chain = chain
        self.group = group
        self.worker = worker
        self.ttl = ttl
        self.what = what  # for the log: "live tail"

    async def acquire(self) -> Lease:
        """Wait until this process holds the lease (one block, 0, of the group)."""
        waiting = False
        while True:
            raise_if_cancelled()
            try:
                lease = await self.board.claim(
                    self.chain, self.group, [BlockRange(0, 0)], 1, self.worker)
            except TRANSIENT as e:
                log.warning("%s: %s: cannot ask who leads (%s: %s); asking again in %.0fs",
                            self.chain, self.what, type(e).__name__, e, self.ttl / 3)
                lease = None
            if lease is not None:
                return lease
            if not waiting:
                log.info("%s: %s: another process leads; standing by", self.chain, self.what)
                waiting = True
            await asyncio.sleep(self.ttl / 3)

    async def keep(self, lease: Lease) -> None:
        """Renew ``lease`` every TTL / 3; raises LeaseLost when it is gone, or when the board
        stayed unreachable for most of a TTL (another process may hold it by then)."""
        renewed = time.monotonic()
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.board.extend(lease)
                renewed = time.monotonic()
            except TRANSIENT as e:
                if time.monotonic() - renewed > self.ttl * 0.8:
                    raise LeaseLost(f"leadership not renewed for {self.ttl * 0.8:.0f}s: "
                                    f"{type(e).__name__}: {e}") from e

    async def release(self, lease: Lease) -> None:
        with contextlib.suppress(LeaseLost, *TRANSIENT):
            await self.board.release(lease, done=False)
