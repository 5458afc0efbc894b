"""Wiring for ``indexer run``: database, metrics server, one runner per chain, progress,
signals and the final summary."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import signal
import sys
from collections.abc import Sequence

from indexer.config import ChainConfig
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
    shard: tuple[int, int, int] | None = None,
) -> int:
    from indexer.cli import database_url, redact_url, schema_name

    tune_gc()
    url = database_url()
    schema = schema_name()
    worker = os.environ.get("INDEXER_WORKER", "local")
    pipelines = [build_pipeline(c) for c in chains]  # ABI problems surface before any I/O
    db = await Database.connect(url, schema, max_size=max(2, concurrency * len(chains) + 1))
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
    try:
        await db.migrate()
        port = await server.start(int(os.environ.get("INDEXER_METRICS_PORT", "9464")))
        log.info("metrics on http://127.0.0.1:%d/metrics (%s)", port, worker)
        opts = RunOptions(once=once, until=until, concurrency=concurrency,
                          target_logs=target_logs, worker=worker, shard=shard)
        runners = []
        for p in pipelines:
            rpc = RpcClient(p.chain.rpc, chain=p.chain.name)
            runners.append((ChainRunner(p, db, rpc, opts, reporter.update), rpc))
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
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await server.stop()
        await db.close()


def tune_gc() -> None:
    """Parsed logs are millions of small acyclic containers freed by reference counting; the
    cyclic collector's default thresholds make it rescan them all the time, doubling the cost
    of parsing an eth_getLogs answer. Collect rarely instead."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


async def work_span(chains: Sequence[ChainConfig], workers: int) -> int:
    """Grid span for splitting the blocks left among ``workers`` processes: about 32 slices
    each, so an uneven density still spreads."""
    widest = 1
    for c in chains:
        async with RpcClient(c.rpc, chain=c.name) as rpc:
            head = await rpc.block_number()
        first = min((x.start_block for x in c.contracts), default=c.start_block)
        widest = max(widest, head - c.finality_depth - first + 1)
    return max(1, math.ceil(widest / (workers * 32)))
