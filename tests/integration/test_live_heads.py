"""New heads over a websocket: anvil's eth_subscribe wakes the live tail; a subscription that
goes silent is caught by the stale-head watchdog and polling carries on."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from indexer.rpc.heads import HeadSubscription
from tests.support.cli import env_for, start_indexer, stop, wait_for, write_chain
from tests.support.contracts import Deployed


class SilentHeads:
    """A websocket endpoint that accepts eth_subscribe and then never sends a head (and
    claims chain id 1)."""

    def __init__(self) -> None:
        self.connections = 0
        self.subscribed = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        async for msg in ws:
            data = msg.data if isinstance(msg.data, str) else bytes(msg.data).decode()
            if '"eth_subscribe"' in data:
                self.subscribed += 1
                await ws.send_str('{"jsonrpc":"2.0","id":1,"result":"0x1"}')
            elif '"eth_chainId"' in data:  # another chain than anvil's
                await ws.send_str('{"jsonrpc":"2.0","id":1,"result":"0x1"}')
        return ws

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/", self._ws)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"ws://127.0.0.1:{self.port}/"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def test_anvil_new_heads_wake_the_follower(deployed: Deployed):
    wake = asyncio.Event()
    sub = HeadSubscription(deployed.url.replace("http://", "ws://"), "anvil", wake, stale_after=5)
    task = asyncio.create_task(sub.run())
    try:
        await asyncio.sleep(0.5)  # subscribed
        for _ in range(3):
            wake.clear()
            deployed.rpc.call("evm_mine")
            await asyncio.wait_for(wake.wait(), 5)
        assert sub.heads >= 3
        assert sub.healthy
    finally:
        task.cancel()


async def test_a_silent_subscription_is_declared_stale_and_opened_again():
    server = SilentHeads()
    url = await server.start()
    wake = asyncio.Event()
    sub = HeadSubscription(url, "anvil", wake, stale_after=0.5)
    task = asyncio.create_task(sub.run())
    try:
        deadline = time.monotonic() + 10
        while server.subscribed < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        # The server never closes: only the client's watchdog ends a subscription.
        assert server.subscribed >= 2, "the watchdog never gave up on the silent subscription"
        assert not sub.healthy and not wake.is_set()
    finally:
        task.cancel()
        await server.stop()


async def _stored(url: str, number: int) -> bool:
    try:
        conn = await asyncpg.connect(url)
    except OSError:
        return False
    try:
        return bool(await conn.fetchval(
            "SELECT count(*) FROM indexer.blocks WHERE chain_id = 31337 AND number = $1 AND live",
            number))
    except asyncpg.UndefinedTableError:
        return False
    finally:
        await conn.close()


def _head(deployed: Deployed) -> int:
    return int(deployed.rpc.call("eth_blockNumber"), 16)


@pytest.mark.parametrize("heads", ["anvil", "silent"])
def test_live_tail_follows_with_a_websocket_and_falls_back_to_polling(
    deployed: Deployed, database_url: str, tmp_path: Path, heads: str
):
    """With anvil's newHeads, a block is indexed long before the (deliberately slow) poll; with
    a silent subscription the watchdog hands the work back to polling at the normal interval."""
    silent = SilentHeads()
    loop = asyncio.new_event_loop()
    ws = loop.run_until_complete(silent.start()) if heads == "silent" else \
        deployed.url.replace("http://", "ws://")
    # The silent server needs its loop running while the indexer talks to it.
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    poll = "60s" if heads == "anvil" else "200ms"
    chain = write_chain(tmp_path / "anvil.yaml", finality_depth=2, ws_url=ws, poll_interval=poll)
    proc = start_indexer(["run", "--chain", str(chain)], env_for(database_url, deployed.url),
                         log=tmp_path / "run.log")
    try:
        for _ in range(3):
            deployed.rpc.call("evm_mine")
        # The first poll happens at once; after it, only a head announcement (anvil) or the
        # fallback polling (silent) can bring the next blocks in before the 60 s poll.
        wait_for(lambda: asyncio.run(_stored(database_url, _head(deployed))), timeout=30)
        if heads == "silent":  # the watchdog gives up on the silent subscription...
            wait_for(lambda: "no new head for" in (tmp_path / "run.log").read_text(), timeout=30)
        for _ in range(2):  # ...and blocks keep coming in
            deployed.rpc.call("evm_mine")
            target = _head(deployed)
            wait_for(lambda t=target: asyncio.run(_stored(database_url, t)), timeout=20)
    finally:
        stop(proc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    log = (tmp_path / "run.log").read_text()
    assert "newHeads subscribed" in log, log[-2000:]
    if heads == "silent":
        assert silent.subscribed >= 1


def test_chain_add_writes_a_websocket_that_answers_new_heads(deployed: Deployed, tmp_path: Path):
    from indexer.config import load_chain
    from tests.support.cli import indexer

    ws = deployed.url.replace("http://", "ws://")
    env = env_for(None, deployed.url)
    res = indexer(["chain", "add", "devnet", "--rpc", deployed.url, "--ws", ws], env, cwd=tmp_path)
    assert res.code == 0, res.err
    chain = load_chain(tmp_path / "chains" / "devnet.yaml", env={})
    assert chain.ws_url == ws
    server = SilentHeads()  # a websocket of another chain is not written
    loop = asyncio.new_event_loop()
    silent_url = loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        res = indexer(["chain", "add", "devnet2", "--rpc", deployed.url, "--ws", silent_url],
                      env, cwd=tmp_path)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    assert res.code == 0, res.err
    assert "serves chain id 0x1" in res.out + res.err
    assert load_chain(tmp_path / "chains" / "devnet2.yaml", env={}).ws_url is None
