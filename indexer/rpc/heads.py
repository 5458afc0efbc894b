"""New heads over a websocket (``eth_subscribe newHeads``): wakes the live tail as soon as a
block is announced, instead of at its next poll.

The subscription only wakes; the follower still asks for the head over HTTP and checks it. A
stale-head watchdog declares the subscription stalled when no head came for ``stale_after``
seconds (a connection that stays open but stopped delivering, a node that dropped the
subscription); the follower then polls at its normal interval, and the subscription is opened
again with a back-off until heads flow.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import orjson

from indexer.config import RpcEndpoint
from indexer.retry import backoff
from indexer.rpc import wire
from indexer.rpc.transport import Endpoint

log = logging.getLogger(__name__)


class HeadSubscription:
    def __init__(self, url: str, chain: str, wake: asyncio.Event, stale_after: float) -> None:
        self.url = url
        self._endpoint = Endpoint(RpcEndpoint(url), 0)  # its label and the secrets of its URL
        self.label = self._endpoint.label
        self.chain = chain
        self.wake = wake
        self.stale_after = stale_after
        self.last_head: float | None = None  # monotonic time of the last newHeads message
        self.heads = 0
        self._stalled_logged = False

    @property
    def healthy(self) -> bool:
        """Heads arrived within ``stale_after`` seconds."""
        return self.last_head is not None and time.monotonic() - self.last_head < self.stale_after

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._session()
                failures = 0
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
                failures += 1
                # aiohttp's handshake errors quote the whole URL, API key included.
                log.warning("%s: newHeads over %s: %s; polling meanwhile", self.chain,
                            self.label, self._endpoint.scrub(f"{type(e).__name__}: {e}"))
            await asyncio.sleep(backoff(failures + 1, base=0.5, cap=30.0))

    async def _session(self) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(
            self.url, heartbeat=max(5.0, self.stale_after), max_msg_size=0,
        ) as ws:
            await ws.send_bytes(wire.encode(1, "eth_subscribe", ["newHeads"]))
            log.info("%s: newHeads subscribed over %s", self.chain, self.label)
            while True:
                try:
                    msg = await ws.receive(timeout=self.stale_after)
                except TimeoutError:
                    # The watchdog: open but silent for too long. Start over.
                    raise TimeoutError(f"no new head for {self.stale_after:.0f}s") from None
                if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                                aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                    raise aiohttp.ClientError(f"websocket closed ({msg.type.name})")
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    continue
                doc = orjson.loads(msg.data)
                if isinstance(doc, dict) and "error" in doc:
                    raise ValueError(f"eth_subscribe refused: {str(doc['error'])[:200]}")
                if isinstance(doc, dict) and doc.get("method") == "eth_subscription":
                    self.last_head = time.monotonic()
                    self.heads += 1
                    self.wake.set()
