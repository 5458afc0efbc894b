"""``indexer run --workers N``: start N worker processes of the same command on this host.
They share the lease board: Redis when ``REDIS_URL`` is set, else a memory board this process
serves to them on 127.0.0.1. Each worker gets SIGTERM when this process dies, and the signals
this process gets are passed on."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys

from indexer.lease.board import MemoryLeaseBoard
from indexer.lease.http import LeaseServer
from indexer.ops.pgembed import database_url
from indexer.settings import Settings

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    """In a ``--workers`` child before exec: get SIGTERM (a clean stop) when the parent dies,
    even by SIGKILL, instead of going on as an orphan (Linux; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def worker_argv(args: argparse.Namespace, worker_id: str) -> list[str]:
    """The command line of one worker."""
    argv = [sys.executable, "-m", "indexer", "run", "--worker-id", worker_id,
            "--concurrency", str(args.concurrency), "--target-logs", str(args.target_logs)]
    for c in args.chain:
        argv += ["--chain", c]
    if args.once:
        argv.append("--once")
    if args.until is not None:
        argv += ["--until", str(args.until)]
    if args.watch:
        argv.append("--watch")
    return argv


async def run_workers(args: argparse.Namespace, settings: Settings) -> int:
    env = dict(os.environ, DATABASE_URL=database_url(settings))
    server = None
    if not settings.redis_url:
        server = LeaseServer(MemoryLeaseBoard(ttl=settings.lease_ttl))
        env["INDEXER_LEASE_URL"] = await server.start()
    base_port = settings.metrics_port
    base_id = args.worker_id or f"{socket.gethostname()}:{os.getpid()}"
    procs = []
    for i in range(args.workers):
        child_env = dict(env, INDEXER_METRICS_PORT=str(base_port + i if base_port else 0))
        procs.append(await asyncio.create_subprocess_exec(
            *worker_argv(args, f"{base_id}/{i}"), env=child_env, preexec_fn=_die_with_parent))
    log.info("started %d workers (lease board: %s)", len(procs),
             "Redis" if server is None else "this process")
    loop = asyncio.get_running_loop()

    def forward(sig: int) -> None:
        for p in procs:
            if p.returncode is None:
                p.send_signal(sig)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, forward, sig)
    try:
        codes = [await p.wait() for p in procs]
    finally:
        if server is not None:
            await server.stop()
    return max(codes)
