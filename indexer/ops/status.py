"""``indexer status``: per chain, what the database says is done (and the node's head, the
workers and leases on a shared board), as text or JSON."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from indexer.chain.coverage import EventProgress, event_progress
from indexer.config import ChainConfig, ConfigError, load_chain, resolve_chain
from indexer.lease.board import LIVE_GROUP, LeaseBoard
from indexer.ops.attach import attach
from indexer.ops.pgembed import connect
from indexer.plan import covered_until, todo, watermark
from indexer.rpc.client import RpcClient
from indexer.rpc.errors import RpcError
from indexer.settings import Settings
from indexer.sink import queries
from indexer.sink.blocks import live_summary
from indexer.sink.database import Database


@dataclass(frozen=True, slots=True)
class LeaseReport:
    group: str
    from_block: int
    to_block: int
    worker: str
    fence: int


@dataclass(frozen=True, slots=True)
class ChainReport:
    """One chain in ``indexer status``."""

    chain: str
    chain_id: int
    head: int | None  # None: the node did not answer (or no chain file)
    indexed: int
    lag: int | None
    ranges_done: int
    pending: int | None  # units left up to the safe head (each may span many blocks)
    workers: list[str] | None  # alive, from the lease board (None: no shared board)
    leased: list[LeaseReport] | None
    tables: dict[str, int]
    live: dict[str, Any]
    events: list[EventProgress]  # per event of each contract of the chain file

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["events"] = [{"contract": e.contract, "event": e.event, "state": e.state,
                        "percent": round(e.percent, 1), "eta_seconds": e.eta_seconds,
                        "sources": e.sources} for e in self.events]
        if self.leased is not None:
            d["leased"] = [{"group": x.group, "from": x.from_block, "to": x.to_block,
                            "worker": x.worker, "fence": x.fence} for x in self.leased]
        return d


async def _head(chain: ChainConfig) -> int | None:
    try:
        async with RpcClient(chain.rpc, chain=chain.name, timeout=5.0, max_retries=1) as rpc:
            return await asyncio.wait_for(rpc.block_number(), 10)
    except (RpcError, TimeoutError, OSError):
        return None


RATE_WINDOW = 300.0  # seconds of recent records the ETA of a source is judged by


async def chain_report(db: Database, chain: ChainConfig | None, chain_id: int, name: str,
                       board: LeaseBoard | None = None) -> ChainReport:
    events: list[EventProgress] = []
    if chain is not None:
        catalog = (await attach(db, chain)).catalog  # upgrades records of an older release
    done = await queries.done_ranges(db, chain_id)
    pending = None
    head = None
    if chain is not None:
        sources = catalog.sources
        indexed = watermark(sources, done)
        head = await _head(chain)
        safe = (head if head is not None else max(indexed, 0)) - chain.finality_depth
        recent = await queries.recent_blocks(db, chain_id, RATE_WINDOW)
        for e in event_progress(catalog, done, safe):
            keys = catalog.keys_of(e.contract, e.event)
            busy = [k for k in keys if recent.get(k)]
            rate = sum(recent[k] for k in busy) / RATE_WINDOW / len(busy) if busy else 0.0
            events.append(e.with_rate(rate))
        if head is not None:
            pending = len(todo(sources, done, head - chain.finality_depth))
    else:
        indexed = min(
            (covered_until(min(r.start for r in rs), rs) for rs in done.values()), default=-1
        )
    workers: list[str] | None = None
    leased: list[LeaseReport] | None = None
    if board is not None:
        workers = await board.workers(name)
        leased = [LeaseReport(h.group, h.range.start, h.range.end, h.worker, h.fence)
                  for h in await board.held(name) if not h.done]
    return ChainReport(
        chain=name, chain_id=chain_id, head=head, indexed=indexed,
        lag=None if head is None else max(0, head - indexed),
        ranges_done=await queries.record_count(db, chain_id), pending=pending,
        workers=workers, leased=leased, tables=await queries.table_counts(db, chain_id),
        live=await live_summary(db, chain_id), events=events,
    )


async def status(chains: Sequence[str] | None, *, as_json: bool, settings: Settings) -> int:
    db = await connect(settings, max_size=2)
    board: LeaseBoard | None = None
    try:
        await db.migrate()
        if settings.redis_url:
            from indexer.lease.redis import RedisLeaseBoard

            board = RedisLeaseBoard(settings.redis_url, namespace=await db.instance_id())
        registered = {r["chain_id"]: r["name"] for r in await db.pool.fetch(
            "SELECT chain_id, name FROM indexer.chains ORDER BY name"
        )}
        rows = []
        if chains:
            for c in chains:
                cfg = load_chain(resolve_chain(c))
                rows.append(await chain_report(db, cfg, cfg.chain_id, cfg.name, board))
        else:
            for cid, name in registered.items():
                try:
                    found: ChainConfig | None = load_chain(resolve_chain(name))
                except ConfigError:
                    found = None
                rows.append(await chain_report(db, found, cid, name, board))
    finally:
        await db.close()
        if board is not None:
            await board.close()
    if as_json:
        sys.stdout.write(orjson.dumps([r.as_json() for r in rows],
                                      option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if not rows:
        print("no chain indexed yet: run `indexer run --chain NAME`")
    for r in rows:
        print_chain(r)
    return 0


def print_chain(r: ChainReport) -> None:
    """The text form of one chain's status."""
    head = "unreachable" if r.head is None else f"{r.head:,}"
    lag = "-" if r.lag is None else f"{r.lag:,} blocks"
    print(f"{r.chain} (chain id {r.chain_id}): head {head}, indexed {r.indexed:,}, "
          f"lag {lag}, {r.ranges_done:,} ranges done"
          + ("" if r.pending is None else f", {r.pending:,} units pending"))
    if r.workers is not None:
        print(f"  workers alive: {', '.join(r.workers) or 'none'}")
        for lease in r.leased or ():
            if lease.group == LIVE_GROUP:
                print(f"  live tail led by {lease.worker} (fence {lease.fence})")
                continue
            print(f"  leased: {lease.group} {lease.from_block}-{lease.to_block} "
                  f"by {lease.worker} (fence {lease.fence})")
    live = r.live
    if live.get("leader"):
        print(f"  live tail led by {live['leader']} (term {live['term']}, recorded in Postgres)")
    if live["tip"] is not None or live["reorgs"]:
        last = live["last_reorg"]
        print(f"  live tail: tip {live['tip'] if live['tip'] is not None else '-'}, "
              f"{live['reorgs']} reorgs repaired ({live['deep_reorgs']} deeper than "
              f"finality_depth)" + ("" if last is None else
              f"; last at {last['at'][:19]}: depth {last['depth']}, fork at block "
              f"{last['fork_block']}, {last['rows_deleted']} rows deleted"))
    for e in r.events:
        print(f"  {e.line()}")
    for table, n in r.tables.items():
        print(f"  {table}: {n:,} rows")
