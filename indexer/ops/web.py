"""HTTP endpoints of every process: ``/metrics`` (Prometheus text), ``/healthz`` (alive),
``/readyz`` (set up, and every chain's lag under its threshold: ``readiness``) and ``/status``
(JSON per chain)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from indexer.metrics import REGISTRY
from indexer.ops.readiness import ChainStatus, readiness

log = logging.getLogger(__name__)

StatusProvider = Callable[[], list[ChainStatus]]


class MetricsServer:
    def __init__(self) -> None:
        self.ready = False  # set once the process is set up (database, RPC reached)
        self.status: StatusProvider | None = None
        self._runner: web.AppRunner | None = None

    async def start(self, port: int, host: str = "0.0.0.0") -> int:
        """Serve on ``port`` (0: any free port); returns the port bound."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as e:
            raise SystemExit(
                f"cannot serve metrics on port {port}: {e.strerror}; set INDEXER_METRICS_PORT "
                f"to a free port (0 picks one)"
            ) from e
        server = site._server
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def chains(self) -> list[ChainStatus]:
        return self.status() if self.status is not None else []

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(status=503, text="not ready: starting\n")
        if self.status is None:
            return web.Response(status=503, text="not ready: no chain is running yet\n")
        reasons = [reason for ready, reason in map(readiness, self.chains()) if not ready]
        if reasons:
            return web.Response(status=503, text="not ready: " + "; ".join(reasons) + "\n")
        return web.Response(text="ready\n")

    async def _status(self, _: web.Request) -> web.Response:
        body = orjson.dumps({"ready": self.ready, "chains": [c.as_json() for c in self.chains()]},
                            option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
        return web.Response(body=body + b"\n", content_type="application/json")
