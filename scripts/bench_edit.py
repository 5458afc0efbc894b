"""What an edit of an indexed chain file costs: on the transfers chain (1,000,000 Transfer logs
of one token) fully indexed, a second token with ``--added`` logs is added to the chain file and
the same command run again. It must take a time proportional to the added logs, not to the
chain: it is compared with indexing that token alone into a fresh database.

    scripts/bench-edit [--added 10000] [--repeat 3]

Per round, each into a fresh database on the same reloaded chain (scripts/bench's cache):
``full``: the first token over the whole chain; ``edit``: then the file with the second token
added, run again (what is timed); ``alone``: the second token only, into another database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
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

EVENTS = re.compile(r"([\d,]+) events in")


def chain_file(path: Path, base: dict, contracts: list[dict]) -> Path:
    data = dict(base, contracts=contracts)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(chain: Path, url: str, rpc_url: str) -> tuple[float, int]:
    env = dict(os.environ, DATABASE_URL=url, ANVIL_RPC_URL=rpc_url, INDEXER_METRICS_PORT="0")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "indexer", "run", "--chain", str(chain),
                           "--once"], env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"indexer failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    events = sum(int(m.replace(",", "")) for m in EVENTS.findall(proc.stderr))
    return wall, events


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--added", type=int, default=10_000, help="logs of the added token")
    p.add_argument("--logs", type=int, default=1_000_000, help="logs of the first token")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    ns = argparse.Namespace(logs=a.logs, dense=a.added, fresh_chain=False,
                            uniswap_rounds=0, mixed_logs=0, mixed_block_logs=0)
    chain = prepare_chain("transfers", ns)
    base = yaml.safe_load(chain.config.read_text())
    erc20 = str(REPO / "chains" / "abis" / "erc20.json")
    first = {"name": "DemoToken", "abi": erc20, "address": chain.facts["addresses"]["TestTokenA"]}
    added = {"name": "Added", "abi": erc20, "address": chain.facts["addresses"]["TestTokenB"]}
    tmp = CACHE / "edit"
    tmp.mkdir(parents=True, exist_ok=True)
    before = chain_file(tmp / "before.yaml", base, [first])
    after = chain_file(tmp / "after.yaml", base, [first, added])
    alone = chain_file(tmp / "alone.yaml", base, [added])
    admin = database_url_for_tests()
    rows: dict[str, list[tuple[float, int]]] = {"full": [], "edit": [], "alone": []}
    with serve(chain) as node:
        for i in range(a.repeat):
            url = asyncio.run(fresh_database(admin, prefix="bench_edit"))
            other = asyncio.run(fresh_database(admin, prefix="bench_edit"))
            try:
                rows["full"].append(run(before, url, node.url))
                rows["edit"].append(run(after, url, node.url))
                rows["alone"].append(run(alone, other, node.url))
            finally:
                asyncio.run(drop_database(admin, url))
                asyncio.run(drop_database(admin, other))
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1][0]:.2f}s ({v[-1][1]:,} events)"
                                                  for k, v in rows.items()), flush=True)
    med = {k: statistics.median(w for w, _ in v) for k, v in rows.items()}
    events = {k: v[-1][1] for k, v in rows.items()}
    # The second token's logs: the bulk ones, and its deployment's mint.
    if events["edit"] != events["alone"] or not a.added <= events["alone"] <= a.added + 1:
        raise SystemExit(f"the edit wrote {events['edit']:,} events and the token alone "
                         f"{events['alone']:,}, expected {a.added:,} (+1, its mint)")
    print(f"\n| run | events | seconds (median of {a.repeat}) |\n|---|---|---|")
    for k, label in (("full", "the first token over the whole chain"),
                     ("edit", "then the second token added to the file, run again"),
                     ("alone", "the second token alone, fresh database")):
        print(f"| {label} | {events[k]:,} | {med[k]:.2f} |")
    print(f"\nedit / alone: {med['edit'] / med['alone']:.2f}; edit / full: "
          f"{med['edit'] / med['full']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
