"""What the backfill and the live tail hand to the database and get back from it: the values
of a commit (``Batch``: what is written; ``Writer``: who writes it, under which lease or term),
the state read back (``Snapshot``), a repair order (``Repair``), the errors a commit can end
in, and the ``Sink`` seam itself (Postgres in ``postgres.py``; a fake in the unit tests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from indexer.types import BlockHeader, BlockRange

Rows = Mapping[str, Sequence[tuple]]  # table -> COPY records, columns in the table's order


class SinkError(Exception):
    """A problem with the database that retrying will not fix (schema drift, bad config)."""


class RangeConflict(Exception):
    """Another writer already committed (part of) this range; this commit was rolled back."""


class StaleBranch(RangeConflict):
    """The rows were fetched from a branch the chain has left: a repair (reorg) ran since the
    fetch, or a stored block hash differs (``number``: that block). Rolled back."""

    def __init__(self, message: str, number: int | None = None) -> None:
        super().__init__(message)
        self.number = number


class Fenced(Exception):
    """A newer live follower has written: this one lost its leadership and must stop."""


class DuplicateKey(Exception):
    """A commit refused by a primary key for another reason than a second writer: the batch
    holds two rows with the same (block, log index) (``where`` = "batch": the node answered a
    log twice, or two logs under one index), or such a row is stored already without any
    range record over it (``where`` = "stored"). Rolled back; doing it again at once would
    only fail again."""

    def __init__(self, message: str, table: str, block: int | None, log_index: int | None,
                 where: str) -> None:
        super().__init__(message)
        self.table = table
        self.block = block
        self.log_index = log_index
        self.where = where


class DatabaseUnavailable(Exception):
    """Postgres could not be reached, or dropped the connection (a restart, a failover, a
    terminated backend, a full connection table). What the operation wrote rolled back, or,
    for a commit cut off at its very end, went in whole: doing it again is safe either way
    (a second commit of the same blocks is refused as a conflict)."""


class DatabaseGone(SinkError):
    """Postgres stayed unreachable for longer than the run may wait (``INDEXER_DB_WAIT``)."""


@dataclass(frozen=True, slots=True)
class EventTable:
    """What the sink needs to know of an event table."""

    name: str
    contract: str
    event: str
    signature: str
    columns: tuple[str, ...]
    types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Child:
    """A contract discovered by a factory event."""

    contract: str
    address: bytes
    factory: str
    block_number: int
    log_index: int
    tx_hash: bytes


@dataclass(frozen=True, slots=True)
class Batch:
    """One commit: the rows of ``range`` for ``sources``, the children discovered there and
    the block rows to store (``checkpoints``: those of them kept for good)."""

    range: BlockRange
    sources: tuple[str, ...]
    rows: Rows
    children: Sequence[Child] = ()
    blocks: Sequence[BlockHeader] = ()
    checkpoints: frozenset[int] = field(default_factory=frozenset)

    @property
    def events(self) -> int:
        return sum(len(recs) for recs in self.rows.values())


@dataclass(frozen=True, slots=True)
class Writer:
    """Who commits a batch. ``fence``: the lease's fencing token, recorded with the range.
    ``epoch`` (backfill): the reorg epoch read before fetching; the commit is refused
    (StaleBranch) when a repair ran since. ``live_term`` (live tail): its leadership's fence;
    the commit is refused (Fenced) when a newer follower has written; its block rows are the
    live tail's own."""

    worker: str
    fence: int | None = None
    epoch: int | None = None
    live_term: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What is done, read in one database snapshot: the reorg epoch, the blocks each source
    has committed and the children each factory has discovered (address -> block)."""

    epoch: int
    done: Mapping[str, Sequence[BlockRange]]
    children: Mapping[str, Mapping[str, int]]


@dataclass(frozen=True, slots=True)
class Repair:
    """What a repair is told to do and records in ``indexer.reorgs``."""

    fork_block: int  # highest block kept
    old_tip: int
    new_tip: int
    deep: bool
    old_hash: bytes | None = None
    new_hash: bytes | None = None


class Sink(Protocol):
    """The database of one chain, as the backfill and the live tail use it."""

    async def commit(self, batch: Batch, writer: Writer) -> None:
        """Write the batch and record its range done for its sources, atomically; raises
        RangeConflict (or StaleBranch) or Fenced, having written nothing."""

    async def snapshot(self) -> Snapshot: ...

    async def compact(self) -> int:
        """Merge adjacent range records; how many went away."""

    async def max_fence(self) -> int: ...

    async def stored_blocks(self, *, live: bool, below: int | None = None,
                            limit: int = 256) -> list[BlockHeader]:
        """The highest stored blocks under ``below``, highest first: the live tail's
        (``live``) or the backfill's checkpoints."""

    async def stored_block(self, number: int | None = None) -> BlockHeader | None:
        """The stored block at ``number`` (the highest one when None)."""

    async def rollback(self, repair: Repair, fence: int) -> dict[str, int]:
        """Delete everything above ``repair.fork_block``; rows deleted per table. Raises Fenced
        when a newer live follower wrote."""

    async def prune_blocks(self, below: int) -> int:
        """Forget the live tail's block rows under ``below`` (checkpoints stay)."""

    async def release_live(self) -> None:
        """Give back the connection the live tail's commits hold."""

    async def genesis_hash(self) -> bytes | None:
        """The hash of block 0 recorded for the chain (None: not recorded)."""
