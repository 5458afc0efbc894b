"""Wiring for ``indexer run``: database, metrics server, one runner per chain, progress,
signals and the final summary."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence

from indexer.config import ChainConfig
from indexer.lease import DEFAULT_TTL, LeaseBoard, MemoryLeaseBoard
from indexer.pipeline import build_pipeline
from indexer.progress import Reporter, summary
from indexer.rpc.client import RpcClient
from indexer.runner import ChainRunner, Progress, RunOptions
from indexer.sink.postgres import Database
from indexer.web import MetricsServer

log = logging.getLogger("indexer")


async def run_chains(
    chains: Sequence[ChainConfig],
    *,
    once: bool,
    until: int | None,
    concurrency: int,
    target_logs: int,
    worker: str | None = None,
) -> int:
    from indexer.cli import database_url, redact_url, schema_name

    tune_gc()
    url = database_url()
    schema = schema_name()
    worker = worker or default_worker_id()
    ttl = float(os.environ.get("INDEXER_LEASE_TTL", DEFAULT_TTL))
    pipelines = [build_pipeline(c) for c in chains]  # ABI problems surface before any I/O
    # Per chain: the units in flight and the live tail's own connection; one for the rest.
    db = await Database.connect(url, schema, max_size=max(2, (concurrency + 1) * len(chains) + 1),
                                idle_in_transaction=max(10.0, 2 * ttl))
    await db.migrate()
    try:
        board, shared = await make_board(ttl, await db.instance_id())
    except BaseException:
        await db.close()
        raise
    server = MetricsServer()
    reporter = Reporter()
    results: list[Progress] = []
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    stopped = False

    def _stop() -> None:
        nonlocal stopped
        stopped = True
        main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stop)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    try:
        port = await server.start(int(os.environ.get("INDEXER_METRICS_PORT", "9464")))
        log.info("metrics on http://127.0.0.1:%d/metrics (%s)", port, worker)
        opts = RunOptions(once=once, until=until, concurrency=concurrency,
                          target_logs=target_logs, worker=worker, lease_ttl=ttl, shared=shared)
        runners = []
        for p in pipelines:
            rpc = RpcClient(p.chain.rpc, chain=p.chain.name)
            runners.append((ChainRunner(p, db, rpc, board, opts, reporter.update), rpc))
        server.status = lambda: [r.status() for r, _ in runners]
        try:
            server.ready = True
            results = list(await asyncio.gather(*(r.run() for r, _ in runners)))
        finally:
            for _, rpc in runners:
                await rpc.close()
        reporter.finish()
        print(summary(results, redact_url(url), schema), file=sys.stderr)
        if not os.environ.get("DATABASE_URL"):
            from indexer import pgembed

            print(f"query it: {pgembed.psql_command(url)}   (or: indexer db psql)", file=sys.stderr)
        return 0
    except asyncio.CancelledError:
        reporter.finish()
        if stopped:
            print("stopped: committed ranges are kept; run the same command to continue",
                  file=sys.stderr)
            return 130
        raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            loop.remove_signal_handler(sig)
        await server.stop()
        await db.close()
        await board.close()


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


def default_worker_id() -> str:
    return os.environ.get("INDEXER_WORKER") or f"{socket.gethostname()}:{os.getpid()}"


async def make_board(ttl: float, namespace: str) -> tuple[LeaseBoard, bool]:
    """The lease board: Redis when ``REDIS_URL`` is set (many hosts), the ``--workers`` parent's
    when ``INDEXER_LEASE_URL`` is set (one host), else this process's own. Also whether it is
    shared with other processes."""
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        from indexer.lease import RedisLeaseBoard

        board = RedisLeaseBoard(redis_url, namespace=namespace, ttl=ttl)
        try:
            await board.redis.ping()
        except Exception as e:  # noqa: BLE001 - any failure to reach Redis is reported the same
            await board.close()
            raise SystemExit(f"error: REDIS_URL is set but Redis cannot be reached: "
                             f"{type(e).__name__}: {e}") from None
        return board, True
    lease_url = os.environ.get("INDEXER_LEASE_URL")
    if lease_url:
        from indexer.lease_http import HttpLeaseBoard

        return HttpLeaseBoard(lease_url), True
    return MemoryLeaseBoard(ttl=ttl), False
