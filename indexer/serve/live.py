"""Subscriptions: a table's rows pushed as they are indexed, and withdrawn when a reorg repair
deletes them.

Each poll of the database (``watch.Watch``) hands every subscription the new frontier and the
repairs since the last one (``Mailbox``: only the newest frontier is kept, and the lowest fork
of each chain, so a slow subscriber holds no backlog). A subscription keeps, per chain, the key
of the last row it pushed; it pushes the rows after that key up to the block the frontier says
the table is complete at (so a block's rows come together, once), in pages of ``PAGE`` rows.
A repair that deleted rows above block F of a chain makes it withdraw (``RETRACT``) the rows
above F it pushed and go back to F: the rows of the new branch are pushed as they are indexed.
The rows pushed are remembered (the newest ``MEMORY`` rows) for that; a reorg deeper than what
is remembered ends the subscription with an error, never with a partial retraction.

Latency: a row is pushed at most one poll interval (default 100 ms) after its block's commit,
plus the time of one query.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from indexer import metrics
from indexer.serve.cursor import Position
from indexer.serve.errors import ApiError
from indexer.serve.frontier import Frontier
from indexer.serve.pages import Condition, PageRequest, page_query
from indexer.serve.resolve import Reader, conditions, fetch
from indexer.serve.rows import Rows, layout
from indexer.serve.tables import Table
from indexer.serve.watch import Repair

PAGE = 1000
MEMORY = 10_000
_LAST = 2**31 - 1  # a log index above any: Position(c, b, _LAST) is the end of block b


class Mailbox:
    """The newest frontier and the repairs not yet taken."""

    def __init__(self) -> None:
        self.frontier: Frontier | None = None
        self.forks: dict[int, int] = {}
        self._ready = asyncio.Event()

    def put(self, frontier: Frontier, repairs: Sequence[Repair]) -> None:
        self.frontier = frontier
        for r in repairs:
            self.forks[r.chain_id] = min(self.forks.get(r.chain_id, r.fork_block), r.fork_block)
        self._ready.set()

    async def get(self) -> tuple[Frontier, dict[int, int]]:
        await self._ready.wait()
        self._ready.clear()
        forks, self.forks = self.forks, {}
        assert self.frontier is not None
        return self.frontier, forks


class Memory:
    """The rows a subscription pushed, newest ``limit``; per chain the highest block of a row
    forgotten."""

    def __init__(self, limit: int = MEMORY) -> None:
        self.limit = limit
        self.rows: deque[tuple[int, int, Any]] = deque()  # (chain, block, record)
        self.floor: dict[int, int] = {}

    def add(self, chain: int, records: list[Any]) -> None:
        for r in records:
            self.rows.append((chain, r[2], r))
        while len(self.rows) > self.limit:
            c, b, _ = self.rows.popleft()
            self.floor[c] = max(self.floor.get(c, b), b)

    def take_above(self, chain: int, fork: int) -> list[Any]:
        """The rows of ``chain`` above ``fork``, forgotten from now; ApiError when some may
        have been forgotten before."""
        if self.floor.get(chain, -2) > fork:
            raise ApiError(f"a reorg repair deleted rows of chain {chain} above block {fork}, "
                           f"below the rows this subscription still remembers (the newest "
                           f"{self.limit:,}): subscribe again", 409, "RETRACTION_TOO_DEEP")
        taken = [r for c, b, r in self.rows if c == chain and b > fork]
        self.rows = deque(x for x in self.rows if not (x[0] == chain and x[1] > fork))
        return taken


def change(kind: str, chain: int, rows: Rows, frontier: Frontier, table: str,
           after_block: int | None = None) -> dict[str, Any]:
    metrics.API_CHANGES.labels(kind=kind.lower()).inc()
    view = frontier.chains.get(chain)
    return {"kind": kind, "chain_id": str(chain), "items": rows,
            "after_block": None if after_block is None else str(after_block),
            "indexed": str(frontier.tables.get(table, {}).get(chain, -1)),
            "safe": str(view.safe if view is not None else -1)}


class Feed:
    """The subscriptions of this process, fed by the watch."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.tables: Mapping[str, Table] = {}
        self.boxes: set[Mailbox] = set()

    def publish(self, frontier: Frontier, repairs: Sequence[Repair]) -> None:
        for box in self.boxes:
            box.put(frontier, repairs)

    def resolver(self, table: Table) -> Callable[..., AsyncIterator[dict[str, Any]]]:
        def subscribe(_root: Any, _info: Any, where: Mapping[str, Any] | None = None,
                      finalized: bool | None = False) -> AsyncIterator[dict[str, Any]]:
            conds = conditions(table, where or {})  # refused here, before the stream starts
            return self.changes(table, conds, bool(finalized))
        return subscribe

    async def changes(self, table: Table, conds: tuple[Condition, ...],
                      finalized: bool) -> AsyncIterator[dict[str, Any]]:
        box = Mailbox()
        self.boxes.add(box)
        try:
            start = await self.reader.watch.first()
            after = {c: Position(c, b, _LAST) for c, b in start.bounds(table.name,
                                                                         finalized).items()}
            memory = Memory()
            columns = layout(table)
            while True:
                frontier, forks = await box.get()
                for chain, fork in sorted(forks.items()):
                    taken = memory.take_above(chain, fork)
                    if chain in after and after[chain] > Position(chain, fork, _LAST):
                        after[chain] = Position(chain, fork, _LAST)
                    if taken:
                        yield change("RETRACT", chain, Rows(columns, taken), frontier,
                                     table.name, fork)
                for chain, hi in sorted(frontier.bounds(table.name, finalized).items()):
                    pos = after.setdefault(chain, Position(chain, -1, _LAST))
                    while pos.block_number <= hi:
                        q = page_query(self.reader.schema, PageRequest(
                            table, conds, False, PAGE, pos, {chain: hi}))
                        records = [] if q is None else await fetch(self.reader, q)
                        if records and records[0]["epoch"] != frontier.epoch:
                            break  # a repair since this frontier: its poll comes next
                        rows = [r for r in records if r[1] is not None][:PAGE]
                        if not rows:
                            break
                        memory.add(chain, rows)
                        last = rows[-1]
                        pos = after[chain] = Position(chain, last[2], last[6])
                        yield change("INSERT", chain, Rows(columns, rows), frontier, table.name)
                        if len(rows) < PAGE:
                            break
        finally:
            self.boxes.discard(box)
