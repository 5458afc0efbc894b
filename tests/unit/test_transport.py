"""The POST of one request: an answer past the size cap is refused as soon as it is known to be
(by its Content-Length, or while it streams without one), never read whole; one within it is
parsed (against an HTTP server in the test)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from indexer.rpc.errors import AnswerTooLarge
from indexer.rpc.transport import http_post

BODY = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": ["0x" + "ab" * 512] * 64})


async def _sized(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


async def _streamed(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    resp.content_type = "application/json"
    await resp.prepare(request)
    for i in range(0, len(BODY), 4096):
        await resp.write(BODY[i:i + 4096])
    await resp.write_eof()
    return resp


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/sized", _sized)
    app.router.add_post("/streamed", _streamed)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.parametrize("path", ["/sized", "/streamed"])
async def test_an_answer_within_the_cap_is_parsed(server: str, path: str) -> None:
    async with aiohttp.ClientSession() as session:
        got = await http_post(session, server + path, b"{}", aiohttp.ClientTimeout(total=10),
                              len(BODY), None)
    assert got == orjson.loads(BODY)


@pytest.mark.parametrize("path", ["/sized", "/streamed"])
async def test_an_answer_past_the_cap_is_refused(server: str, path: str) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(AnswerTooLarge):
            await http_post(session, server + path, b"{}", aiohttp.ClientTimeout(total=10),
                            len(BODY) - 1, None)
