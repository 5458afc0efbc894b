"""The HTTP side of ``indexer serve``: ``/graphql`` (POST and GET; a WebSocket upgrade or
``Accept: text/event-stream`` for subscriptions), ``/sql``, ``/healthz``, ``/readyz``,
``/metrics``; request bodies at most ``MAX_BODY`` bytes (413 past it), an optional rate
limit per client address (429), request counts and durations per operation."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from indexer import metrics
from indexer.serve.cache import AnswerCache, key_of
from indexer.serve.engine import Answer, Engine, refused
from indexer.serve.ratelimit import RateLimit
from indexer.serve.resolve import Reader, Request
from indexer.serve.sqlapi import SqlEndpoint, SqlError
from indexer.serve.values import parse_request

MAX_BODY = 256 * 1024
GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON_TYPES = ("application/json", GRAPHQL_RESPONSE)

Streamer = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


class Api:
    """The routes, over the engine, the reader and the SQL endpoint (None: /sql is off, with
    the reason in ``sql_off``)."""

    def __init__(self, engine: Engine, reader: Reader, sql: SqlEndpoint | None,
                 sql_off: str = "", rate: RateLimit | None = None,
                 cache: AnswerCache | None = None) -> None:
        self.engine = engine
        self.reader = reader
        self.cache = cache
        self.sql = sql
        self.sql_off = sql_off
        self.rate = rate
        self.websocket: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        self.stream: Streamer | None = None  # text/event-stream answers
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._limit])
        app.router.add_post("/graphql", self.graphql_post)
        app.router.add_get("/graphql", self.graphql_get)
        app.router.add_post("/sql", self.sql_post)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        return app

    @web.middleware
    async def _limit(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.rate is not None and request.path in ("/graphql", "/sql") \
                and not self.rate.allow(request.remote or "", time.monotonic()):
            self.count("graphql" if request.path == "/graphql" else "sql", "refused", 429, 0.0)
            return _json(429, {"errors": [{"message": "too many requests from this address; "
                                           "slow down", "extensions": {"code": "RATE_LIMIT"}}]})
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _json(413, {"errors": [{"message": f"the request body is over {MAX_BODY} "
                                           f"bytes"}]})

    def count(self, endpoint: str, operation: str, status: int, seconds: float) -> None:
        key = (endpoint, operation, status)
        series = self._series.get(key)
        if series is None:
            series = (metrics.API_REQUESTS.labels(endpoint=endpoint, operation=operation,
                                                  status=str(status)),
                      metrics.API_DURATION.labels(endpoint=endpoint, operation=operation))
            self._series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    # ------------------------------------------------------------------------- GraphQL

    async def graphql_post(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        ctype = request.content_type
        if ctype not in JSON_TYPES:
            return self._reply(request, refused(
                f"a GraphQL request is JSON (Content-Type: application/json), not {ctype!r}",
                415), started)
        try:
            body = parse_request(await request.read())
        except ValueError as e:
            return self._reply(request, refused(f"the body is not JSON: {e}"), started)
        if not isinstance(body, dict):
            return self._reply(request, refused("the body must be a JSON object"), started)
        return await self._graphql(request, body, started)

    async def graphql_get(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket" and self.websocket:
            return await self.websocket(request)
        started = time.perf_counter()
        q = request.query
        body: dict[str, Any] = {"query": q.get("query"), "operationName": q.get("operationName")}
        if "variables" in q:
            try:
                body["variables"] = parse_request(q["variables"])
            except ValueError as e:
                return self._reply(request, refused(f"variables is not JSON: {e}"), started)
        return await self._graphql(request, body, started)

    async def _graphql(self, request: web.Request, body: dict[str, Any],
                       started: float) -> web.StreamResponse:
        if self.stream is not None and "text/event-stream" in request.headers.get("Accept", ""):
            return await self.stream(request, body)
        query, variables, name = body.get("query"), body.get("variables"), body.get("operationName")
        key = None
        if self.cache is not None and isinstance(query, str) and (name is None
                                                                  or isinstance(name, str)):
            key = key_of(query, name, variables)
            hit = None if key is None else self.cache.get(key, self.reader.watch.version,
                                                           started)
            if hit is not None:
                return self._send(request, 200, hit[1], hit[0], started)
        context = Request(self.reader)
        answer = await self.engine.run(query, variables, name, context)
        data = orjson.dumps(answer.body)
        if key is not None and answer.status == 200 and context.version >= 0:
            assert self.cache is not None
            self.cache.put(key, context.version, (answer.operation, data), started)
        return self._send(request, answer.status, data, answer.operation, started)

    def _reply(self, request: web.Request, answer: Answer, started: float) -> web.Response:
        return self._send(request, answer.status, orjson.dumps(answer.body), answer.operation,
                          started)

    def _send(self, request: web.Request, status: int, body: bytes, operation: str,
              started: float) -> web.Response:
        accept = request.headers.get("Accept", "")
        ctype = GRAPHQL_RESPONSE if GRAPHQL_RESPONSE in accept else "application/json"
        self.count("graphql", operation, status, time.perf_counter() - started)
        return web.Response(status=status, body=body, content_type=ctype, charset="utf-8")

    # ----------------------------------------------------------------------------- SQL

    async def sql_post(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        status, body = await self._sql(request)
        self.count("sql", "sql", status, time.perf_counter() - started)
        return web.Response(status=status, body=body, content_type="application/json")

    async def _sql(self, request: web.Request) -> tuple[int, bytes]:
        if self.sql is None:
            return 503, orjson.dumps({"error": f"/sql is off: {self.sql_off}"})
        try:
            body = parse_request(await request.read())
        except ValueError as e:
            return 400, orjson.dumps({"error": f"the body is not JSON: {e}"})
        if not isinstance(body, dict):
            return 400, orjson.dumps({"error": "the body must be a JSON object"})
        try:
            result = await self.sql.run(body.get("sql"), body.get("params"))
        except SqlError as e:
            return e.status, orjson.dumps(e.body)
        return 200, result.body()

    # ---------------------------------------------------------------------- operations

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, _: web.Request) -> web.Response:
        why = self.reader.watch.unready()
        if why:
            return web.Response(status=503, text=f"not ready: {why}\n")
        return web.Response(text="ready\n")

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.REGISTRY),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
