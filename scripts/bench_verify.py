"""What checking the tables against the chain costs, on the transfers chain of scripts/bench
(1,000,000 Transfer logs in blocks of 10,000 and one block of 100,000; its cached state):

    scripts/bench-verify [--repeat 3] [--proof] [--sample 0.01]

Per round, into a fresh database on the same reloaded chain:
- ``backfill``: ``indexer run --once`` (what the others are compared with);
- ``verify``: then ``indexer verify`` over every indexed block (exit 0 expected: equal);
- ``verify --proof`` (with ``--proof``): the same, every block's receipts checked against its
  receiptsRoot; its cost per block is reported;
- ``sampled backfill``: ``indexer run --once`` with ``verify: {sample: S}`` in the chain file
  (the background verifier checks that share of the committed units), into another database;
  the overhead against ``backfill`` is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.bench import CACHE, prepare_chain, serve  # noqa: E402
from tests.support.services import (  # noqa: E402
    database_url_for_tests,
    drop_database,
    fresh_database,
)


def timed(args: list[str], url: str, rpc_url: str, want: int = 0) -> tuple[float, str]:
    env = dict(os.environ, DATABASE_URL=url, ANVIL_RPC_URL=rpc_url, INDEXER_METRICS_PORT="0")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "indexer", *args], env=env,
                          capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != want:
        raise SystemExit(f"indexer {' '.join(args)} exited {proc.returncode}, expected {want}:\n"
                         f"{proc.stdout[-1500:]}{proc.stderr[-3000:]}")
    return wall, proc.stdout + proc.stderr


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--proof", action="store_true", help="also time verify --proof")
    p.add_argument("--sample", type=float, default=0.01,
                   help="share of units the background verifier checks (default 0.01)")
    a = p.parse_args()
    ns = argparse.Namespace(logs=1_000_000, dense=100_000, fresh_chain=False,
                            uniswap_rounds=0, mixed_logs=0, mixed_block_logs=0)
    chain = prepare_chain("transfers", ns)
    base = yaml.safe_load(chain.config.read_text())
    folder = CACHE / "verify"
    folder.mkdir(parents=True, exist_ok=True)
    plain = chain.config
    sampled = folder / "sampled.yaml"
    sampled.write_text(yaml.safe_dump(dict(base, verify={"sample": a.sample}), sort_keys=False))
    admin = database_url_for_tests()
    runs: dict[str, list[float]] = {"backfill": [], "verify": [], "sampled backfill": []}
    if a.proof:
        runs["verify --proof"] = []
    blocks = chain.facts["head"] + 1
    with serve(chain) as node:
        for i in range(a.repeat):
            url = asyncio.run(fresh_database(admin, prefix="bench_verify"))
            other = asyncio.run(fresh_database(admin, prefix="bench_verify"))
            try:
                runs["backfill"].append(timed(["run", "--chain", str(plain), "--once"],
                                              url, node.url)[0])
                runs["verify"].append(timed(["verify", "--chain", str(plain)], url, node.url)[0])
                if a.proof:
                    runs["verify --proof"].append(
                        timed(["verify", "--chain", str(plain), "--proof"], url, node.url)[0])
                wall, out = timed(["run", "--chain", str(sampled), "--once"], other, node.url)
                runs["sampled backfill"].append(wall)
            finally:
                asyncio.run(drop_database(admin, url))
                asyncio.run(drop_database(admin, other))
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in runs.items()),
                  flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"\nThe transfers chain: {chain.facts['logs']:,} logs in {blocks} blocks; medians of "
          f"{a.repeat} rounds.\n\n| run | seconds | vs backfill |\n|---|---|---|")
    for k in runs:
        print(f"| {k} | {med[k]:.2f} | {med[k] / med['backfill']:.2f}x |")
    ratios = [s / b for s, b in zip(runs["sampled backfill"], runs["backfill"], strict=True)]
    print(f"\nsampled ({a.sample:g}) / plain backfill, median of per-round ratios: "
          f"{statistics.median(ratios):.3f} (rounds {', '.join(f'{r:.3f}' for r in ratios)})")
    if a.proof:
        extra = med["verify --proof"] - med["verify"]
        print(f"--proof: {extra / blocks * 1000:.1f} ms per block more than verify "
              f"({med['verify --proof'] / blocks * 1000:.1f} ms per block in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
