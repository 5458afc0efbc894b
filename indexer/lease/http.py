"""The lease board of one host without Redis: ``indexer run --workers N`` keeps a
``MemoryLeaseBoard`` in the parent process and serves it on 127.0.0.1 to its workers, which use
``HttpLeaseBoard``. Same protocol and guarantees as the Redis board, for one host.

The URL carries a random secret; requests without it are refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from indexer.lease.board import Holding, Lease, LeaseLost, MemoryLeaseBoard
from indexer.types import BlockRange


def _lease_json(lease: Lease) -> dict[str, Any]:
    return {"chain": lease.chain, "group": lease.group, "start": lease.range.start,
            "end": lease.range.end, "token": lease.token, "fence": lease.fence,
            "worker": lease.worker}


def _lease(d: dict[str, Any]) -> Lease:
    return Lease(d["chain"], d["group"], BlockRange(d["start"], d["end"]), d["token"],
                 d["fence"], d["worker"])


class LeaseServer:
    def __init__(self, board: MemoryLeaseBoard) -> None:
        self.board = board
        self.secret = secrets.token_hex(16)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post(f"/{self.secret}/{{op}}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/{self.secret}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        op = request.match_info["op"]
        a = orjson.loads(await request.read())
        b = self.board
        out: Any = None
        if op == "claim":
            got = await b.claim(a["chain"], a["group"],
                                [BlockRange(s, e) for s, e in a["candidates"]], a["size"],
                                a["worker"])
            out = None if got is None else _lease_json(got)
        elif op == "extend":
            try:
                await b.extend(_lease(a["lease"]))
                out = True
            except LeaseLost:
                out = False
        elif op == "release":
            await b.release(_lease(a["lease"]), a["done"])
        elif op == "held":
            out = [{"group": h.group, "start": h.range.start, "end": h.range.end,
                    "worker": h.worker, "fence": h.fence, "done": h.done}
                   for h in await b.held(a["chain"])]
        elif op == "heartbeat":
            await b.heartbeat(a["chain"], a["worker"])
        elif op == "workers":
            out = await b.workers(a["chain"])
        elif op == "raise_fence":
            await b.raise_fence(a["chain"], a["floor"])
        elif op == "forget_done":
            out = await b.forget_done(a["chain"], a["above"])
        else:
            raise web.HTTPNotFound()
        return web.Response(body=orjson.dumps(out), content_type="application/json")


class HttpLeaseBoard:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def _call(self, op: str, **args: Any) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        async with self._session.post(f"{self.url}/{op}", data=orjson.dumps(args)) as r:
            r.raise_for_status()
            return orjson.loads(await r.read())

    async def claim(
        self, chain: str, group: str, candidates: Sequence[BlockRange], size: int, worker: str
    ) -> Lease | None:
        got = await self._call("claim", chain=chain, group=group, size=size, worker=worker,
                               candidates=[(c.start, c.end) for c in candidates])
        return None if got is None else _lease(got)

    async def extend(self, lease: Lease) -> None:
        if not await self._call("extend", lease=_lease_json(lease)):
            raise LeaseLost(f"lease on {lease.group} {lease.range} of {lease.chain} is lost")

    async def release(self, lease: Lease, done: bool) -> None:
        await self._call("release", lease=_lease_json(lease), done=done)

    async def held(self, chain: str) -> list[Holding]:
        return [Holding(h["group"], BlockRange(h["start"], h["end"]), h["worker"], h["fence"],
                        h["done"]) for h in await self._call("held", chain=chain)]

    async def heartbeat(self, chain: str, worker: str) -> None:
        await self._call("heartbeat", chain=chain, worker=worker)

    async def workers(self, chain: str) -> list[str]:
        return list(await self._call("workers", chain=chain))

    async def raise_fence(self, chain: str, floor: int) -> None:
        await self._call("raise_fence", chain=chain, floor=floor)

    async def forget_done(self, chain: str, above: int) -> int:
        return int(await self._call("forget_done", chain=chain, above=above))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
