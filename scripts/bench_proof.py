"""What ``indexer verify --proof`` costs per block and per receipt, against ``indexer verify``.

    .venv/bin/python scripts/bench_proof.py [--rounds 40] [--dense 40] [--txs 20] [--repeat 5]

Builds an anvil chain: the demo system under ``--rounds`` rounds of mixed traffic (one
transaction a block), then ``--dense`` blocks of ``--txs`` token transfers each, of every
transaction type in turn (legacy, 2930, 1559, 4844 with a blob, 7702). Indexes it once with
``indexer run --once`` into a fresh database (DATABASE_URL as the admin URL, else the test
Postgres; dropped at the end), then runs the verification in process ``--repeat`` times with
and without the proof, alternately, and prints the medians and the difference per block checked
and per receipt proven; and the CPU part alone: hashing a header and rebuilding a receipts
root (the RLP and trie work), per block and per receipt, over every block of the chain.
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
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from indexer.config import load_chain, resolve_chain  # noqa: E402
from indexer.ops.verify import Report, verify  # noqa: E402
from indexer.rpc.client import RpcClient  # noqa: E402
from indexer.sink.database import Database  # noqa: E402
from indexer.verify.proof import prove_header, prove_receipts  # noqa: E402
from tests.support.contracts import ACCOUNTS, Deployer  # noqa: E402
from tests.support.rpc import JsonRpc  # noqa: E402
from tests.support.services import (  # noqa: E402
    Anvil,
    database_url_for_tests,
    drop_database,
    fresh_database,
)
from tests.support.traffic import run_traffic  # noqa: E402
from tests.support.txtypes import KINDS, mine_together, signed_transfer  # noqa: E402


def build_chain(url: str, rounds: int, dense: int, txs: int) -> None:
    deployed = Deployer(url).deploy()
    run_traffic(deployed, rounds=rounds, seed=5)
    rpc = deployed.rpc
    kinds = list(KINDS)
    for b in range(dense):
        first = int(rpc.call("eth_getTransactionCount", ACCOUNTS[0], "pending"), 16)
        mine_together(rpc, [signed_transfer(kinds[(b * txs + i) % len(kinds)], rpc,
                                            deployed.token_a if i % 2 else deployed.token_b,
                                            ACCOUNTS[1 + i % 5], 1 + i, nonce=first + i)
                            for i in range(txs)])
    deployed.rpc.close()


async def timed(db: Database, rpc: RpcClient, proof: bool) -> tuple[float, Report]:
    chain = load_chain(resolve_chain("anvil"))
    t0 = time.perf_counter()
    report = await verify(db, chain, rpc, None, None, None, False, proof)
    return time.perf_counter() - t0, report


def cpu_costs(url: str) -> tuple[float, float, int, int]:
    """Seconds spent proving headers and receipts (CPU only), and how many of each."""
    with JsonRpc(url) as rpc:
        head = int(rpc.call("eth_blockNumber"), 16)
        blocks: list[Any] = [rpc.call("eth_getBlockByNumber", hex(n), False)
                             for n in range(head + 1)]
        receipts = [rpc.call("eth_getBlockReceipts", hex(n)) for n in range(head + 1)]
    t0 = time.perf_counter()
    headers = [prove_header(n, b, bytes.fromhex(b["hash"][2:])) for n, b in enumerate(blocks)]
    t1 = time.perf_counter()
    for h, b, r in zip(headers, blocks, receipts, strict=True):
        prove_receipts(h, b, r)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, len(blocks), sum(len(r) for r in receipts)


async def measure(url: str, db_url: str, repeat: int) -> None:
    db = await Database.connect(db_url, "chaindata", max_size=6)
    try:
        await db.migrate()
        chain = load_chain(resolve_chain("anvil"))
        plain: list[float] = []
        proven: list[float] = []
        report: Report | None = None
        async with RpcClient(chain.rpc, chain=chain.name) as rpc:
            for _ in range(repeat):
                t, r = await timed(db, rpc, False)
                assert r.equal, "verify found differences: the benchmark measures nothing"
                plain.append(t)
                t, report = await timed(db, rpc, True)
                assert report.equal, f"verify --proof failed: {report.proof_failures[:3]}"
                proven.append(t)
    finally:
        await db.close()
    assert report is not None
    p, q = statistics.median(plain), statistics.median(proven)
    extra = q - p
    blocks = report.last - report.first + 1
    print(f"{blocks:,} blocks of the chain checked ({report.blocks:,} block-units: the factory's "
          f"children are a unit of their own), {report.rows:,} rows; proven "
          f"{report.proven_blocks:,} headers and {report.proven_receipts:,} receipts")
    print(f"verify          median {p * 1000:8.1f} ms over {repeat} runs")
    print(f"verify --proof  median {q * 1000:8.1f} ms  (+{extra * 1000:.1f} ms)")
    print(f"--proof costs   {extra / blocks * 1e6:8.0f} us per block of the chain, "
          f"{extra / max(1, report.proven_receipts) * 1e6:8.0f} us per receipt proven")
    th, tr, n, receipts = cpu_costs(url)
    print(f"CPU alone       {th / n * 1e6:8.0f} us per header hash ({n:,} blocks), "
          f"{tr / max(1, receipts) * 1e6:8.0f} us per receipt in the rebuilt root "
          f"({receipts:,} receipts)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--dense", type=int, default=40)
    ap.add_argument("--txs", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    admin = os.environ.get("DATABASE_URL") or database_url_for_tests()
    with Anvil() as node:
        t0 = time.perf_counter()
        build_chain(node.url, args.rounds, args.dense, args.txs)
        print(f"chain built in {time.perf_counter() - t0:.0f} s: "
              f"{int(JsonRpc(node.url).call('eth_blockNumber'), 16) + 1} blocks")
        db_url = asyncio.run(fresh_database(admin, prefix="bench"))
        os.environ["ANVIL_RPC_URL"] = node.url
        try:
            env = dict(os.environ, DATABASE_URL=db_url, INDEXER_METRICS_PORT="0")
            run = subprocess.run([sys.executable, "-m", "indexer", "run", "--chain", "anvil",
                                  "--once"], env=env, cwd=REPO, capture_output=True, text=True)
            if run.returncode != 0:
                raise SystemExit(f"indexer run failed:\n{run.stderr[-3000:]}")
            asyncio.run(measure(node.url, db_url, args.repeat))
        finally:
            asyncio.run(drop_database(admin, db_url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
