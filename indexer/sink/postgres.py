"""The Postgres sink of one chain (the ``Sink`` seam): the commit, what is done, the stored
blocks, the repair of a reorg, bound to the chain's id, partition span and table columns.

The live tail's commits go through one connection the sink holds for them (no pool round trip
per block); it is given back on ``release_live`` and dropped after any failure that is not a
refusal of the commit itself.

Postgres gone away (a restart, a failover, a terminated backend: ``retry.DATABASE_DOWN``) comes
out of every method as ``DatabaseUnavailable``, so the loops can tell it from the node's
failures and wait for the database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import asyncpg

from indexer.sink import blocks, queries, sources
from indexer.sink.api import (
    Batch,
    DatabaseUnavailable,
    DuplicateKey,
    Fenced,
    RangeConflict,
    Repair,
    SinkError,
    Snapshot,
    Writer,
)
from indexer.sink.commit import commit
from indexer.sink.database import Database, database_down
from indexer.types import BlockHeader


@contextlib.contextmanager
def _reaching(doing: str) -> Iterator[None]:
    try:
        yield
    except DatabaseUnavailable:
        raise
    except Exception as e:
        if not database_down(e):
            raise
        raise DatabaseUnavailable(f"{doing}: {type(e).__name__}: {e}".rstrip(": ")) from e


class PostgresSink:
    def __init__(self, db: Database, chain_id: int, partition_blocks: int,
                 columns: Mapping[str, Sequence[str]]) -> None:
        self.db = db
        self.chain_id = chain_id
        self.span = partition_blocks
        self.columns = columns
        self._live: asyncpg.Connection | None = None
        self._ids: dict[str, int] = {}  # source key -> id in indexer.sources
        self._coverages: dict[tuple[int, ...], int] = {}

    def bind(self, ids: Mapping[str, int], columns: Mapping[str, Sequence[str]]) -> None:
        """The registered sources (key -> id) and the tables' columns of the chain file in
        force (after a reload, ids of sources no longer in it stay known)."""
        self._ids.update(ids)
        self.columns = {**self.columns, **columns}

    async def _coverage(self, keys: Sequence[str]) -> tuple[int | None, tuple[int, ...]]:
        try:
            members = tuple(sorted({self._ids[k] for k in keys}))
        except KeyError as e:
            raise SinkError(f"chain {self.chain_id}: source {e.args[0]} is not registered") \
                from None
        if not members:
            return None, members
        cov = self._coverages.get(members)
        if cov is None:
            cov = self._coverages[members] = await sources.coverage(self.db, self.chain_id,
                                                                     members)
        return cov, members

    async def commit(self, batch: Batch, writer: Writer) -> None:
        with _reaching(f"committing blocks {batch.range}"):
            await self._commit(batch, writer)

    async def _commit(self, batch: Batch, writer: Writer) -> None:
        cov, members = await self._coverage(batch.sources)
        if writer.live_term is None:
            async with self.db.pool.acquire() as conn:
                await commit(self.db, conn, self.chain_id, self.span, self.columns, batch, writer,
                             cov, members)
            return
        if self._live is None:
            self._live = await self.db.pool.acquire()
        try:
            await commit(self.db, self._live, self.chain_id, self.span, self.columns, batch,
                         writer, cov, members)
        except (RangeConflict, Fenced, DuplicateKey):
            raise  # refused: the connection is fine
        except BaseException:
            await self.release_live()
            raise

    async def release_live(self) -> None:
        conn, self._live = self._live, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self.db.pool.release(conn)

    async def snapshot(self) -> Snapshot:
        with _reaching("reading what is done"):
            return await queries.snapshot(self.db, self.chain_id)

    async def compact(self) -> int:
        with _reaching("merging range records"):
            return await queries.compact_ranges(self.db, self.chain_id)

    async def max_fence(self) -> int:
        with _reaching("reading the highest fence"):
            return await queries.max_fence(self.db, self.chain_id)

    async def stored_blocks(self, *, live: bool, below: int | None = None,
                            limit: int = 256) -> list[BlockHeader]:
        with _reaching("reading stored blocks"):
            return await blocks.stored_blocks(self.db, self.chain_id, live=live, below=below,
                                              limit=limit)

    async def stored_block(self, number: int | None = None) -> BlockHeader | None:
        with _reaching("reading a stored block"):
            return await blocks.stored_block(self.db, self.chain_id, number)

    async def rollback(self, repair: Repair, fence: int) -> dict[str, int]:
        with _reaching(f"repairing above block {repair.fork_block}"):
            return await blocks.rollback(self.db, self.chain_id, repair, fence)

    async def prune_blocks(self, below: int) -> int:
        with _reaching("pruning stored blocks"):
            return await blocks.prune_blocks(self.db, self.chain_id, below)

    async def genesis_hash(self) -> bytes | None:
        with _reaching("reading the stored genesis hash"):
            return await queries.genesis_hash(self.db, self.chain_id)
