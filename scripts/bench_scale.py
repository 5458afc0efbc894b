"""Scaling benchmark: total throughput with 1, 2, 4 and 8 worker processes sharing one chain
through the Redis lease board, with the RPC behind a proxy that adds latency to every request
(the situation of a remote provider), and the CPU-bound case without it.

    scripts/bench-scale [--logs 300000] [--latency 0.05] [--workers 1,2,4,8] [--target-logs 2000]

Every run is the real ``indexer run --once --workers N`` into a fresh database. With latency,
each worker keeps one unit in flight (``--concurrency 1``) of about ``--target-logs`` logs, so one
worker is bound by the round trip, as behind a provider that caps answers; the CPU-bound rows use
the defaults (4 units in flight, 10,000 logs each). The chain holds blocks of 1,000 logs.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.benchlib import events_in, timed_run  # noqa: E402
from tests.support.cli import write_chain  # noqa: E402
from tests.support.contracts import Deployer  # noqa: E402
from tests.support.services import (  # noqa: E402
    Anvil,
    database_url_for_tests,
    free_port,
    redis_url_for_tests,
)
from tests.support.traffic import bulk_transfers  # noqa: E402


def _proxy(upstream: str, port: int, latency: float) -> None:
    """Forward bytes to ``upstream`` after ``latency`` seconds; parses nothing."""
    import aiohttp
    from aiohttp import web

    async def main() -> None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            await asyncio.sleep(latency)
            async with session.post(upstream, data=body,
                                    headers={"content-type": "application/json"}) as r:
                return web.Response(body=await r.read(), status=r.status,
                                    content_type="application/json")

        app = web.Application(client_max_size=1 << 30)
        app.router.add_post("/", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def run(chain: Path, rpc_url: str, admin: str, redis_url: str, workers: int,
        extra: list[str]) -> tuple[int, float]:
    stderr, wall = timed_run(chain, rpc_url, admin, ["--workers", str(workers), *extra],
                             {"REDIS_URL": redis_url})
    return events_in(stderr), wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logs", type=int, default=300_000)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--workers", default="1,2,4,8")
    p.add_argument("--target-logs", type=int, default=2000)
    a = p.parse_args()
    counts = [int(x) for x in a.workers.split(",")]
    admin = database_url_for_tests()
    redis_url = redis_url_for_tests()
    if redis_url is None:
        raise SystemExit("no Redis: set TEST_REDIS_URL or run one on 127.0.0.1:6379")
    tmp = REPO / ".cache" / "bench"
    tmp.mkdir(parents=True, exist_ok=True)
    chain = write_chain(tmp / "anvil-scale.yaml", get_logs_max_range=16)
    rows = []
    with Anvil(gas_limit=2_000_000_000) as node:
        system = Deployer(node.url).deploy()
        # Blocks of 1,000 logs: a unit of --target-logs spans a few blocks.
        bulk_transfers(node.url, system.addresses.token_a, a.logs, logs_per_tx=1000,
                       txs_per_block=1)
        port = free_port()
        proxy = multiprocessing.Process(target=_proxy, args=(node.url, port, a.latency),
                                        daemon=True)
        proxy.start()
        time.sleep(1.0)
        try:
            slow = ["--concurrency", "1", "--target-logs", str(a.target_logs)]
            for n in counts:
                events, wall = run(chain, f"http://127.0.0.1:{port}", admin, redis_url, n, slow)
                rows.append((f"+{a.latency * 1000:.0f} ms latency", n, events, wall))
                print(f"  latency workers={n}: {events / wall:,.0f} events/s", flush=True)
        finally:
            proxy.terminate()
        for n in (1, 2):
            events, wall = run(chain, node.url, admin, redis_url, n, [])
            rows.append(("no added latency", n, events, wall))
            print(f"  cpu-bound workers={n}: {events / wall:,.0f} events/s", flush=True)
    print()
    print("| RPC | workers | events | seconds | events/s | vs 1 worker | vs N x 1 worker |")
    print("|---|---|---|---|---|---|---|")
    base: dict[str, float] = {}
    for label, n, events, wall in rows:
        rate = events / wall
        base.setdefault(label, rate)
        print(f"| {label} | {n} | {events:,} | {wall:.2f} | {rate:,.0f} | "
              f"{rate / base[label]:.2f}x | {rate / (base[label] * n):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
