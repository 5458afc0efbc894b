"""One chain's run, composed: build its catalogue, state, sink and the rest, check the node and
the database, then start the backfill and the live tail side by side (and the head watch).
Neither loop knows the other; the live tail tells the backfill to plan again through the one
callback wired here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from indexer import metrics
from indexer.backfill.loop import Backfill, BackfillOptions
from indexer.chain.catalog import Catalog
from indexer.chain.fetch import Fetcher
from indexer.chain.head import HeadWatch
from indexer.chain.parts import ChainParts
from indexer.chain.progress import Progress
from indexer.chain.state import ChainState
from indexer.clock import SYSTEM, Clock
from indexer.lease.board import LIVE_TTL, LeaseBoard
from indexer.lease.claims import Claims
from indexer.live.follower import LiveFollower
from indexer.ops.readiness import ChainStatus, LiveStatus
from indexer.retry import Patience, patiently
from indexer.rpc.client import RpcClient
from indexer.sink.database import Database
from indexer.sink.leader import PostgresLeadership
from indexer.sink.postgres import PostgresSink
from indexer.sink.tables import ensure_event_tables


@dataclass(frozen=True, slots=True)
class RunOptions:
    backfill: BackfillOptions
    worker: str = "local"
    follow: bool = True  # run the live tail (not with --once / --until)
    live_trace: str | None = None
    leader_in_postgres: bool = False  # no board shared by every process: Postgres decides
    db_wait: float = 300.0  # seconds Postgres may stay unreachable (INDEXER_DB_WAIT)


class ChainRun:
    def __init__(self, catalog: Catalog, db: Database, rpc: RpcClient, board: LeaseBoard,
                 options: RunOptions, on_progress: Callable[[Progress], None] | None = None,
                 clock: Clock = SYSTEM) -> None:
        chain = catalog.chain
        self.db = db
        self.rpc = rpc
        self.board = board
        self.options = options
        progress = Progress(chain.name, chain.finality_depth, on_change=on_progress)
        sink = PostgresSink(db, chain.chain_id, chain.partition_blocks, catalog.columns)
        self.parts = ChainParts(
            catalog=catalog, state=ChainState(catalog.sources), source=rpc, sink=sink,
            fetcher=Fetcher(catalog, rpc), head=HeadWatch(rpc, progress, clock),
            progress=progress, clock=clock, db_wait=options.db_wait,
        )
        bf = options.backfill
        self.claims = Claims(chain.name, board, options.worker, chain.partition_blocks,
                             bf.lease_ttl)
        self.backfill = Backfill(self.parts, self.claims, options.worker, bf)
        self.live: LiveFollower | None = None
        if options.follow:
            leader = (PostgresLeadership(db, chain.chain_id, LIVE_TTL)
                      if options.leader_in_postgres else None)
            self.live = LiveFollower(self.parts, board, options.worker,
                                     on_repair=self.backfill.replan, trace=options.live_trace,
                                     leader=leader)

    @property
    def progress(self) -> Progress:
        return self.parts.progress

    async def prepare(self) -> None:
        """The node is the chain of the file; the database knows the chain and its tables;
        what is done is read."""
        p = self.parts
        c = p.chain
        remote = await self.rpc.chain_id()
        if remote != c.chain_id:
            raise SystemExit(
                f"{c.source}: chain_id is {c.chain_id} but the RPC answers eth_chainId={remote}; "
                f"the chain file points at the wrong network"
            )
        genesis = await self.rpc.get_header(0)
        # Postgres may be restarting: every step waits for it (INDEXER_DB_WAIT at most).
        patience = Patience(p.db_wait, p.clock, c.name)
        await patiently(patience, "registering the chain", lambda: self.db.register_chain(
            c.chain_id, c.name, c.partition_blocks, c.finality_depth, c.block_time,
            genesis.hash if genesis is not None else None,
        ))
        await patiently(patience, "checking the event tables",
                        lambda: ensure_event_tables(self.db, p.catalog.tables))
        if not self.options.backfill.shared:  # alone: tidy the records of earlier runs
            await patiently(patience, "merging range records", p.sink.compact)
        await patiently(patience, "reading what is done", lambda: p.state.reload(p.sink))
        fence = await patiently(patience, "reading the highest fence", p.sink.max_fence)
        await self.board.raise_fence(c.name, fence)
        metrics.CHAIN_INFO.labels(
            chain=c.name, chain_id=str(c.chain_id), block_time_seconds=f"{c.block_time:g}",
            finality_depth=str(c.finality_depth),
        ).set(1)

    async def run(self) -> Progress:
        """Prepare, then backfill (and follow the head) until the backfill is done: with
        ``--once``/``--until`` it ends, else it follows the safe head for ever. A live tail
        that fails for good fails the run."""
        await self.prepare()
        watch = asyncio.create_task(self.parts.head.watch(self.parts.state.watermark))
        main = asyncio.create_task(self.backfill.run())
        tail = asyncio.create_task(self.live.run()) if self.live is not None else None
        try:
            if tail is not None:
                await asyncio.wait({main, tail}, return_when=asyncio.FIRST_COMPLETED)
                if tail.done():
                    tail.result()
            await main
            return self.progress
        finally:
            tasks = [t for t in (watch, main, tail) if t is not None]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def status(self) -> ChainStatus:
        """What /status and /readyz report for this chain."""
        c, pr = self.parts.chain, self.progress
        live = None
        if self.live is not None:
            tip = self.live.window.tip
            heads = self.live.heads
            live = LiveStatus(self.live.leading, tip.number if tip else None,
                              None if heads is None else heads.healthy)
        return ChainStatus(
            chain=c.name, chain_id=c.chain_id, block_time=c.block_time,
            finality_depth=c.finality_depth, head=pr.head, safe=pr.head - c.finality_depth,
            indexed=pr.indexed, lag_blocks=max(0, pr.head - pr.indexed) if pr.head else None,
            lag_seconds=self.parts.head.lag_seconds, backlog_ranges=self.backfill.backlog(),
            workers=self.claims.workers_alive, last_commit=pr.last_commit, live=live,
        )
