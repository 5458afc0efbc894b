"""Live-tail latency benchmark: from a block's mining to its rows being committed.

    scripts/bench-live [--blocks 300] [--logs 250] [--interval 1.0] [--poll-interval S]
                       [--ws] [--out FILE.csv] [--keep]

The benchmark owns the mining: anvil runs with automine off, and every ``--interval`` seconds
the bench calls ``evm_mine`` on a pool holding transactions that emit ``--logs`` Transfer logs
(sent half an interval earlier, so mining is not slowed by them). ``mined`` is the wall clock
right after ``evm_mine`` returns. The real ``indexer run`` follows the chain with
``finality_depth: 5`` and appends one line per block it commits to ``INDEXER_LIVE_TRACE``:
``number,hash,seen_unix,committed_unix,logs``. Per block:

- seen after mining = seen - mined (target: within the poll interval),
- processing = committed - seen (targets: p50 <= 10 ms, p99 <= 50 ms),
- total = committed - mined.

With ``--ws`` the chain file has ``ws_url`` (anvil serves ``eth_subscribe newHeads`` on its
port): a new head wakes the follower at once, the poll is only the safety net (targets then:
total p50 <= 10 ms, p99 <= 25 ms).

Warm-up blocks are mined at the same cadence until the follower has committed one of them
(backfill done); only the blocks mined after that are measured.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from indexer.config import load_chain  # noqa: E402
from tests.support.cli import env_for, kill_started, start_indexer, stop, write_chain  # noqa: E402
from tests.support.contracts import ACCOUNT0, Deployer  # noqa: E402
from tests.support.rpc import JsonRpc  # noqa: E402
from tests.support.services import (  # noqa: E402
    Anvil,
    database_url_for_tests,
    drop_database,
    fresh_database,
)

FINALITY_DEPTH = 5
LOGS_PER_TX = 1000  # a block's logs are split into transactions of at most this many
WARMUP_MIN = 3  # warm-up blocks mined even when the follower is live at once
WARMUP_TIMEOUT = 120.0  # seconds for the backfill to finish and the follower to commit a block
DRAIN_TIMEOUT = 30.0  # seconds for the last block to reach the trace
TARGET_PROCESSING_P50_MS = 10.0
TARGET_PROCESSING_P99_MS = 50.0
TARGET_WS_TOTAL_P50_MS = 10.0  # with --ws: mined -> committed
TARGET_WS_TOTAL_P99_MS = 25.0


class BenchFailed(RuntimeError):
    """The run did not produce a measurement (the indexer died, blocks went missing, ...)."""


@dataclass(frozen=True, slots=True)
class Traced:
    """One line of the follower's trace."""

    number: int
    hash: str
    seen: float
    committed: float
    logs: int


@dataclass(frozen=True, slots=True)
class Measured:
    """A block mined by the bench and committed by the follower; times are unix seconds."""

    number: int
    hash: str
    logs: int
    mined: float
    mine_call: float  # seconds evm_mine took to answer
    seen: float
    committed: float

    @property
    def seen_ms(self) -> float:
        return (self.seen - self.mined) * 1000

    @property
    def processing_ms(self) -> float:
        return (self.committed - self.seen) * 1000

    @property
    def total_ms(self) -> float:
        return (self.committed - self.mined) * 1000


# ---------------------------------------------------------------------------- pure parts


def parse_trace(text: str) -> dict[int, Traced]:
    """Trace lines by block number; the first commit of a number wins (a later one would be a
    re-commit after a reorg, which this bench does not cause). Partial last lines are skipped."""
    got: dict[int, Traced] = {}
    for line in text.splitlines():
        fields = line.strip().split(",")
        if len(fields) != 5 or not fields[0].isdigit():
            continue
        try:
            t = Traced(int(fields[0]), fields[1], float(fields[2]), float(fields[3]),
                       int(fields[4]))
        except ValueError:
            continue
        got.setdefault(t.number, t)
    return got


def join(mined: dict[int, tuple[float, float]], trace: dict[int, Traced],
         logs: int) -> list[Measured]:
    """Mined blocks with their trace lines; every block must be traced with ``logs`` logs."""
    missing = sorted(set(mined) - set(trace))
    if missing:
        raise BenchFailed(f"{len(missing)} mined blocks never reached the trace: "
                          f"{missing[:10]}{' ...' if len(missing) > 10 else ''}")
    wrong = [(n, trace[n].logs) for n in sorted(mined) if trace[n].logs != logs]
    if wrong:
        raise BenchFailed(f"{len(wrong)} blocks traced with other than {logs} logs "
                          f"(block, logs): {wrong[:10]}")
    return [Measured(n, trace[n].hash, trace[n].logs, at, call, trace[n].seen, trace[n].committed)
            for n, (at, call) in sorted(mined.items())]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def report(rows: list[Measured], poll_interval: float, ws: bool = False) -> str:
    """The figures and the targets, as text."""
    series = {
        "seen after mining": [r.seen_ms for r in rows],
        "processing": [r.processing_ms for r in rows],
        "total": [r.total_ms for r in rows],
    }
    lines = [f"blocks measured: {len(rows)}, poll interval {poll_interval * 1000:.0f} ms",
             "", f"{'ms':<18} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}"]
    for name, values in series.items():
        cells = " ".join(f"{percentile(values, p):8.1f}" for p in (50, 90, 99, 100))
        lines.append(f"{name:<18} {cells}")
    poll_ms = poll_interval * 1000
    checks = [
        ("processing p50", percentile(series["processing"], 50), TARGET_PROCESSING_P50_MS),
        ("processing p99", percentile(series["processing"], 99), TARGET_PROCESSING_P99_MS),
        ("seen after mining p99", percentile(series["seen after mining"], 99), poll_ms),
    ]
    if ws:
        checks += [("total p50", percentile(series["total"], 50), TARGET_WS_TOTAL_P50_MS),
                   ("total p99", percentile(series["total"], 99), TARGET_WS_TOTAL_P99_MS)]
    lines.append("")
    for name, value, limit in checks:
        verdict = "met" if value <= limit else "NOT met"
        lines.append(f"target {name} <= {limit:.0f} ms: {value:.1f} ms, {verdict}")
    return "\n".join(lines)


def write_rows(path: Path, rows: list[Measured]) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["number", "hash", "logs", "mined_unix", "seen_unix", "committed_unix",
                      "seen_after_mining_ms", "processing_ms", "total_ms", "evm_mine_ms"])
        for r in rows:
            out.writerow([r.number, r.hash, r.logs, f"{r.mined:.6f}", f"{r.seen:.6f}",
                          f"{r.committed:.6f}", f"{r.seen_ms:.3f}", f"{r.processing_ms:.3f}",
                          f"{r.total_ms:.3f}", f"{r.mine_call * 1000:.3f}"])


# ---------------------------------------------------------------------------- the run


class Miner:
    """Fills the pool with Transfer-emitting transactions and mines it, one block at a time."""

    def __init__(self, rpc: JsonRpc, token: str, logs: int, data_for: dict[int, str]) -> None:
        self.rpc = rpc
        self.token = token
        self.chunks = [LOGS_PER_TX] * (logs // LOGS_PER_TX) + (
            [logs % LOGS_PER_TX] if logs % LOGS_PER_TX else [])
        self.data_for = data_for  # calldata of emitTransfers(n, 1) by n
        self.nonce = int(rpc.call("eth_getTransactionCount", ACCOUNT0, "pending"), 16)
        self.head = int(rpc.call("eth_blockNumber"), 16)

    def fill(self) -> None:
        calls = []
        for n in self.chunks:
            calls.append(("eth_sendTransaction", [{
                "from": ACCOUNT0, "to": self.token, "nonce": hex(self.nonce),
                "gas": hex(2_200 * n + 60_000), "data": self.data_for[n]}]))
            self.nonce += 1
        self.rpc.batch(calls)

    def mine(self) -> tuple[int, float, float]:
        """The new block's number, the wall clock right after evm_mine answered, and how long
        it took to answer."""
        t0 = time.time()
        self.rpc.call("evm_mine")
        mined = time.time()
        self.head += 1
        return self.head, mined, mined - t0


class Indexer:
    """`indexer run --chain FILE` into a fresh database, tracing live commits to a file."""

    def __init__(self, chain: Path, rpc_url: str, trace: Path, log: Path, keep: bool) -> None:
        self.admin = database_url_for_tests()
        self.url = asyncio.run(fresh_database(self.admin, prefix="bench_live"))
        self.keep = keep
        self.trace = trace
        self.log = log
        trace.unlink(missing_ok=True)
        log.unlink(missing_ok=True)
        env = env_for(self.url, rpc_url, INDEXER_LIVE_TRACE=str(trace))
        self.proc = start_indexer(["run", "--chain", str(chain)], env, log=log)

    def traced(self) -> dict[int, Traced]:
        self.check_alive()
        return parse_trace(self.trace.read_text()) if self.trace.exists() else {}

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchFailed(f"indexer exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                stop(self.proc, signal.SIGINT, timeout=30)
        finally:
            kill_started()
            if self.keep:
                print(f"database kept: {self.url}")
            else:
                asyncio.run(drop_database(self.admin, self.url))


def sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def run(a: argparse.Namespace, indexer: Indexer, miner: Miner) -> list[Measured]:
    """Mine at the cadence: warm-up blocks until the follower is live, then ``--blocks``
    measured ones; the pool for each block is filled half an interval before it is mined."""
    mined: dict[int, tuple[float, float]] = {}
    warmup: list[int] = []
    next_at = time.monotonic() + a.interval
    warm_deadline = time.monotonic() + WARMUP_TIMEOUT
    miner.fill()
    while len(mined) < a.blocks:
        sleep_until(next_at)
        number, at, call = miner.mine()
        next_at += a.interval
        if len(warmup) < WARMUP_MIN or not (set(warmup) & set(indexer.traced())):
            if time.monotonic() > warm_deadline:
                raise BenchFailed(f"the follower committed none of blocks {warmup} within "
                                  f"{WARMUP_TIMEOUT:.0f} s:\n{indexer.tail()}")
            warmup.append(number)
        else:
            if not mined:
                print(f"follower live after {len(warmup)} warm-up blocks; measuring from "
                      f"block {number}", flush=True)
            mined[number] = (at, call)
            if len(mined) % 50 == 0:
                print(f"  {len(mined)}/{a.blocks} blocks", flush=True)
        indexer.check_alive()
        sleep_until(next_at - a.interval / 2)
        if len(mined) < a.blocks:
            miner.fill()
    last = max(mined)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while last not in (trace := indexer.traced()):
        if time.monotonic() > deadline:
            raise BenchFailed(f"block {last} not in the trace {DRAIN_TIMEOUT:.0f} s after "
                              f"mining:\n{indexer.tail()}")
        time.sleep(0.05)
    return join(mined, trace, a.logs)


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=300, help="blocks measured (default 300)")
    p.add_argument("--logs", type=int, default=250, help="Transfer logs per block (default 250)")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between blocks, also the chain file's block_time (default 1)")
    p.add_argument("--poll-interval", type=float, metavar="S",
                   help="the chain file's poll_interval (default: block_time / 10, at most 1 s)")
    p.add_argument("--ws", action="store_true",
                   help="give the chain file anvil's websocket (newHeads wake the follower)")
    p.add_argument("--out", type=Path, help="write the per-block figures to this CSV")
    p.add_argument("--keep", action="store_true", help="keep the database")
    a = p.parse_args()
    if a.blocks < 1 or a.logs < 1 or a.interval <= 0:
        p.error("--blocks and --logs must be positive, --interval longer than 0")
    return a


def main() -> int:
    a = args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the cleanup below runs
    tmp = REPO / ".cache" / "bench"
    tmp.mkdir(parents=True, exist_ok=True)
    changes: dict[str, object] = {"finality_depth": FINALITY_DEPTH, "block_time": a.interval}
    if a.poll_interval is not None:
        changes["poll_interval"] = a.poll_interval
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; "
          f"{a.blocks} blocks of {a.logs} logs every {a.interval} s"
          f"{'; newHeads over a websocket' if a.ws else ''}", flush=True)
    with Anvil(gas_limit=2_000_000_000) as node:
        if a.ws:
            changes["ws_url"] = node.url.replace("http://", "ws://", 1)
        chain = write_chain(tmp / "anvil-live.yaml", **changes)
        poll = load_chain(chain).live_poll_interval  # what the follower will use
        system = Deployer(node.url).deploy()
        data_for = {n: system.token_a.encode_abi("emitTransfers", [n, 1])
                    for n in {min(a.logs, LOGS_PER_TX), a.logs % LOGS_PER_TX} if n}
        with JsonRpc(node.url) as rpc:
            rpc.call("evm_setAutomine", False)
            miner = Miner(rpc, system.addresses.token_a, a.logs, data_for)
            indexer = Indexer(chain, node.url, tmp / "live-trace.csv", tmp / "live-indexer.log",
                              a.keep)
            try:
                rows = run(a, indexer, miner)
            except BenchFailed as exc:
                print(f"bench-live failed: {exc}", file=sys.stderr)
                return 1
            finally:
                indexer.close()
    print()
    print(report(rows, poll, a.ws))
    if a.out:
        write_rows(a.out, rows)
        print(f"per-block figures: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
