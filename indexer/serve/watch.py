"""The serving process's view of the database, polled (the indexer's commit is not touched):
every ``interval`` one read-only snapshot of the chains, sources, range records and reorg
epochs becomes a ``Frontier``; a change of ``indexer.event_tables`` rebuilds the schema; a
repair (a reorg epoch that moved, with its ``indexer.reorgs`` rows) is told to the live feed.

So a committed block is visible to queries and pushed to subscribers at most one interval after
its commit (plus the time of one query).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from indexer.serve.frontier import (
    ChainRow,
    Frontier,
    RangeRow,
    Scope,
    Snapshot,
    SourceRow,
    compute,
)
from indexer.serve.pages import EPOCH

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Repair:
    """Rows of ``chain_id`` above ``fork_block`` were deleted (-1: every row of the chain)."""

    chain_id: int
    fork_block: int


TableRows = tuple[tuple[str, tuple[dict[str, Any], ...]], ...]  # (name, columns) per table
Listener = Callable[[Frontier, Sequence[Repair]], None]


class Watch:
    def __init__(self, pool: asyncpg.Pool, schema: str, scope: Scope | None = None,
                 interval: float = 0.1) -> None:
        self.pool = pool
        self.schema = schema
        self.scope = scope
        self.interval = interval
        self.heads: dict[int, int] = {}  # the nodes' heads (serve --chain), set from outside
        self.frontier: Frontier | None = None
        self.version = 0  # grows whenever ``frontier`` is replaced
        self._last: tuple[Snapshot, tuple[tuple[int, int], ...]] | None = None
        self.tables: TableRows = ()
        self.on_tables: Callable[[TableRows], None] | None = None
        self.listeners: set[Listener] = set()
        self._reorgs_seen: set[tuple[Any, ...]] = set()  # recent indexer.reorgs rows told
        self._refreshing: asyncio.Task[Frontier] | None = None
        self._polled = asyncio.Event()
        self.last_ok: float | None = None  # monotonic time of the last poll that succeeded
        self.last_error = ""

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
                if not self.last_error:
                    log.warning("serve: reading the database failed (%s: %s); trying again "
                                "every %g s", type(e).__name__, e, self.interval)
                self.last_error = f"{type(e).__name__}: {e}"
            await asyncio.sleep(self.interval)

    def unready(self, now: float | None = None) -> str:
        """Why this process should not be sent queries now ("" when it may be)."""
        if self.frontier is None or self.last_ok is None:
            return "the database has not been read yet" + (
                f" ({self.last_error})" if self.last_error else "")
        stale = (time.monotonic() if now is None else now) - self.last_ok
        if stale > max(5.0, 50 * self.interval):
            return f"the database has not answered for {stale:.0f} s ({self.last_error})"
        return ""

    def refresh(self) -> Awaitable[Frontier]:
        """Poll now (callers at the same time share one poll)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._poll())
        return asyncio.shield(self._refreshing)

    async def first(self) -> Frontier:
        """The frontier, once one poll has succeeded."""
        while self.frontier is None:
            await self._polled.wait()
        return self.frontier

    async def _poll(self) -> Frontier:
        old = self.frontier
        snap, tables, reorgs = await self._read()
        heads = tuple(sorted(self.heads.items()))
        if old is not None and self._last == (snap, heads):
            frontier = old  # nothing moved: answers read at it stay good (cache.py)
        else:
            frontier = compute(snap, self.scope, self.heads)
            self._last = (snap, heads)
        repairs = self._repairs(old, frontier, reorgs) if old is not None else []
        self._reorgs_seen = {tuple(r.values()) for r in reorgs}
        if tables != self.tables:
            self.tables = tables
            if self.on_tables is not None:
                self.on_tables(tables)
        if frontier is not old:
            self.version += 1
        self.frontier = frontier
        self.last_ok, self.last_error = time.monotonic(), ""
        self._polled.set()
        for listener in list(self.listeners):
            listener(frontier, repairs)
        return frontier

    def _repairs(self, old: Frontier, new: Frontier,
                 reorgs: Sequence[Mapping[str, Any]]) -> list[Repair]:
        """The repairs between two polls: per chain whose reorg epoch moved, the lowest fork
        of its ``indexer.reorgs`` rows not told before (every row, -1, for a chain reset or
        gone)."""
        repairs = []
        for chain_id, was in old.chains.items():
            now = new.chains.get(chain_id)
            if now is not None and now.reorg_epoch == was.reorg_epoch:
                continue
            rows = [r for r in reorgs if r["chain_id"] == chain_id
                    and tuple(r.values()) not in self._reorgs_seen]
            if now is None or now.reorg_epoch < was.reorg_epoch or not rows:
                repairs.append(Repair(chain_id, -1))
            else:
                repairs.append(Repair(chain_id, min(r["fork_block"] for r in rows)))
        return repairs

    async def _read(self) -> tuple[Snapshot, TableRows, list[Mapping[str, Any]]]:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                 readonly=True):
            chains = await conn.fetch(
                "SELECT chain_id, name, finality_depth, reorg_epoch FROM indexer.chains")
            sources = await conn.fetch(
                "SELECT id, chain_id, key, table_name, start_block FROM indexer.sources")
            coverages = await conn.fetch("SELECT id, members FROM indexer.coverages")
            ranges = await conn.fetch(
                "SELECT chain_id, coverage, from_block, to_block FROM indexer.ranges"
                " WHERE coverage IS NOT NULL")
            epoch = await conn.fetchval(f"SELECT {EPOCH}")
            tables = await conn.fetch(
                "SELECT e.table_name, e.columns::text AS columns FROM indexer.event_tables e"
                " WHERE to_regclass(quote_ident($1) || '.' || quote_ident(e.table_name))"
                " IS NOT NULL ORDER BY e.table_name", self.schema)
            # A repair's row is stamped with its transaction's start, which can be before an
            # earlier poll: the recent rows are read and told apart from those told already.
            reorgs = await conn.fetch(
                "SELECT chain_id, fork_block, old_tip, detected_at FROM indexer.reorgs"
                " WHERE detected_at > now() - interval '10 minutes'")
        snap = Snapshot(
            tuple(ChainRow(r["chain_id"], r["name"], r["finality_depth"], r["reorg_epoch"])
                  for r in chains),
            tuple(SourceRow(r["id"], r["chain_id"], r["key"], r["table_name"], r["start_block"])
                  for r in sources),
            {r["id"]: tuple(r["members"]) for r in coverages},
            tuple(RangeRow(r["chain_id"], r["coverage"], r["from_block"], r["to_block"])
                  for r in ranges),
            str(epoch),
        )
        return snap, _table_rows(tables), [dict(r) for r in reorgs]


def _table_rows(rows: Sequence[Mapping[str, Any]]) -> TableRows:
    return tuple((r["table_name"], tuple(orjson.loads(r["columns"]))) for r in rows)

