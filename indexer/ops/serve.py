"""Wiring for ``indexer serve``: the pools (queries through ``DATABASE_URL`` with every
transaction read-only; ``/sql`` through a login that may only read), the watch of the
database, the schema (built again when tables appear), the nodes' heads (``--chain``), the
HTTP server, signals."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from indexer.chain.catalog import build_catalog
from indexer.config import ChainConfig
from indexer.ops.app import tune_gc
from indexer.ops.pgembed import database_url, redact_url
from indexer.rpc.client import RpcClient
from indexer.rpc.errors import RpcError
from indexer.serve import live, ws
from indexer.serve.cache import AnswerCache
from indexer.serve.engine import Engine
from indexer.serve.frontier import Scope
from indexer.serve.graph import Resolvers, build_schema
from indexer.serve.http import Api
from indexer.serve.ratelimit import RateLimit
from indexer.serve.resolve import Reader, page_resolver
from indexer.serve.resolve import chains as chains_field
from indexer.serve.sqlapi import READER_ROLE, SqlEndpoint, check_login
from indexer.serve.tables import catalogue
from indexer.serve.watch import TableRows, Watch
from indexer.settings import Settings
from indexer.sink import sources
from indexer.sink.database import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServeRequest:
    port: int = 8080
    host: str = "127.0.0.1"
    timeout: float = 5.0  # statement timeout, seconds
    row_limit: int = 10_000  # /sql
    poll_interval: float = 0.1
    pool_size: int = 8
    rate_limit: float = 0.0  # requests/s per client address; 0: none
    cache_ttl: float = 1.0  # seconds an answer is shared by identical queries; 0: none


def reader_url(url: str) -> str:
    """``url`` as the login ``indexer_reader`` (no password: set ``INDEXER_SQL_URL`` where
    the server asks for one)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{READER_ROLE}@{host}"))


async def scope_of(db: Database, chains: Sequence[ChainConfig]) -> Scope:
    pinned = await sources.pinned_tables(db)
    out = {}
    for chain in chains:
        catalog = build_catalog(chain, pinned)
        out[chain.chain_id] = {k: (s.spec.table, s.start_block) for k, s in catalog.keyed.items()}
    return Scope(out)


async def sql_endpoint(url: str, schemas: Sequence[str], request: ServeRequest
                       ) -> tuple[SqlEndpoint | None, str]:
    """The /sql endpoint, or why it is off."""
    try:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4, command_timeout=60,
                                         server_settings={"application_name": "indexer serve sql"})
    except (asyncpg.PostgresError, OSError) as e:
        return None, (f"cannot log in as {redact_url(url)} ({type(e).__name__}: {e}); set "
                      f"INDEXER_SQL_URL to a login that may only read (see README, Query API)")
    assert pool is not None
    async with pool.acquire() as conn:
        why = await check_login(conn, schemas)
    if why is not None:
        await pool.close()
        return None, (f"{why}: /sql runs only through a login that may only read (set "
                      f"INDEXER_SQL_URL; see README, Query API)")
    return SqlEndpoint(pool, request.timeout, request.row_limit), ""


async def follow_heads(chain: ChainConfig, watch: Watch) -> None:
    """The node's head of ``chain``, for ``chains`` and the safe head."""
    every = max(1.0, chain.block_time)
    failing = False
    async with RpcClient(chain.rpc, chain=chain.name, timeout=5.0, max_retries=1) as rpc:
        while True:
            try:
                watch.heads[chain.chain_id] = await rpc.block_number()
                failing = False
            except (RpcError, TimeoutError, OSError) as e:
                if not failing:
                    log.warning("serve: %s: the node's head cannot be read (%s); the highest "
                                "block recorded stands in", chain.name, e)
                failing = True
            await asyncio.sleep(every)


async def serve(chains: Sequence[ChainConfig], request: ServeRequest, settings: Settings) -> int:
    url = database_url(settings)
    pool = await asyncpg.create_pool(
        url, min_size=2, max_size=request.pool_size, command_timeout=request.timeout + 5,
        reset=_keep,
        # Generic plans: the page statements are few and prepared once per connection; a custom
        # plan per execution costs more than running them (partitions to prune: about 0.3 ms
        # against 0.03 ms), and run-time pruning keeps the generic ones as narrow.
        server_settings={"default_transaction_read_only": "on", "application_name":
                         "indexer serve", "statement_timeout": str(int(request.timeout * 1000)),
                         "plan_cache_mode": "force_generic_plan"})
    assert pool is not None
    tasks: list[asyncio.Task[None]] = []
    sql: SqlEndpoint | None = None
    runner = None
    try:
        db = Database(pool, settings.schema)
        scope = await scope_of(db, chains) if chains else None
        watch = Watch(pool, settings.schema, scope, request.poll_interval)
        reader = Reader(pool, settings.schema, watch, request.timeout)
        feed = live.Feed(reader)
        watch.listeners.add(feed.publish)
        engine = Engine(build_schema(catalogue(()), Resolvers(page_resolver, chains_field)),
                        frozenset())
        cache = AnswerCache(request.cache_ttl) if request.cache_ttl > 0 else None

        def rebuild(rows: TableRows) -> None:
            cat = catalogue(rows)
            for note in cat.left_out:
                log.warning("serve: %s", note)
            engine.replace(build_schema(cat, Resolvers(page_resolver, chains_field, feed.resolver)),
                           frozenset(t.name for t in cat.tables))
            feed.tables = {t.name: t for t in cat.tables}
            if cache is not None:
                cache.clear()
            log.info("serve: %d tables served", len(cat.tables))
            tune_gc()  # the schema's objects out of the collector's way

        watch.on_tables = rebuild
        tasks.append(asyncio.create_task(watch.run()))
        tasks += [asyncio.create_task(follow_heads(c, watch)) for c in chains]
        await asyncio.wait_for(watch.first(), timeout=60)
        sql, sql_off = await sql_endpoint(settings.sql_url or reader_url(url),
                                          [settings.schema, "indexer"], request)
        if sql is None:
            log.warning("serve: /sql is off: %s", sql_off)
        api = Api(engine, reader, sql, sql_off,
                  RateLimit(request.rate_limit) if request.rate_limit > 0 else None, cache)
        transport = ws.Transport(engine, reader, feed)
        api.websocket, api.stream = transport.websocket, transport.event_stream
        from aiohttp import web

        runner = web.AppRunner(api.app(), access_log=None, shutdown_timeout=2)
        await runner.setup()
        site = web.TCPSite(runner, request.host, request.port, reuse_port=True)
        try:
            await site.start()
        except OSError as e:
            raise SystemExit(f"cannot serve on {request.host}:{request.port}: {e.strerror}") from e
        log.info("serving on http://%s:%d/graphql (and /sql, /metrics, /healthz, /readyz)",
                 request.host, request.port)
        await _until_stopped()
        return 0
    finally:
        if runner is not None:
            await runner.cleanup()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if sql is not None:
            await sql.pool.close()
        await pool.close()


async def _keep(_conn: asyncpg.Connection) -> None:
    """No reset when a connection goes back to the pool (asyncpg's default is one more round
    trip per query): the queries of this pool are single statements of this process's own,
    which change no session state."""


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
