"""What each ``indexer`` command does, given its arguments and the settings read once from
the environment."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Coroutine
from typing import Any

from indexer import faults
from indexer.settings import Settings

EXIT_CONFIG = 2


def run_command(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    faults.configure(settings.faults)
    if args.command == "run":
        return _run(args, settings)
    if args.command == "db":
        return _db(args.action, settings)
    if args.command == "migrate":
        return _with_loop(_migrate(settings))
    if args.command == "reset":
        return _with_loop(_reset(args, settings))
    if args.command == "reindex":
        return _with_loop(_reindex(args, settings))
    if args.command == "verify":
        return _with_loop(_verify(args, settings))
    if args.command == "prune":
        return _with_loop(_prune(args, settings))
    if args.command == "serve":
        return _serve(args, settings)
    if args.command == "status":
        from indexer.ops.status import status

        return _with_loop(status(args.chain, as_json=args.json, settings=settings))
    if args.chain_command == "add":
        from indexer.ops.chainadd import add_chain

        return _with_loop(add_chain(args))
    from indexer.ops.check import check_chain

    return _with_loop(check_chain(args.chain))


def _with_loop(coro: Coroutine[Any, Any, int]) -> int:
    import uvloop

    return int(uvloop.run(coro))


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.config import load_chains

    chains = load_chains(args.chain)  # every file validated before any work starts
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    if args.workers > 1:
        from indexer.ops.workers import run_workers

        return _with_loop(run_workers(args, settings))
    from indexer.ops.app import RunRequest, run_chains

    request = RunRequest(once=args.once, until=args.until, concurrency=args.concurrency,
                         target_logs=args.target_logs, worker=args.worker_id,
                         watch=args.watch)
    return _with_loop(run_chains(chains, request, settings))


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.config import load_chains
    from indexer.ops.serve import ServeRequest, serve

    chains = load_chains(args.chain) if args.chain else []
    problems = [f"--{name} must be {rule}" for name, ok, rule in (
        ("port", 0 <= args.port <= 65535, "0 to 65535"),
        ("timeout", 0.1 <= args.timeout <= 3600, "0.1 to 3600"),
        ("row-limit", 1 <= args.row_limit <= 1_000_000, "1 to 1000000"),
        ("poll-interval", 0.01 <= args.poll_interval <= 60, "0.01 to 60"),
        ("pool", 1 <= args.pool <= 100, "1 to 100"),
        ("rate-limit", args.rate_limit >= 0, "0 or more"),
        ("cache-ttl", 0 <= args.cache_ttl <= 3600, "0 to 3600")) if not ok]
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return EXIT_CONFIG
    request = ServeRequest(port=args.port, host=args.host, timeout=args.timeout,
                           row_limit=args.row_limit, poll_interval=args.poll_interval,
                           pool_size=args.pool, rate_limit=args.rate_limit,
                           cache_ttl=args.cache_ttl)
    return _with_loop(serve(chains, request, settings))


async def _migrate(settings: Settings) -> int:
    from indexer.ops.pgembed import connect

    db = await connect(settings, max_size=1)
    try:
        applied = await db.migrate()
    finally:
        await db.close()
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


async def _reset(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.config import load_chain, resolve_chain
    from indexer.ops.pgembed import connect

    chain = load_chain(resolve_chain(args.chain))
    if not args.yes:
        answer = input(f"delete every row of chain {chain.name} (id {chain.chain_id})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    db = await connect(settings, max_size=1)
    try:
        await db.migrate()
        deleted = await db.reset_chain(chain.chain_id)
        if settings.redis_url:
            from indexer.lease.redis import RedisLeaseBoard

            board = RedisLeaseBoard(settings.redis_url, namespace=await db.instance_id())
            try:
                deleted["redis keys"] = await board.forget(chain.name)
            finally:
                await board.close()
    finally:
        await db.close()
    for what, n in deleted.items():
        print(f"deleted {n:,} rows of {what}")
    return 0


async def _reindex(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.config import load_chain, resolve_chain
    from indexer.ops.pgembed import connect
    from indexer.ops.reindex import reindex_command
    from indexer.rpc.client import RpcClient

    chain = load_chain(resolve_chain(args.chain))
    db = await connect(settings, max_size=2)
    try:
        await db.migrate()
        async with RpcClient(chain.rpc, chain=chain.name, timeout=settings.rpc_timeout) as rpc:
            return await reindex_command(chain, db, rpc, args.contract, args.event,
                                         args.from_block, args.to_block)
    finally:
        await db.close()


async def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.config import load_chain, resolve_chain
    from indexer.ops.pgembed import connect
    from indexer.ops.verify import verify_command
    from indexer.rpc.client import RpcClient

    chain = load_chain(resolve_chain(args.chain))
    # Another endpoint than the one that most likely served the rows, when there are several.
    endpoints = chain.rpc[1:] + chain.rpc[:1]
    db = await connect(settings, max_size=6)
    try:
        await db.migrate()
        async with RpcClient(endpoints, chain=chain.name, timeout=settings.rpc_timeout) as rpc:
            return await verify_command(db, chain, rpc, args.contract, args.from_block,
                                        args.to_block, args.repair, args.json, args.proof)
    finally:
        await db.close()


async def _prune(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.config import load_chain, resolve_chain
    from indexer.ops.pgembed import connect
    from indexer.ops.prune import prune_command

    chain = load_chain(resolve_chain(args.chain))
    what = args.contract + (f" {args.event}" if args.event else "")
    if not args.yes:
        answer = input(f"delete every row of {what} on chain {chain.name}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    db = await connect(settings, max_size=1)
    try:
        await db.migrate()
        return await prune_command(chain, db, args.contract, args.event)
    finally:
        await db.close()


def _db(action: str, settings: Settings) -> int:
    from indexer.ops import pgembed

    if action == "stop":
        if settings.database_url:
            print("DATABASE_URL is set: nothing embedded to stop", file=sys.stderr)
            return 1
        print("stopped" if pgembed.stop() else "the embedded Postgres was not running")
        return 0
    url = pgembed.database_url(settings)
    if action == "url":
        print(url)
        return 0
    psql = "psql"
    if not settings.database_url:
        psql = pgembed.psql_command(url).split(" ")[0]
    return subprocess.call([psql, url], env=os.environ.copy())
