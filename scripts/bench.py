"""End-to-end benchmark: a generated anvil chain indexed into Postgres by the real command.

    scripts/bench [--logs 1000000] [--dense 100000] [--workers 1,2] [--uniswap-rounds 1500]
                  [--pooler no,yes,pgbouncer]

Workloads (generated fresh on a local anvil, several transactions per block):
- ``transfers``: ``--logs`` ERC-20 Transfer logs in blocks of 10,000, plus one block holding
  ``--dense`` logs (one range that cannot be split);
- ``uniswap``: the demo system (WETH9, Uniswap V2 factory, pairs, two tokens) under mixed
  traffic: swaps, liquidity, transfers, wraps.

For each workload and worker count, ``indexer run --once --workers N`` runs into a fresh
database; the figures are events/s over the whole command (start-up included), peak RSS of the
largest process, and time by stage summed over units. Runs of one workload alternate worker
counts side by side, so the ratio between them is fair on a noisy machine.

``--pooler``: also alternate the database connection: ``no`` (direct, asyncpg's statement
cache on: the default on a direct connection), ``yes`` (direct, as behind a pooler: no
statement cache), ``pgbouncer`` (through a PgBouncer in transaction mode started in front of
the server, found out at connect).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.benchlib import events_in, timed_run  # noqa: E402
from tests.support.cli import write_chain  # noqa: E402
from tests.support.contracts import Deployer  # noqa: E402
from tests.support.services import Anvil, database_url_for_tests  # noqa: E402
from tests.support.traffic import bulk_transfers, run_traffic  # noqa: E402

STAGE = re.compile(r"time by stage: fetch ([\d.]+)s, decode ([\d.]+)s, write ([\d.]+)s")
PEAK = re.compile(r"peak RSS (\d+) MB")


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logs", type=int, default=1_000_000, help="Transfer logs (default 1,000,000)")
    p.add_argument("--dense", type=int, default=100_000,
                   help="logs in the one dense block (default 100,000; 0 for none)")
    p.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    p.add_argument("--repeat", type=int, default=1, help="runs per worker count (best is kept)")
    p.add_argument("--uniswap-rounds", type=int, default=6000,
                   help="traffic rounds of the Uniswap workload (0 to skip)")
    p.add_argument("--pooler", default="",
                   help="connections to compare: no,yes,pgbouncer (default: the default)")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args()


def generate_transfers(node: Anvil, logs: int, dense: int) -> dict[str, int]:
    system = Deployer(node.url).deploy()
    t0 = time.perf_counter()
    bulk_transfers(node.url, system.addresses.token_a, logs, logs_per_tx=2000, txs_per_block=5)
    if dense:
        bulk_transfers(node.url, system.addresses.token_b, dense, logs_per_tx=2000,
                       txs_per_block=max(1, dense // 2000))
    head = int(system.rpc.call("eth_blockNumber"), 16)
    return {"head": head, "logs": logs + dense, "generate_seconds": round(time.perf_counter() - t0, 1)}


def generate_uniswap(node: Anvil, rounds: int) -> dict[str, int]:
    system = Deployer(node.url).deploy()
    t0 = time.perf_counter()
    run_traffic(system, rounds=rounds, seed=1, txs_per_block=50)
    head = int(system.rpc.call("eth_blockNumber"), 16)
    return {"head": head, "generate_seconds": round(time.perf_counter() - t0, 1)}


def run_once(chain: Path, workers: int, admin_url: str, rpc_url: str,
             pooler: str = "") -> dict[str, float]:
    env, through = {}, None
    if pooler in ("no", "yes"):
        env["INDEXER_DB_POOLER"] = pooler
    elif pooler == "pgbouncer":
        through = _pgbouncer(admin_url)
    stderr, wall = timed_run(chain, rpc_url, admin_url, ["--workers", str(workers)], env,
                             through)
    events = events_in(stderr)
    stages = [0.0, 0.0, 0.0]
    for m in STAGE.findall(stderr):
        for i in range(3):
            stages[i] += float(m[i])
    return {
        "workers": workers,
        "events": events,
        "seconds": round(wall, 2),
        "events_per_second": round(events / wall),
        "peak_rss_mb": max((int(m) for m in PEAK.findall(stderr)), default=0),
        "fetch_s": round(stages[0], 1),
        "decode_s": round(stages[1], 1),
        "write_s": round(stages[2], 1),
    }


_BOUNCERS: dict[str, object] = {}


def _pgbouncer(admin_url: str):  # type: ignore[no-untyped-def]
    """A PgBouncer (transaction mode) in front of the admin URL's server, started once; the
    function giving a database's URL through it."""
    from urllib.parse import urlsplit, urlunsplit

    from tests.support.pgcluster import PgBouncer

    parts = urlsplit(admin_url)
    bouncer = _BOUNCERS.get(admin_url)
    if bouncer is None:
        bouncer = _BOUNCERS[admin_url] = PgBouncer(parts.port or 5432, pool_size=20).start()

    def through(url: str) -> str:
        p = urlsplit(url)
        return urlunsplit(p._replace(netloc=f"postgres@127.0.0.1:{bouncer.port}"))  # type: ignore[attr-defined]

    return through


def bench(name: str, node: Anvil, chain: Path, counts: list[int], repeat: int,
          poolers: list[str]) -> list[dict]:
    admin = database_url_for_tests()
    best: dict[tuple[int, str], dict] = {}
    for _ in range(repeat):
        for n in counts:  # alternate so all see the same machine
            for pooler in poolers:
                r = run_once(chain, n, admin, node.url, pooler)
                print(f"  {name} workers={n}{f' pooler={pooler}' if pooler else ''}: "
                      f"{r['events']:,} events in {r['seconds']}s = {r['events_per_second']:,}/s,"
                      f" peak RSS {r['peak_rss_mb']} MB", flush=True)
                key = (n, pooler)
                if key not in best or r["events_per_second"] > best[key]["events_per_second"]:
                    best[key] = r
    return [dict(best[(n, p)], workload=f"{name} ({p})" if p else name)
            for n in counts for p in poolers]


def table(rows: list[dict]) -> str:
    head = "| workload | workers | events | seconds | events/s | vs 1 worker | peak RSS MB | fetch s | decode s | write s |"
    out = [head, "|" + "---|" * 10]
    base = {r["workload"]: r["events_per_second"] for r in rows if r["workers"] == 1}
    for r in rows:
        ratio = r["events_per_second"] / base[r["workload"]] if r["workload"] in base else float("nan")
        out.append(
            f"| {r['workload']} | {r['workers']} | {r['events']:,} | {r['seconds']} | "
            f"{r['events_per_second']:,} | {ratio:.2f}x | {r['peak_rss_mb']} | {r['fetch_s']} | "
            f"{r['decode_s']} | {r['write_s']} |"
        )
    return "\n".join(out)


def main() -> int:
    a = args()
    counts = [int(x) for x in a.workers.split(",")]
    poolers = [x.strip() for x in a.pooler.split(",")] if a.pooler else [""]
    tmp = REPO / ".cache" / "bench"
    tmp.mkdir(parents=True, exist_ok=True)
    chain = write_chain(tmp / "anvil.yaml", get_logs_max_range=100)
    rows: list[dict] = []
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}", flush=True)
    with Anvil(gas_limit=2_000_000_000, extra_args=["--disable-code-size-limit"]) as node:
        info = generate_transfers(node, a.logs, a.dense)
        print(f"transfers chain: {info}", flush=True)
        rows += bench("transfers", node, chain, counts, a.repeat, poolers)
    if a.uniswap_rounds:
        with Anvil(gas_limit=2_000_000_000) as node:
            info = generate_uniswap(node, a.uniswap_rounds)
            print(f"uniswap chain: {info}", flush=True)
            rows += bench("uniswap", node, chain, counts, a.repeat, poolers)
    for bouncer in _BOUNCERS.values():
        bouncer.stop()  # type: ignore[attr-defined]
    print()
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
