"""HTTP endpoints of every process: ``/metrics`` (Prometheus text), ``/healthz`` (alive),
``/readyz`` (set up, and every chain's lag under its threshold) and ``/status`` (JSON per chain).

Readiness: a chain is ready when its lag, beyond what its finality depth explains, is under
``max(2 minutes, 30 x block time)``. Lag is measured in seconds when the head watch knows the
block times, else estimated from blocks x block time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from indexer.metrics import REGISTRY

log = logging.getLogger(__name__)

# One object per chain, from ChainRunner.status(): chain, chain_id, block_time, finality_depth,
# head, safe, indexed, lag_blocks, lag_seconds, backlog_ranges, workers, last_commit.
StatusProvider = Callable[[], list[dict[str, Any]]]

MIN_LAG_THRESHOLD = 120.0  # seconds
LAG_THRESHOLD_BLOCKS = 30  # block times


def lag_threshold(block_time: float) -> float:
    """Seconds of lag (beyond the finality window) a chain may have and still be ready."""
    return max(MIN_LAG_THRESHOLD, LAG_THRESHOLD_BLOCKS * block_time)


def excess_lag_seconds(chain: dict[str, Any]) -> float | None:
    """Lag beyond the finality window, in seconds; None while the head is not known."""
    block_time = float(chain.get("block_time") or 0.0)
    depth = int(chain.get("finality_depth") or 0)
    if not chain.get("head") or chain.get("lag_blocks") is None:
        return None
    if chain.get("lag_seconds") is not None:
        seconds = float(chain["lag_seconds"])
    else:
        seconds = float(chain["lag_blocks"]) * block_time
    return max(0.0, seconds - depth * block_time)


def readiness(chain: dict[str, Any]) -> tuple[bool, str]:
    """(ready, reason) of one chain's status."""
    name = chain.get("chain", "?")
    lag = excess_lag_seconds(chain)
    if lag is None:
        return False, f"{name}: chain head not known yet"
    limit = lag_threshold(float(chain.get("block_time") or 0.0))
    if lag > limit:
        return False, (f"{name}: lag {lag:.0f} s beyond the finality window "
                       f"({chain.get('lag_blocks')} blocks behind the head) is over {limit:.0f} s")
    return True, ""


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

    def chains(self) -> list[dict[str, Any]]:
        """The provider's per-chain status, each with ``ready``, ``reason`` and the lag
        threshold added."""
        rows = [dict(r) for r in self.status()] if self.status is not None else []
        for row in rows:
            row["ready"], row["reason"] = readiness(row)
            row["lag_threshold_seconds"] = lag_threshold(float(row.get("block_time") or 0.0))
        return rows

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(status=503, text="not ready: starting\n")
        if self.status is None:
            return web.Response(status=503, text="not ready: no chain is running yet\n")
        reasons = [r["reason"] for r in self.chains() if not r["ready"]]
        if reasons:
            return web.Response(status=503, text="not ready: " + "; ".join(reasons) + "\n")
        return web.Response(text="ready\n")

    async def _status(self, _: web.Request) -> web.Response:
        body = orjson.dumps({"ready": self.ready, "chains": self.chains()},
                            option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
        return web.Response(body=body + b"\n", content_type="application/json")
