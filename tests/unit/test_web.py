"""/healthz, /readyz and /status: the readiness rule as a table, then the real HTTP server."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from indexer.ops.readiness import ChainStatus, lag_threshold, readiness
from indexer.ops.web import MetricsServer


def chain(**changes: Any) -> ChainStatus:
    base: dict[str, Any] = {
        "chain": "demo", "chain_id": 1, "block_time": 12.0, "finality_depth": 64,
        "head": 1000, "safe": 936, "indexed": 936, "lag_blocks": 64, "lag_seconds": 768,
        "backlog_ranges": 0, "workers": 1, "last_commit": None,
    }
    base.update(changes)
    return ChainStatus(**base)


@pytest.mark.parametrize(("block_time", "threshold"), [
    (0.25, 120.0), (2.0, 120.0), (4.0, 120.0), (12.0, 360.0), (60.0, 1800.0),
])
def test_threshold_is_two_minutes_or_thirty_block_times(block_time: float, threshold: float):
    assert lag_threshold(block_time) == threshold


@pytest.mark.parametrize(("changes", "ready", "reason"), [
    ({}, True, ""),  # exactly the finality window behind: nothing to catch up
    ({"lag_seconds": 768 + 360}, True, ""),  # at the threshold
    ({"lag_seconds": 768 + 361, "lag_blocks": 95}, False, "lag 361 s"),
    # Not ready until the lag in seconds is measured, however small the lag in blocks.
    ({"lag_seconds": None, "lag_blocks": 64}, False, "lag in seconds not measured yet"),
    ({"lag_seconds": None, "lag_blocks": 0}, False, "lag in seconds not measured yet"),
    ({"head": 0, "lag_blocks": None}, False, "chain head not known yet"),
    ({"block_time": 1.0, "finality_depth": 0, "lag_seconds": 121, "lag_blocks": 121}, False,
     "over 120 s"),
    ({"block_time": 1.0, "finality_depth": 0, "lag_seconds": 119, "lag_blocks": 119}, True, ""),
])
def test_readiness_rule(changes: dict[str, Any], ready: bool, reason: str):
    got_ready, got_reason = readiness(chain(**changes))
    assert got_ready is ready
    assert reason in got_reason
    if not ready:
        assert got_reason.startswith("demo: ")


async def _get(port: int, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


async def test_endpoints_follow_the_status_provider():
    server = MetricsServer()
    port = await server.start(0, host="127.0.0.1")
    try:
        assert (await _get(port, "/healthz"))[0] == 200
        status, _, text = await _get(port, "/readyz")
        assert status == 503 and "starting" in text

        rows = [chain(), chain(chain="slow", chain_id=2, lag_seconds=5000, lag_blocks=400)]
        server.status = lambda: rows
        server.ready = True
        status, _, text = await _get(port, "/readyz")
        assert status == 503
        assert "slow: lag" in text and "demo" not in text

        rows[1] = chain(chain="slow", chain_id=2)
        assert (await _get(port, "/readyz"))[:1] == (200,)

        status, ctype, text = await _get(port, "/status")
        assert status == 200 and ctype.startswith("application/json")
        import orjson

        body = orjson.loads(text)
        assert body["ready"] is True
        assert [c["chain"] for c in body["chains"]] == ["demo", "slow"]
        first = body["chains"][0]
        for key in ("head", "indexed", "lag_blocks", "lag_seconds", "backlog_ranges", "workers",
                    "ready", "reason", "lag_threshold_seconds"):
            assert key in first
        assert first["lag_threshold_seconds"] == 360.0

        status, ctype, text = await _get(port, "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
    finally:
        await server.stop()
