"""Wiring for ``indexer run``: database, lease board, metrics server, one ``ChainRun`` per
chain, progress, signals and the final summary."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from indexer.backfill.loop import BackfillOptions
from indexer.cancel import raise_if_cancelled
from indexer.chain.catalog import build_catalog
from indexer.chain.progress import Progress
from indexer.clock import SYSTEM
from indexer.config import ChainConfig
from indexer.lease.board import LeaseBoard, MemoryLeaseBoard
from indexer.ops.chain import ChainRun, RunOptions
from indexer.ops.pgembed import database_url, redact_url
from indexer.ops.progress import Reporter, summary
from indexer.ops.web import MetricsServer
from indexer.retry import TRANSIENT, Patience, patiently
from indexer.rpc.client import RpcClient
from indexer.settings import Settings
from indexer.sink.database import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What ``indexer run`` was asked to do."""

    once: bool = False
    until: int | None = None
    concurrency: int = 4
    target_logs: int = 10_000
    worker: str | None = None  # --worker-id
    watch: bool = False  # --watch: apply the chain file whenever it changes


async def run_chains(chains: Sequence[ChainConfig], request: RunRequest,
                     settings: Settings) -> int:
    tune_gc()
    url = database_url(settings)
    worker = request.worker or settings.worker_id()
    ttl = settings.lease_ttl
    catalogs = [build_catalog(c) for c in chains]  # ABI problems surface before any I/O
    db, namespace = await open_database(url, settings, len(chains) * (request.concurrency + 1))
    try:
        board, shared = await make_board(settings, namespace)
    except BaseException:
        await db.close()
        raise
    server = MetricsServer()
    reporter = Reporter()
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    stopped = False

    def _stop() -> None:
        nonlocal stopped
        stopped = True
        main.cancel()

    runs: list[ChainRun] = []
    reloads: set[asyncio.Task[bool]] = set()

    def _reload() -> None:  # SIGHUP: apply the edited chain files
        for r in runs:
            task = asyncio.create_task(r.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stop)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    loop.add_signal_handler(signal.SIGHUP, _reload)
    try:
        port = await server.start(settings.metrics_port)
        log.info("metrics on http://0.0.0.0:%d/metrics (%s)", port, worker)
        follow = not request.once and request.until is None
        options = RunOptions(
            backfill=BackfillOptions(once=request.once, until=request.until,
                                     concurrency=request.concurrency,
                                     target_logs=request.target_logs, lease_ttl=ttl,
                                     shared=shared),
            worker=worker, follow=follow, live_trace=settings.live_trace,
            leader_in_postgres=not settings.redis_url, db_wait=settings.db_wait)
        rpcs: list[RpcClient] = []
        for catalog in catalogs:
            rpc = RpcClient(catalog.chain.rpc, chain=catalog.chain.name,
                            timeout=settings.rpc_timeout)
            rpcs.append(rpc)
            runs.append(ChainRun(catalog, db, rpc, board, options, reporter.update,
                                 watch=request.watch))
        server.status = lambda: [r.status() for r in runs]
        stalls = asyncio.create_task(end_stalls(db, every=ttl / 3))
        try:
            server.ready = True
            results: list[Progress] = list(await asyncio.gather(*(r.run() for r in runs)))
        finally:
            stalls.cancel()
            await asyncio.gather(stalls, return_exceptions=True)
            for rpc in rpcs:
                await rpc.close()
        reporter.finish()
        print(summary(results, redact_url(url), settings.schema), file=sys.stderr)
        different = _found_wrong(runs)
        if settings.database_url is None:
            from indexer.ops import pgembed

            print(f"query it: {pgembed.psql_command(url)}   (or: indexer db psql)", file=sys.stderr)
        return 1 if different else 0
    except asyncio.CancelledError:
        reporter.finish()
        if stopped:
            print("stopped: committed ranges are kept; run the same command to continue",
                  file=sys.stderr)
            return 130
        raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        for task in reloads:
            task.cancel()
        await server.stop()
        await db.close()
        await board.close()


async def open_database(url: str, settings: Settings, in_flight: int) -> tuple[Database, str]:
    """The pool (``in_flight``: the units in flight and live tails' own connections, one more
    for the rest), the system tables migrated, and this database's id. Waits for a Postgres
    that is starting or restarting (INDEXER_DB_WAIT at most)."""
    patience = Patience(settings.db_wait, SYSTEM, "startup")
    db = await patiently(patience, "connecting", lambda: Database.connect(
        url, settings.schema, max_size=max(2, in_flight + 1),
        tx_timeout=settings.tx_timeout, pooler=settings.db_pooler))
    try:
        await patiently(patience, "migrating the system tables", db.migrate)
        return db, await patiently(patience, "reading the instance id", db.instance_id)
    except BaseException:
        await db.close()
        raise


async def end_stalls(db: Database, every: float) -> None:
    """Every ``every`` seconds, end the commits stalled in their COPY for longer than a writing
    transaction may take (their worker froze in the middle, e.g. a paused host): their key locks
    would block the worker that takes their range over, for ever (Postgres applies no timeout to
    a COPY waiting for data)."""
    while True:
        raise_if_cancelled()
        await asyncio.sleep(every)
        try:
            ended = await db.end_stalled_copies(db.tx_timeout)
        except TRANSIENT as e:
            log.debug("stalled commits not looked for: %s", e)
            continue
        for pid, seconds in ended:
            log.warning("ended a commit stalled in its COPY for %.0fs (Postgres backend %d): "
                        "its writer stopped sending; its blocks are free for another worker",
                        seconds, pid)


def dump_tasks() -> None:
    """``kill -USR1 PID``: write every asyncio task of this process and where it waits to
    ``$TMPDIR/indexer-tasks-PID.txt`` (for a process that seems stuck)."""
    path = os.path.join(tempfile.gettempdir(), f"indexer-tasks-{os.getpid()}.txt")
    with open(path, "w") as out:
        for task in asyncio.all_tasks():
            print(f"--- {task.get_name()}: {task.get_coro()!r}", file=out)
            task.print_stack(file=out)
    log.warning("asyncio tasks written to %s", path)


def tune_gc() -> None:
    """Parsed logs are millions of small acyclic containers freed by reference counting; the
    cyclic collector's default thresholds make it rescan them all the time, doubling the cost
    of parsing an eth_getLogs answer. Collect rarely instead."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


async def make_board(settings: Settings, namespace: str) -> tuple[LeaseBoard, bool]:
    """The lease board: Redis when ``REDIS_URL`` is set (many hosts), the ``--workers`` parent's
    when ``INDEXER_LEASE_URL`` is set (one host), else this process's own. Also whether it is
    shared with other processes."""
    if settings.redis_url:
        from indexer.lease.redis import RedisLeaseBoard

        board = RedisLeaseBoard(settings.redis_url, namespace=namespace, ttl=settings.lease_ttl)
        try:
            await board.redis.ping()
        except Exception as e:  # noqa: BLE001 - any failure to reach Redis is reported the same
            await board.close()
            raise SystemExit(f"error: REDIS_URL is set but Redis cannot be reached: "
                             f"{type(e).__name__}: {e}") from None
        return board, True
    if settings.lease_url:
        from indexer.lease.http import HttpLeaseBoard

        return HttpLeaseBoard(settings.lease_url), True
    return MemoryLeaseBoard(ttl=settings.lease_ttl), False


def _found_wrong(runs: Sequence[ChainRun]) -> list[ChainRun]:
    """The runs whose background checks found data they left wrong, each said on stderr."""
    wrong = []
    for r in runs:
        v = r.verifier
        if v.unrepaired:
            print(f"error: {r.parts.name}: {v.unrepaired} checked ranges differ from the chain "
                  f"and were not repaired (see DATA MISMATCH above)", file=sys.stderr)
        if v.unproven:
            print(f"error: {r.parts.name}: {v.unproven} checked ranges hold blocks whose logs "
                  f"their receipts do not prove (see NOT PROVEN above)", file=sys.stderr)
        if v.unrepaired or v.unproven:
            wrong.append(r)
    return wrong
