"""One chain's run, composed: build its catalogue, state, sink and the rest, check the node and
the database, then start the backfill and the live tail side by side (and the head watch).
Neither loop knows the other; the live tail tells the backfill to plan again through the one
callback wired here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from indexer import metrics
from indexer.abi import AbiError
from indexer.backfill.loop import Backfill, BackfillOptions
from indexer.chain.catalog import Catalog
from indexer.chain.coverage import event_progress
from indexer.chain.fetch import Fetcher
from indexer.chain.head import HeadWatch
from indexer.chain.parts import ChainParts
from indexer.chain.progress import Progress
from indexer.chain.state import ChainState
from indexer.clock import SYSTEM, Clock
from indexer.config import ChainConfig, ConfigError, load_chain
from indexer.lease.board import LIVE_TTL, LeaseBoard
from indexer.lease.claims import Claims
from indexer.live.follower import LiveFollower
from indexer.ops.attach import attach
from indexer.ops.readiness import ChainStatus, EventStatus, LiveStatus
from indexer.retry import Patience, patiently
from indexer.rpc.client import RpcClient
from indexer.sink.database import Database
from indexer.sink.indexes import complete_api_indexes
from indexer.sink.leader import PostgresLeadership
from indexer.sink.postgres import PostgresSink
from indexer.sink.tables import ensure_event_tables
from indexer.types import BlockRange
from indexer.verify.background import BackgroundVerifier
from indexer.verify.prover import Prover

log = logging.getLogger(__name__)


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
                 clock: Clock = SYSTEM, watch: bool = False) -> None:
        chain = catalog.chain
        self.db = db
        self.rpc = rpc
        self.board = board
        self.options = options
        progress = Progress(chain.name, chain.finality_depth, on_change=on_progress)
        sink = self.sink = PostgresSink(db, chain.chain_id, chain.partition_blocks,
                                        catalog.columns)
        self.parts = ChainParts(
            catalog=catalog, state=ChainState(catalog.sources), source=rpc, sink=sink,
            fetcher=Fetcher(catalog, rpc), head=HeadWatch(rpc, progress, clock),
            progress=progress, clock=clock, db_wait=options.db_wait,
        )
        bf = options.backfill
        self.claims = Claims(chain.name, board, options.worker, chain.partition_blocks,
                             bf.lease_ttl)
        # Checks run on another endpoint than the first when the chain has several.
        self.check_rpc = rpc if len(chain.rpc) < 2 else RpcClient(
            chain.rpc[1:] + chain.rpc[:1], chain=chain.name, timeout=rpc.requests.timeout)
        self.verifier = BackgroundVerifier(
            self.parts, db, chain.verify, Fetcher(catalog, self.check_rpc),
            prover=Prover(self.check_rpc, chain.name) if chain.verify.proof else None)
        self.backfill = Backfill(self.parts, self.claims, options.worker, bf,
                                 on_committed=self.verifier.committed)
        self.watch = watch
        self.live: LiveFollower | None = None
        if options.follow:
            leader = (PostgresLeadership(db, chain.chain_id, LIVE_TTL)
                      if options.leader_in_postgres else None)
            self.live = LiveFollower(self.parts, board, options.worker,
                                     on_repair=self._repaired, trace=options.live_trace,
                                     leader=leader, on_committed=self.verifier.committed)

    def _repaired(self, rng: BlockRange) -> None:
        """A reorg repair replaced ``rng``: the backfill plans again, re-commits are checked."""
        self.backfill.replan()
        self.verifier.repaired(rng)

    @property
    def progress(self) -> Progress:
        return self.parts.progress

    async def prepare(self) -> None:
        """The node is the chain of the file; the database knows the chain and its tables;
        what is done is read."""
        p = self.parts
        c = p.chain
        metrics.open_chain(c.name, [t.name for t in p.catalog.tables], self.rpc.endpoints,
                           live=self.live is not None)
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
        await patiently(patience, "registering the sources and their tables",
                        lambda: self._attach(c))
        if not self.options.backfill.shared:  # alone: tidy the records of earlier runs
            await patiently(patience, "merging range records", p.sink.compact)
        await patiently(patience, "reading what is done", lambda: p.state.reload(p.sink))
        fence = await patiently(patience, "reading the highest fence", p.sink.max_fence)
        await self.board.raise_fence(c.name, fence)
        metrics.CHAIN_INFO.labels(
            chain=c.name, chain_id=str(c.chain_id), block_time_seconds=f"{c.block_time:g}",
            finality_depth=str(c.finality_depth),
        ).set(1)

    async def _attach(self, chain: ChainConfig) -> None:
        """Register the file's sources, make their tables, and index what it says from now."""
        attached = await attach(self.db, chain)
        await ensure_event_tables(self.db, attached.catalog.tables)
        self.sink.bind(attached.ids, attached.catalog.columns)
        self.parts.retarget(attached.catalog)

    async def reload(self) -> bool:
        """Apply the chain file as it is now (SIGHUP, ``--watch``): the difference is planned
        like any other work, and the live tail and the backfill carry on. A file that does not
        load, or that decodes an indexed event otherwise, is refused with the usual errors and
        the run goes on with the file it had. Whether the new file is in force."""
        old = self.parts.chain
        before = set(self.parts.catalog.keyed)
        try:
            new = load_chain(old.source)
            if new.chain_id != old.chain_id:
                raise ConfigError(f"{old.source}: chain_id: changed from {old.chain_id} to "
                                  f"{new.chain_id}; a running indexer cannot change chains")
            await self._attach(dataclasses.replace(old, contracts=new.contracts,
                                                   start_block=new.start_block))
        except (ConfigError, AbiError) as e:
            for line in str(e).splitlines():
                log.error("%s: the edited chain file is not applied: %s", old.name, line)
            metrics.CONFIG_RELOADS.labels(chain=old.name, outcome="refused").inc()
            return False
        others = [f.name for f in dataclasses.fields(old) if f.name not in
                  ("contracts", "start_block", "source")
                  and getattr(old, f.name) != getattr(new, f.name)]
        if others:
            log.warning("%s: the chain file's %s changed: that takes a restart (applied now: "
                        "the contracts)", old.name, ", ".join(others))
        now = set(self.parts.catalog.keyed)
        log.info("%s: chain file reloaded: %d sources, %d of them new (planned from their start "
                 "blocks), %d no longer indexed (their rows are kept)", old.name, len(now),
                 len(now - before), len(before - now))
        metrics.CONFIG_RELOADS.labels(chain=old.name, outcome="applied").inc()
        await self.parts.state.reload(self.parts.sink)
        self.backfill.replan()
        return True

    async def watch_file(self, every: float = 1.0) -> None:
        """``--watch``: reload whenever the chain file changes."""
        path = self.parts.chain.source
        seen = _stamp(path)
        while True:
            await self.parts.clock.sleep(every)
            now = _stamp(path)
            if now != seen:
                seen = now
                await self.reload()

    async def run(self) -> Progress:
        """Prepare, then backfill (and follow the head) until the backfill is done: with
        ``--once``/``--until`` it ends, else it follows the safe head for ever. A live tail
        that fails for good fails the run."""
        await self.prepare()
        watch = asyncio.create_task(self.parts.head.watch(self.parts.state.watermark))
        main = asyncio.create_task(self.backfill.run())
        tail = asyncio.create_task(self.live.run()) if self.live is not None else None
        files = asyncio.create_task(self.watch_file()) if self.watch else None
        checks = asyncio.create_task(self.verifier.run())
        indexes = asyncio.create_task(complete_api_indexes(self.db))
        try:
            if tail is not None:
                await asyncio.wait({main, tail}, return_when=asyncio.FIRST_COMPLETED)
                if tail.done():
                    tail.result()
            await main
            # An ending run waits for the checks it has sampled (they would be lost else).
            drained = asyncio.create_task(self.verifier.drain())
            await asyncio.wait({drained, checks}, return_when=asyncio.FIRST_COMPLETED)
            if checks.done():
                checks.result()  # the checks failed for good: so does the run
            drained.cancel()
            return self.progress
        finally:
            tasks = [t for t in (watch, main, tail, files, checks, indexes) if t is not None]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.check_rpc is not self.rpc:
                await self.check_rpc.close()

    def status(self) -> ChainStatus:
        """What /status and /readyz report for this chain."""
        c, pr = self.parts.chain, self.progress
        live = None
        if self.live is not None:
            tip = self.live.window.tip
            heads = self.live.heads
            live = LiveStatus(self.live.leading, tip.number if tip else None,
                              None if heads is None else heads.healthy)
        elapsed = max(1e-9, time.monotonic() - pr.started)
        rate = pr.blocks / elapsed
        events = tuple(
            EventStatus(e.contract, e.event, e.state, round(e.percent, 1), e.eta_seconds)
            for e in (x.with_rate(rate) for x in event_progress(
                self.parts.catalog, self.parts.state.done, pr.target)))
        return ChainStatus(
            chain=c.name, chain_id=c.chain_id, block_time=c.block_time,
            finality_depth=c.finality_depth, head=pr.head, safe=pr.head - c.finality_depth,
            indexed=pr.indexed, lag_blocks=max(0, pr.head - pr.indexed) if pr.head else None,
            lag_seconds=self.parts.head.lag_seconds, backlog_ranges=self.backfill.backlog(),
            workers=self.claims.workers_alive, last_commit=pr.last_commit, live=live,
            events=events,
        )


def _stamp(path: Path) -> tuple[float, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime, st.st_size
