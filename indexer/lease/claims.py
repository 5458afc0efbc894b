"""One process's share of a chain's work: the units it knows are left, the leases it holds, and
the units it holds back for a while (their commit was refused again and again).

Every unit this process works on is leased first on the board (shared by every worker of the
chain when the board is Redis, or the board of the ``--workers`` parent). A unit whose lease is
lost is never committed; a unit that fails goes back to ``pending`` for any worker to take.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable

from indexer import metrics
from indexer.lease.board import Lease, LeaseBoard, LeaseLost
from indexer.plan import Unit, pieces, subtract
from indexer.retry import TRANSIENT
from indexer.types import BlockRange

log = logging.getLogger(__name__)

MAX_CANDIDATES = 32  # candidate ranges sent with one claim


def group_of(unit: Unit) -> str:
    return "main" if unit.factory is None else f"children:{unit.factory}"


def _key(unit: Unit) -> tuple[int, str]:
    return (unit.range.start, unit.factory or "")


class Claims:
    def __init__(
        self, chain: str, board: LeaseBoard, worker: str, partition_blocks: int, ttl: float
    ) -> None:
        self.chain = chain
        self.board = board
        self.worker = worker
        self.span = partition_blocks
        self.ttl = ttl
        self.pending: list[Unit] = []
        self.leases: dict[Unit, Lease] = {}
        self.held: dict[Unit, float] = {}  # held back until this (monotonic) time
        self.lost: set[str] = set()
        self.confirmed: dict[str, float] = {}  # token -> monotonic time the board last agreed
        self.workers_alive = 1

    # -- the plan ------------------------------------------------------------------------------

    def replan(self, units: list[Unit]) -> None:
        """Units left according to Postgres, less what this process holds (leased or held
        back) right now."""
        mine = [*self.leases, *self.held]
        out: list[Unit] = []
        for u in units:
            parts = [u.range]
            for m in mine:
                if m.factory == u.factory:
                    parts = [p for r in parts for p in subtract(r, [m.range])]
            out.extend(Unit(p, u.sources, u.factory) for p in parts)
        out.sort(key=_key)
        self.pending = out

    def give_back(self, unit: Unit) -> None:
        bisect.insort(self.pending, unit, key=_key)

    def hold(self, unit: Unit, until: float) -> None:
        """Keep ``unit``'s blocks out of the plan until ``until`` (monotonic seconds)."""
        self.held[unit] = until
        out: list[Unit] = []
        for u in self.pending:
            if u.factory != unit.factory:
                out.append(u)
                continue
            out.extend(Unit(r, u.sources, u.factory) for r in subtract(u.range, [unit.range]))
        self.pending = out

    def release_due(self, now: float) -> bool:
        """Stop holding back the units whose time came; whether there were any (the plan must
        then be made again to hold them)."""
        due = [u for u, until in self.held.items() if until <= now]
        for u in due:
            del self.held[u]
        return bool(due)

    def next_due(self) -> float | None:
        return min(self.held.values(), default=None)

    def _take(self, rng: BlockRange, factory: str | None) -> Unit:
        """Remove ``rng`` from the pending unit that holds it; the unit for ``rng``."""
        for i, u in enumerate(self.pending):
            if u.factory == factory and u.range.start <= rng.start and rng.end <= u.range.end:
                rest = [Unit(p, u.sources, u.factory) for p in subtract(u.range, [rng])]
                self.pending[i : i + 1] = rest
                return Unit(rng, u.sources, u.factory)
        raise AssertionError(f"leased {rng} is in no pending unit")  # pick() stays in candidates

    # -- leases --------------------------------------------------------------------------------

    async def claim(self, size: Callable[[str | None], int],
                    reach: Callable[[str], int]) -> Unit | None:
        """Lease the first free blocks of the pending units, at most ``size(factory)`` of them
        (None: the main sources). Child units are offered only up to ``reach(factory)``:
        discovery must cover them first."""
        groups: dict[str, list[BlockRange]] = {}
        for u in self.pending:
            g = group_of(u)
            cands = groups.setdefault(g, [])
            if len(cands) >= MAX_CANDIDATES:
                continue
            rng = u.range
            if u.factory is not None:
                limit = reach(u.factory)
                if limit < rng.start:
                    continue
                rng = BlockRange(rng.start, min(rng.end, limit))
            cands.extend(pieces(rng, self.span))
        # The group whose first free blocks are lowest goes first: children whose discovery
        # covers them run beside the main units, not after them all, and the watermark moves.
        for group, cands in sorted(groups.items(), key=lambda g: g[1][0].start if g[1] else 0):
            if not cands:
                continue
            factory = None if group == "main" else group.split(":", 1)[1]
            lease = await self.board.claim(self.chain, group, cands[:MAX_CANDIDATES],
                                           size(factory), self.worker)
            if lease is None:
                continue
            unit = self._take(lease.range, factory)
            self.leases[unit] = lease
            self.confirmed[lease.token] = time.monotonic()
            return unit
        return None

    async def confirm(self, unit: Unit) -> Lease:
        """Just before a commit: the lease must still be ours. Raises LeaseLost when the board
        says it is not, or when the board cannot be reached and the lease may have expired."""
        lease = self.leases[unit]
        if lease.token in self.lost:
            raise LeaseLost(f"lease on {lease.range} of {self.chain} was lost")
        try:
            await self.board.extend(lease)
            self.confirmed[lease.token] = time.monotonic()
        except LeaseLost:
            self.lost.add(lease.token)
            raise
        except TRANSIENT as e:
            age = time.monotonic() - self.confirmed.get(lease.token, 0.0)
            if age > self.ttl * 0.8:
                raise LeaseLost(f"lease board unreachable for {age:.0f}s: {e}") from e
        return lease

    def holds(self, unit: Unit, lease: Lease) -> bool:
        """Whether ``lease`` is still the one held for ``unit`` (not finished, and not followed
        by the lease of an equal unit claimed since)."""
        return self.leases.get(unit) is lease

    async def finish(self, unit: Unit, done: bool) -> None:
        lease = self.leases.pop(unit, None)
        if lease is None:
            return
        self.lost.discard(lease.token)
        self.confirmed.pop(lease.token, None)
        try:
            await self.board.release(lease, done)
        except TRANSIENT as e:
            log.warning("%s: could not release lease %s (it will expire): %s",
                        self.chain, lease.range, e)

    async def keep(self) -> None:
        """One heartbeat: renew every lease held and announce this worker."""
        for unit, lease in list(self.leases.items()):
            if lease.token in self.lost:
                continue
            try:
                await self.board.extend(lease)
                self.confirmed[lease.token] = time.monotonic()
            except LeaseLost:
                self.lost.add(lease.token)
                log.warning("%s: lost the lease on %s; the unit will not be committed",
                            self.chain, unit.range)
            except TRANSIENT as e:
                log.warning("%s: lease board unreachable: %s", self.chain, e)
                return
        try:
            await self.board.heartbeat(self.chain, self.worker)
            self.workers_alive = max(1, len(await self.board.workers(self.chain)))
            metrics.WORKERS.labels(chain=self.chain).set(self.workers_alive)
        except TRANSIENT as e:
            log.warning("%s: lease board unreachable: %s", self.chain, e)
