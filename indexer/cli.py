"""The ``indexer`` command (public contract 1)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from indexer import __version__

log = logging.getLogger("indexer")

EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="indexer", description="Index EVM contract events into Postgres.")
    p.add_argument("--version", action="version", version=f"indexer {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="index one or more chains")
    run.add_argument("--chain", action="append", required=True, metavar="NAME|PATH",
                     help="chains/NAME.yaml, a shipped chain, or a path; repeat for several")
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="worker processes on this host (default 1)")
    run.add_argument("--until", type=int, metavar="BLOCK", help="index up to BLOCK, then exit")
    run.add_argument("--once", action="store_true", help="index up to the safe head, then exit")
    run.add_argument("--concurrency", type=int, default=4, metavar="K",
                     help="units in flight per chain and process (default 4)")
    run.add_argument("--target-logs", type=int, default=10_000, metavar="N",
                     help="logs per eth_getLogs the range size aims at (default 10000)")
    run.add_argument("--worker-id", metavar="ID",
                     help="name of this worker in leases and status (default HOST:PID)")

    st = sub.add_parser("status", help="per chain: head, indexed block, lag, rows per table")
    st.add_argument("--chain", action="append", metavar="NAME|PATH")
    st.add_argument("--json", action="store_true")

    sub.add_parser("migrate", help="create or upgrade the system tables")

    rs = sub.add_parser("reset", help="delete everything indexed for a chain")
    rs.add_argument("--chain", required=True, metavar="NAME|PATH")
    rs.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    ch = sub.add_parser("chain", help="chain files")
    chsub = ch.add_subparsers(dest="chain_command", required=True)
    chk = chsub.add_parser("check", help="validate a chain file, its ABIs and its RPC")
    chk.add_argument("chain", metavar="NAME|PATH")
    add = chsub.add_parser("add", help="probe an RPC and write chains/NAME.yaml")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--rpc", required=True, action="append", metavar="URL",
                     help="endpoint to probe (repeat for several)")
    add.add_argument("--from-block", type=int, metavar="N", help="start_block (default: head)")
    add.add_argument("--ws", metavar="URL", help="websocket endpoint (eth_subscribe newHeads)")
    add.add_argument("--dir", type=Path, default=Path("chains"), metavar="DIR",
                     help="where to write NAME.yaml (default ./chains)")
    add.add_argument("--force", action="store_true", help="overwrite an existing file")

    db = sub.add_parser("db", help="the database in use (embedded when DATABASE_URL is unset)")
    db.add_argument("action", choices=["url", "psql", "stop"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    from indexer.abi import AbiError
    from indexer.config import ConfigError
    from indexer.rpc.errors import RpcError
    from indexer.sink.postgres import SinkError

    try:
        if args.command == "run":
            return _run(args)
        if args.command == "db":
            return _db(args.action)
        return _with_loop(_COMMANDS[args.command](args))
    except (ConfigError, AbiError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (RpcError, SinkError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # e.g. the database refused the connection
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _with_loop(coro: object) -> int:
    import uvloop

    return int(uvloop.run(coro))  # type: ignore[arg-type]


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    from indexer import pgembed

    url = pgembed.start()
    log.info("DATABASE_URL is not set: using the embedded Postgres in %s", Path(".indexer/pgdata").resolve())
    return url


def schema_name() -> str:
    return os.environ.get("INDEXER_SCHEMA", "chaindata")


def redact_url(url: str) -> str:
    """A database URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# -- run ---------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from indexer.config import load_chains

    chains = load_chains(args.chain)  # every file validated before any work starts
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    if args.workers > 1:
        return _with_loop(_run_workers(args))
    from indexer.app import run_chains

    return _with_loop(run_chains(
        chains, once=args.once, until=args.until, concurrency=args.concurrency,
        target_logs=args.target_logs, worker=args.worker_id,
    ))


def _die_with_parent() -> None:
    """In a ``--workers`` child before exec: get SIGTERM (a clean stop) when the parent dies,
    even by SIGKILL, instead of going on as an orphan (Linux; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def _run_workers(args: argparse.Namespace) -> int:
    """Start ``--workers`` processes of this command. They share the lease board: Redis when
    ``REDIS_URL`` is set, else one this process serves to them on 127.0.0.1."""
    import asyncio
    import socket

    from indexer.lease import DEFAULT_TTL, MemoryLeaseBoard
    from indexer.lease_http import LeaseServer

    url = database_url()
    env = dict(os.environ, DATABASE_URL=url)
    server = None
    if not os.environ.get("REDIS_URL"):
        ttl = float(os.environ.get("INDEXER_LEASE_TTL", DEFAULT_TTL))
        server = LeaseServer(MemoryLeaseBoard(ttl=ttl))
        env["INDEXER_LEASE_URL"] = await server.start()
    base_port = int(os.environ.get("INDEXER_METRICS_PORT", "9464"))
    base_id = args.worker_id or f"{socket.gethostname()}:{os.getpid()}"
    procs = []
    for i in range(args.workers):
        argv = [sys.executable, "-m", "indexer", "run", "--worker-id", f"{base_id}/{i}",
                "--concurrency", str(args.concurrency), "--target-logs", str(args.target_logs)]
        for c in args.chain:
            argv += ["--chain", c]
        if args.once:
            argv.append("--once")
        if args.until is not None:
            argv += ["--until", str(args.until)]
        child_env = dict(env, INDEXER_METRICS_PORT=str(base_port + i if base_port else 0))
        procs.append(await asyncio.create_subprocess_exec(*argv, env=child_env,
                                                          preexec_fn=_die_with_parent))
    log.info("started %d workers (lease board: %s)", len(procs),
             "Redis" if server is None else "this process")
    loop = asyncio.get_running_loop()

    def forward(sig: int) -> None:
        for p in procs:
            if p.returncode is None:
                p.send_signal(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, forward, sig)
    try:
        codes = [await p.wait() for p in procs]
    finally:
        if server is not None:
            await server.stop()
    return max(codes)


# -- other commands ----------------------------------------------------------------------------


async def _migrate(args: argparse.Namespace) -> int:
    from indexer.sink.postgres import Database

    db = await Database.connect(database_url(), schema_name(), max_size=1)
    try:
        applied = await db.migrate()
    finally:
        await db.close()
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


async def _reset(args: argparse.Namespace) -> int:
    from indexer.config import load_chain, resolve_chain
    from indexer.sink.postgres import Database

    chain = load_chain(resolve_chain(args.chain))
    if not args.yes:
        answer = input(f"delete every row of chain {chain.name} (id {chain.chain_id})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    db = await Database.connect(database_url(), schema_name(), max_size=1)
    try:
        await db.migrate()
        deleted = await db.reset_chain(chain.chain_id)
        if os.environ.get("REDIS_URL"):
            from indexer.lease import RedisLeaseBoard

            board = RedisLeaseBoard(os.environ["REDIS_URL"], namespace=await db.instance_id())
            try:
                deleted["redis keys"] = await board.forget(chain.name)
            finally:
                await board.close()
    finally:
        await db.close()
    for what, n in deleted.items():
        print(f"deleted {n:,} rows of {what}")
    return 0


async def _status(args: argparse.Namespace) -> int:
    from indexer.status import status

    return await status(args.chain, as_json=args.json, url=database_url(), schema=schema_name())


async def _chain_check(args: argparse.Namespace) -> int:
    from indexer.status import check_chain

    return await check_chain(args.chain)


async def _chain(args: argparse.Namespace) -> int:
    if args.chain_command == "add":
        from indexer.chainadd import add_chain

        return await add_chain(args)
    return await _chain_check(args)


_COMMANDS = {"migrate": _migrate, "reset": _reset, "status": _status, "chain": _chain}


def _db(action: str) -> int:
    from indexer import pgembed

    if action == "stop":
        if os.environ.get("DATABASE_URL"):
            print("DATABASE_URL is set: nothing embedded to stop", file=sys.stderr)
            return 1
        print("stopped" if pgembed.stop() else "the embedded Postgres was not running")
        return 0
    url = database_url()
    if action == "url":
        print(url)
        return 0
    psql = "psql"
    if not os.environ.get("DATABASE_URL"):
        psql = pgembed.psql_command(url).split(" ")[0]
    return subprocess.call([psql, url])

