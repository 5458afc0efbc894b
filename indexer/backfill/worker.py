"""The work on one backfill unit, under its lease: fetch and decode it, confirm the lease,
commit its rows with its range record and checkpoint. The result is an ``Outcome`` value the
loop applies; nothing here changes what is done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from indexer import faults
from indexer.chain.fetch import Fetched
from indexer.chain.parts import ChainParts
from indexer.lease.board import LeaseLost
from indexer.lease.claims import Claims
from indexer.plan import Unit
from indexer.retry import TRANSIENT, is_transient
from indexer.rpc.errors import AnswerTooLarge
from indexer.sink.api import Batch, DuplicateKey, RangeConflict, StaleBranch, Writer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Committed:
    """The unit's rows and record are in."""

    result: Fetched
    write_seconds: float


@dataclass(frozen=True, slots=True)
class Conflict:
    """Not committed: another writer had committed some of it, or a repair ran since it was
    fetched (``stale``). What is done must be re-read before planning again."""

    reason: str
    stale: bool = False


@dataclass(frozen=True, slots=True)
class GiveBack:
    """Not committed: the lease was lost. Another worker (or this one, later) does it."""

    reason: str


@dataclass(frozen=True, slots=True)
class Shrink:
    """Not committed: the answer was too large to read. Ask again with fewer blocks."""

    reason: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Not committed: a transient failure. Do it again after a back-off."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class Refused:
    """Not committed: the database refused the rows themselves (``DuplicateKey``: a key twice
    in the batch, or one stored without a record). Not a race: fetch it again only after a
    while, and say so."""

    error: DuplicateKey


Outcome = Committed | Conflict | GiveBack | Shrink | Retry | Refused


class UnitWorker:
    def __init__(self, parts: ChainParts, claims: Claims, worker: str,
                 fetched: Callable[[Unit, int], None]) -> None:
        self.parts = parts
        self.claims = claims
        self.worker = worker
        self.fetched = fetched  # told the size of each answer as soon as it is in memory

    async def run(self, unit: Unit) -> Outcome:
        """Fetch, decode and commit ``unit``; what came of it."""
        p = self.parts
        epoch = p.state.epoch  # a repair after this point makes the commit refuse these rows
        try:
            result = await p.fetcher.unit(unit, p.state.children)
            self.fetched(unit, result.logs)
            await faults.point("before_commit")
            lease = await self.claims.confirm(unit)
            # The last block's hash, kept as a checkpoint: a later reorg this deep is still
            # found (every unit's, factory children's too: their rows may come from another
            # fetch, so another branch, than the main sources' of the same blocks).
            tip = result.headers.get(unit.range.end)
            batch = Batch(unit.range, unit.sources, result.rows, result.children,
                          blocks=[tip] if tip is not None else [],
                          checkpoints=frozenset([tip.number]) if tip is not None else frozenset())
            t0 = time.perf_counter()
            await p.sink.commit(batch, Writer(self.worker, fence=lease.fence, epoch=epoch))
        except AnswerTooLarge as e:
            return Shrink(e.detail)
        except LeaseLost as e:
            return GiveBack(str(e))
        except DuplicateKey as e:
            return Refused(e)
        except StaleBranch as e:
            return Conflict(str(e), stale=True)
        except RangeConflict as e:  # a race with another worker or the live tail: no harm
            return Conflict(str(e))
        except TRANSIENT as e:
            if not is_transient(e):
                raise
            return Retry(e)
        return Committed(result, time.perf_counter() - t0)
