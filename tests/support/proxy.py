"""A JSON-RPC proxy of our own in front of anvil that rewrites answers, for tests of how the
indexer copes with nodes that differ from anvil. Runs in a thread; use as a context manager."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.support.services import free_port

Rewrite = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]  # (request, reply) -> reply


class RpcProxy:
    def __init__(self, upstream: str, rewrite: Rewrite) -> None:
        self.upstream = upstream
        self.rewrite = rewrite
        self.port = free_port()
        self.calls: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        assert self._session is not None
        async with self._session.post(self.upstream, data=orjson.dumps(body),
                                      headers={"content-type": "application/json"}) as r:
            answer = orjson.loads(await r.read())
        if isinstance(body, list):
            out: Any = [self._one(q, a) for q, a in zip(body, answer, strict=True)]
        else:
            out = self._one(body, answer)
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    def _one(self, request: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        method = request.get("method", "")
        self.calls[method] = self.calls.get(method, 0) + 1
        return self.rewrite(request, reply)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=1 << 30)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def __enter__(self) -> RpcProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
