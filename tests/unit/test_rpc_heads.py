"""The newHeads subscription against a websocket server served by aiohttp inside the test: a
refused handshake is logged without the secrets of the URL (aiohttp's error quotes it whole)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from aiohttp import web

from indexer.rpc.heads import HeadSubscription

PATH_KEY = "pathkey0123456789abcdef"
QUERY_KEY = "querykey9876543210fedcba"


async def test_a_refused_handshake_is_logged_without_the_keys_of_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.Response(status=403, text="forbidden")

    app = web.Application()
    app.router.add_get("/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"ws://127.0.0.1:{port}/v3/{PATH_KEY}?apikey={QUERY_KEY}"
    subscription = HeadSubscription(url, "demo", asyncio.Event(), stale_after=3.0)
    caplog.set_level(logging.WARNING, logger="indexer.rpc.heads")
    task = asyncio.create_task(subscription.run())
    try:
        for _ in range(500):
            if caplog.records:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.cleanup()
    assert seen and PATH_KEY in seen[0] and QUERY_KEY in seen[0]  # the keys went on the wire
    [record] = caplog.records
    text = record.getMessage()
    assert "403" in text and "0:127.0.0.1" in text  # what happened, and where
    assert PATH_KEY not in text and QUERY_KEY not in text, text
