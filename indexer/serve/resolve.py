"""The resolvers of the query fields: one page of a table, the chains.

A page is cut at the frontier (``frontier.Frontier.bounds``): per chain, the rows up to the
block the table is complete at (and at or below the safe head with ``finalized``). The rows
and the reorg epochs are read in one statement; when the epochs are not those of the frontier
the rows were cut at, a repair ran in between (rows below the cut may be gone), so the
frontier is read again and the page asked again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from indexer.serve import cursor
from indexer.serve.errors import ApiError, bad_input, timed_out, unavailable
from indexer.serve.frontier import Frontier
from indexer.serve.graph import DEFAULT_FIRST
from indexer.serve.limits import MAX_FIRST, MAX_IN
from indexer.serve.pages import Condition, PageQuery, PageRequest, page_query
from indexer.serve.rows import Rows, layout
from indexer.serve.tables import Op, Table
from indexer.serve.values import InputError
from indexer.serve.watch import Watch

log = logging.getLogger(__name__)

ATTEMPTS = 3  # pages asked while repairs keep moving the epochs


@dataclass(frozen=True, slots=True)
class Reader:
    """What the resolvers read with."""

    pool: asyncpg.Pool
    schema: str
    watch: Watch
    timeout: float  # the statement timeout of the pool's connections, seconds


@dataclass(slots=True)
class Request:
    """The context of one GraphQL request: what its answer's extensions say it read at."""

    reader: Reader
    frontier: Frontier | None = None
    version: int = -1  # of the frontier read at (-1: several, or none)
    fields: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def current(self) -> Frontier:
        got = self.reader.watch.frontier
        if got is None:
            raise unavailable("the database has not been read yet; try again")
        if self.frontier is None:
            self.frontier, self.version = got, self.reader.watch.version
        elif got is not self.frontier:
            self.version = -1
        return got

    def extensions(self) -> dict[str, Any]:
        f = self.frontier or self.reader.watch.frontier
        chains = [] if f is None else [
            {"chain": v.name, "chain_id": v.chain_id, "head": v.head, "safe": v.safe,
             "indexed": v.indexed} for v in sorted(f.chains.values(), key=lambda v: v.name)]
        return {"read_at": {"chains": chains, "fields": self.fields}}


def conditions(table: Table, where: Mapping[str, Any]) -> tuple[Condition, ...]:
    out = []
    for key, value in where.items():
        col, op = table.filters[key]
        if op is Op.IN:
            if value is None:
                raise bad_input(f"where.{key}: null is not a list")
            if len(value) > MAX_IN:
                raise bad_input(f"where.{key}: {len(value)} values; at most {MAX_IN}")
        elif value is None and op is not Op.EQ:
            raise bad_input(f"where.{key}: null cannot be compared (use {col.name}: null for "
                            f"rows where it is null)")
        out.append(Condition(col, op, value))
    return tuple(out)


async def fetch(reader: Reader, q: PageQuery) -> list[asyncpg.Record]:
    try:
        return list(await reader.pool.fetch(q.sql, *q.params, timeout=reader.timeout + 2))
    except asyncpg.QueryCanceledError as e:
        raise timed_out(reader.timeout) from e
    except TimeoutError as e:
        raise timed_out(reader.timeout) from e
    except asyncpg.UndefinedTableError as e:  # dropped (indexer prune) since the last poll
        raise ApiError("the table is gone (pruned); the schema follows at the next read of "
                       "the database", 503, "TABLE_GONE") from e
    except asyncpg.DataError as e:  # a value Postgres cannot take (NUL in text, ...)
        raise bad_input(f"a value is not accepted by the database: {e}") from e
    except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError) as e:
        raise unavailable(f"the database cannot be reached: {type(e).__name__}") from e
    except (asyncpg.InsufficientResourcesError, asyncpg.OperatorInterventionError) as e:
        raise unavailable(f"the database cannot answer now: {e}") from e


def page_resolver(table: Table) -> Callable[..., Any]:
    columns = layout(table)

    async def resolve(_root: Any, info: Any, where: Mapping[str, Any] | None = None,
                      order_by: str = "asc", first: int | None = DEFAULT_FIRST,
                      after: str | None = None, finalized: bool | None = False) -> Any:
        req: Request = info.context
        first = DEFAULT_FIRST if first is None else first
        if not 0 <= first <= MAX_FIRST:
            raise bad_input(f"first is {first}; it must be 0 to {MAX_FIRST}")
        descending = order_by == "desc"
        try:
            position = None if after is None else cursor.decode(after, descending)
        except InputError as e:
            raise bad_input(str(e)) from e
        conds = conditions(table, where or {})
        for _ in range(ATTEMPTS):
            frontier = req.current()
            bounds = frontier.bounds(table.name, bool(finalized))
            q = page_query(req.reader.schema, PageRequest(table, conds, descending, first,
                                                          position, bounds))
            records = [] if q is None else await fetch(req.reader, q)
            if q is None or records[0]["epoch"] == frontier.epoch:
                break
            try:
                req.frontier = await req.reader.watch.refresh()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
                raise unavailable(f"the database cannot be read: {type(e).__name__}") from e
            req.version = -1
        else:
            raise ApiError("the tables are being repaired after a reorg; try again", 503,
                           "REORG_IN_PROGRESS")
        req.fields[info.path.key] = [
            {"chain_id": c, "indexed": frontier.tables[table.name][c], "safe":
             frontier.chains[c].safe, "finalized": bool(finalized)}
            for c in sorted(bounds)]
        rows = [r for r in records if r[1] is not None]
        nxt = None
        if first and len(rows) > first:
            last = rows[first - 1]
            nxt = cursor.encode(cursor.Position(last[1], last[2], last[6]), descending)
        return {"items": Rows(columns, rows[:first]), "next": nxt}

    return resolve


async def chains(_root: Any, info: Any) -> list[dict[str, Any]]:
    req: Request = info.context
    frontier = req.current()
    return [{"name": v.name, "chain_id": str(v.chain_id), "head": str(v.head),
             "safe": str(v.safe), "indexed": str(v.indexed), "lag": str(v.lag),
             "finality_depth": v.finality_depth}
            for v in sorted(frontier.chains.values(), key=lambda v: v.name)]
