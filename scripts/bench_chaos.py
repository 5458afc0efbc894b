"""End-to-end rate through the fault-injecting proxy against the same run straight to anvil.

    scripts/rpc-chaos --bench [--logs 300000] [--latency 0.05] [--max-logs 10000] [--repeat 2]

Generates ``--logs`` ERC-20 Transfer logs on a local anvil (blocks of 10,000), then runs the real
``indexer run --once`` into a fresh database twice per round: once straight to anvil, once
through the proxy adding ``--latency`` seconds to every request and refusing any eth_getLogs over
several blocks with more than ``--max-logs`` logs (Infura's shape, with its range hint).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.benchlib import events_in, timed_run  # noqa: E402
from tests.support.chaos import Chaos, ChaosProxy  # noqa: E402
from tests.support.cli import write_chain  # noqa: E402
from tests.support.contracts import Deployer  # noqa: E402
from tests.support.services import Anvil, database_url_for_tests  # noqa: E402
from tests.support.traffic import bulk_transfers  # noqa: E402


def run(chain: Path, rpc_url: str, admin: str) -> tuple[int, float]:
    stderr, wall = timed_run(chain, rpc_url, admin)
    return events_in(stderr), wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logs", type=int, default=300_000)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--max-logs", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()
    tmp = REPO / ".cache" / "bench"
    tmp.mkdir(parents=True, exist_ok=True)
    chain = write_chain(tmp / "anvil.yaml", get_logs_max_range=100)
    admin = database_url_for_tests()
    best: dict[str, tuple[int, float]] = {}
    with Anvil(gas_limit=2_000_000_000, extra_args=["--disable-code-size-limit"]) as node:
        system = Deployer(node.url).deploy()
        bulk_transfers(node.url, system.addresses.token_a, a.logs, logs_per_tx=2000,
                       txs_per_block=5)
        chaos = Chaos(latency=a.latency, max_logs=a.max_logs)
        with ChaosProxy(node.url, chaos) as proxy:
            for _ in range(a.repeat):
                for name, url in (("direct", node.url), ("proxy", proxy.url)):
                    events, wall = run(chain, url, admin)
                    print(f"  {name}: {events:,} events in {wall:.2f}s = {events / wall:,.0f}/s",
                          flush=True)
                    if name not in best or wall < best[name][1]:
                        best[name] = (events, wall)
            refused = proxy.seen["max_logs"]
    print(f"\nproxy: {a.latency * 1000:.0f} ms per request, at most {a.max_logs:,} logs per "
          f"eth_getLogs ({refused} refusals over the runs)")
    print("| run | events | seconds | events/s |\n|---|---|---|---|")
    for name, (events, wall) in best.items():
        print(f"| {name} | {events:,} | {wall:.2f} | {events / wall:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
