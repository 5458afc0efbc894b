"""End-to-end benchmark: generated anvil chains indexed into Postgres by the real command, side
by side with a plain pipeline, other checkouts of the indexer and other indexers.

    scripts/bench [--workload transfers,uniswap] [--workers 1,2] [--repeat 1]
                  [--plain] [--indexer DIR ...] [--peers ponder,cryo] [--json FILE]

Workloads (generated once on a local anvil, kept as an anvil state dump under
.cache/bench/chains and reloaded for every later run; ``--fresh-chain`` makes them again):
- ``transfers``: ``--logs`` ERC-20 Transfer logs in blocks of 10,000, plus one block holding
  ``--dense`` logs (one range that cannot be split);
- ``uniswap``: the demo system (WETH9, Uniswap V2 factory, pairs, two tokens) under
  ``--uniswap-rounds`` rounds of mixed traffic: swaps, liquidity, transfers, wraps;
- ``mixed``: ``--mixed-logs`` logs of DeFi-like traffic in blocks of about 1,000: 8 ERC-20
  tokens, WETH9, Uniswap V2 (27 pairs, 24 of them created along the chain) and Uniswap V3
  (12 pools, 10 created along the chain); 20 event kinds (tests/support/mixed.py).

Runners, each run into a fresh database on the same reloaded chain, alternating within every
repeat (A, B, A, B ...) so that ratios are fair on a noisy machine:
- the indexer: ``DIR/.venv/bin/indexer run --chain FILE --once --workers N`` of this checkout,
  or of each ``--indexer DIR`` (several compare checkouts);
- ``--plain`` (transfers workload): the plain pipeline (scripts/plain_pipeline.py) with N
  processes, the same 10 columns into the same partitioned table;
- ``--peers ponder,cryo`` (mixed workload): Ponder indexing the same events into Postgres, and
  cryo dumping the raw logs to Parquet (scripts/peers.py).

Every run is checked: the rows of every table must equal the rows expected from the chain's
logs (counted independently with eth_getLogs), else the bench stops with an error. Figures are
events/s over the whole command (start-up included) and CPU microseconds per event of the
runner's processes, anvil and Postgres, read from /proc (see scripts/benchlib.py CpuMeter):
CPU per event is the figure to judge a change by on a noisy machine, wall time the one to
compare runners by. Tables show medians over repeats; a ratio is the median of the ratios of
the runs made next to each other.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.benchlib import (  # noqa: E402
    CpuMeter,
    database_mib,
    median,
    postmaster_pid,
    run_measured,
    table_counts,
)
from tests.support.cli import write_chain  # noqa: E402
from tests.support.contracts import Deployer  # noqa: E402
from tests.support.mixed import chain_config, count_logs  # noqa: E402
from tests.support.mixed import generate as generate_mixed  # noqa: E402
from tests.support.services import (  # noqa: E402
    Anvil,
    anvil_binary,
    database_name,
    database_url_for_tests,
    drop_database,
    fresh_database,
    redis_url_for_tests,
)
from tests.support.traffic import bulk_transfers, run_traffic  # noqa: E402

STAGE = re.compile(r"time by stage: fetch ([\d.]+)s, decode ([\d.]+)s, write ([\d.]+)s")
PEAK = re.compile(r"peak RSS (\d+) MB")
SCHEMA = "chaindata"
CACHE = REPO / ".cache" / "bench"
GROUPS = ("client", "anvil", "postgres", "pg_shared")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__,
        epilog="Durations on the 2-core machine (busy): a chain's first generation takes 30 to "
               "40 s (state dumps in .cache/bench/chains: transfers 850 MB, uniswap 170 MB, "
               "mixed 980 MB); reloading one 3 to 20 s. One run: transfers 12-22 s, uniswap 2-4 s, mixed 7-14 s (Ponder "
               "40-70 s, cryo 2-8 s). The defaults take about 80 s once the chains are cached; "
               "--workload transfers,uniswap,mixed --plain --peers ponder,cryo --repeat 5 took "
               "924 s.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.epilog = textwrap.fill(p.epilog or "", 92)
    p.add_argument("--workload", default="transfers,uniswap",
                   help="comma-separated workloads: transfers, uniswap, mixed "
                        "(default transfers,uniswap)")
    p.add_argument("--logs", type=int, default=1_000_000,
                   help="transfers: Transfer logs in blocks of 10,000 (default 1,000,000)")
    p.add_argument("--dense", type=int, default=100_000,
                   help="transfers: logs in the one dense block (default 100,000; 0 for none)")
    p.add_argument("--uniswap-rounds", type=int, default=6000,
                   help="uniswap: traffic rounds (default 6,000; 0 skips the workload)")
    p.add_argument("--mixed-logs", type=int, default=500_000,
                   help="mixed: at least this many logs (default 500,000)")
    p.add_argument("--mixed-block-logs", type=int, default=1000,
                   help="mixed: logs per block, about (default 1,000)")
    p.add_argument("--workers", default="1,2",
                   help="indexer --workers counts, and plain-pipeline processes (default 1,2)")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of runs; each round runs every runner once per worker count "
                        "(default 1)")
    p.add_argument("--plain", action="store_true",
                   help="transfers: run the plain pipeline beside the indexer and report "
                        "indexer/plain")
    p.add_argument("--plain-range", type=int, default=0,
                   help="plain pipeline: blocks per eth_getLogs (default 0: about 10,000 logs "
                        "per request like the indexer's units, i.e. 1 block on the transfers "
                        "chain of 10,000-log blocks, 10 on a chain of 1,000-log blocks)")
    p.add_argument("--plain-in-flight", type=int, default=4,
                   help="plain pipeline: requests in flight per process (default 4)")
    p.add_argument("--plain-batch", type=int, default=25_000,
                   help="plain pipeline: rows per COPY (default 25,000)")
    p.add_argument("--indexer", action="append", type=Path, metavar="DIR", default=[],
                   help="a checkout of the indexer to run (repeatable; default this one); "
                        "its .venv is made with DIR/scripts/setup when missing. Ratios are "
                        "to the first one")
    p.add_argument("--peers", default="",
                   help="mixed: other indexers to run beside it, comma-separated: ponder, cryo")
    p.add_argument("--redis", action="store_true",
                   help="give the indexer REDIS_URL (the lease board in Redis; default: "
                        "no Redis, a --workers parent serves the leases itself)")
    p.add_argument("--fresh-chain", action="store_true",
                   help="generate the chains again instead of reloading the cached state")
    p.add_argument("--sample-interval", type=float, default=0.05,
                   help="seconds between /proc samples of processes (default 0.05)")
    p.add_argument("--timeout", type=float, default=1800,
                   help="seconds one run may take before the bench fails (default 1800)")
    p.add_argument("--json", type=Path, help="also write every run and the tables here")
    a = p.parse_args(argv)
    a.workloads = [w.strip() for w in a.workload.split(",") if w.strip()]
    unknown = set(a.workloads) - {"transfers", "uniswap", "mixed"}
    if unknown:
        p.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    if a.uniswap_rounds == 0 and "uniswap" in a.workloads:
        a.workloads.remove("uniswap")
    a.counts = [int(x) for x in a.workers.split(",")]
    a.peer_list = [x.strip() for x in a.peers.split(",") if x.strip()]
    if set(a.peer_list) - {"ponder", "cryo"}:
        p.error(f"unknown peer(s) in --peers {a.peers}: ponder, cryo")
    if a.peer_list and "mixed" not in a.workloads:
        p.error("--peers run on the mixed workload: add --workload ...,mixed")
    if a.plain and "transfers" not in a.workloads:
        p.error("--plain runs on the transfers workload: add --workload ...,transfers")
    if a.repeat < 1 or min(a.counts) < 1:
        p.error("--repeat and --workers must be at least 1")
    return a


# ------------------------------------------------------------------------------------- chains


@dataclass
class Chain:
    """A generated chain: its anvil state dump, its facts and the indexer's chain file."""

    name: str
    state: Path
    facts: dict[str, Any]
    config: Path


def gen_transfers(url: str, a: argparse.Namespace) -> dict[str, Any]:
    system = Deployer(url).deploy()
    bulk_transfers(url, system.addresses.token_a, a.logs, logs_per_tx=2000, txs_per_block=5)
    if a.dense:
        bulk_transfers(url, system.addresses.token_b, a.dense, logs_per_tx=2000,
                       txs_per_block=max(1, a.dense // 2000))
    return {"addresses": system.addresses.as_dict()}


def gen_uniswap(url: str, a: argparse.Namespace) -> dict[str, Any]:
    system = Deployer(url).deploy()
    run_traffic(system, rounds=a.uniswap_rounds, seed=1, txs_per_block=50)
    return {"addresses": system.addresses.as_dict()}


def gen_mixed(url: str, a: argparse.Namespace) -> dict[str, Any]:
    return generate_mixed(url, logs=a.mixed_logs, logs_per_block=a.mixed_block_logs,
                          progress=True)


def workload_params(name: str, a: argparse.Namespace) -> dict[str, Any]:
    return {"transfers": {"logs": a.logs, "dense": a.dense},
            "uniswap": {"rounds": a.uniswap_rounds},
            "mixed": {"logs": a.mixed_logs, "block_logs": a.mixed_block_logs}}[name]


def cache_key(name: str, params: dict[str, Any], gen: Callable[..., Any]) -> str:
    """Changes whenever what makes the chain does: parameters, generator code, contracts,
    npm lock (artifacts, solc), anvil version."""
    h = hashlib.sha256(json.dumps([name, params], sort_keys=True).encode())
    h.update(inspect.getsource(gen).encode())
    for rel in ("tests/support/traffic.py", "tests/support/contracts.py",
                "tests/support/mixed.py", "tests/support/MixedTraffic.sol",
                "tests/contracts/TestToken.sol", "scripts/npm/package-lock.json"):
        h.update((REPO / rel).read_bytes())
    h.update(subprocess.run([str(anvil_binary()), "--version"], capture_output=True,
                            check=True).stdout)
    return h.hexdigest()[:16]


def anvil_for(state: Path | None = None, dump: Path | None = None) -> Anvil:
    return Anvil(gas_limit=2_000_000_000, extra_args=["--disable-code-size-limit"],
                 load_state=state, dump_state=dump, startup_timeout=600)


def prepare_chain(name: str, a: argparse.Namespace) -> Chain:
    """The workload's chain: the cached state dump when there is one for the same inputs, else
    generated now on a fresh anvil and dumped (anvil --dump-state on exit)."""
    gen = {"transfers": gen_transfers, "uniswap": gen_uniswap, "mixed": gen_mixed}[name]
    params = workload_params(name, a)
    key = cache_key(name, params, gen)
    folder = CACHE / "chains"
    folder.mkdir(parents=True, exist_ok=True)
    state, facts_file = folder / f"{name}-{key}.state.json", folder / f"{name}-{key}.facts.json"
    config = CACHE / f"{name}.yaml"
    if a.fresh_chain or not (state.exists() and facts_file.exists()):
        # Keep the newest other variant (another run may be using it), drop older ones.
        others = sorted(folder.glob(f"{name}-*.state.json"), key=lambda f: f.stat().st_mtime)
        for old in others[:-1] + ([state] if state in others[-1:] else []):
            for f in (old, old.with_name(old.name.replace(".state.json", ".facts.json"))):
                f.unlink(missing_ok=True)
        tmp = state.with_suffix(".tmp")
        print(f"{name}: generating the chain {params} (state kept in {state})", flush=True)
        t0 = time.perf_counter()
        node = anvil_for(dump=tmp)
        node.start()
        try:
            facts = gen(node.url, a)
            facts.update(params=params, head=int(node.rpc().call("eth_blockNumber"), 16))
            facts["head_hash"] = node.rpc().call("eth_getBlockByNumber", hex(facts["head"]),
                                                 False)["hash"]
            tree = chain_tree(name, facts)
            facts.update(count_logs(node.url, tree, facts["head"],
                                    step=2 if name == "transfers" else 20))
            facts["generate_seconds"] = round(time.perf_counter() - t0, 1)
        finally:
            node.stop(grace=600)
        if not tmp.exists():
            raise SystemExit(f"{name}: anvil wrote no state dump at {tmp}")
        tmp.replace(state)
        facts_file.write_text(json.dumps(facts, indent=1))
    facts = json.loads(facts_file.read_text())
    config.write_text(yaml.safe_dump(chain_tree(name, facts), sort_keys=False))
    return Chain(name, state, facts, config)


def chain_tree(name: str, facts: dict[str, Any]) -> dict[str, Any]:
    """The chain file the indexer gets (ABI paths absolute)."""
    if name == "mixed":
        return chain_config(facts, get_logs_max_range=100)
    path = write_chain(CACHE / f"{name}.yaml", get_logs_max_range=100)
    return dict(yaml.safe_load(path.read_text()))


def serve(chain: Chain) -> Anvil:
    """anvil with the chain's state loaded, checked to be that chain, every log read once."""
    t0 = time.perf_counter()
    node = anvil_for(state=chain.state)
    node.start()
    rpc = node.rpc()
    head = int(rpc.call("eth_blockNumber"), 16)
    got = rpc.call("eth_getBlockByNumber", hex(chain.facts["head"]), False)
    if head != chain.facts["head"] or got is None or got["hash"] != chain.facts["head_hash"]:
        node.stop()
        raise SystemExit(f"{chain.name}: the reloaded chain is not the one generated (head "
                         f"{head}, expected {chain.facts['head']} {chain.facts['head_hash']}); "
                         f"run again with --fresh-chain")
    # One read of every log first: the first measured run then finds anvil as warm as the rest.
    step = 2 if chain.name == "transfers" else 20
    for lo in range(0, head + 1, step):
        rpc.call("eth_getLogs", {"fromBlock": hex(lo), "toBlock": hex(min(lo + step - 1, head))})
    print(f"{chain.name}: chain reloaded and read in {time.perf_counter() - t0:.1f}s: head {head:,}, "
          f"{chain.facts['logs']:,} logs, {sum(chain.facts['expected'].values()):,} to index "
          f"into {len(chain.facts['expected'])} tables", flush=True)
    return node


# ------------------------------------------------------------------------------------ runners


@dataclass
class Runner:
    label: str
    kind: str  # indexer | plain | ponder | cryo
    directory: Path | None = None
    workers: bool = True  # runs once per worker count; peers run once per round


@dataclass
class Context:
    a: argparse.Namespace
    chain: Chain
    node: Anvil
    admin: str
    postmaster: int | None
    runs: list[dict[str, Any]] = field(default_factory=list)


def indexer_runners(dirs: list[Path]) -> list[Runner]:
    if not dirs:
        return [Runner("indexer", "indexer", REPO)]
    out = []
    for i, d in enumerate(dirs):
        d = d.resolve()
        if not (d / "indexer").is_dir():
            raise SystemExit(f"--indexer {d}: not a checkout of the indexer (no indexer/)")
        if not (d / ".venv" / "bin" / "indexer").exists():
            print(f"--indexer {d}: no .venv yet, running its scripts/setup", flush=True)
            done = subprocess.run(["bash", str(d / "scripts" / "setup")], cwd=d)
            if done.returncode != 0 or not (d / ".venv" / "bin" / "indexer").exists():
                raise SystemExit(f"--indexer {d}: scripts/setup failed ({done.returncode})")
        rev = subprocess.run(["git", "-C", str(d), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip() or "?"
        dirty = subprocess.run(["git", "-C", str(d), "status", "--porcelain", "--", "indexer"],
                               capture_output=True, text=True).stdout.strip()
        out.append(Runner(f"{i + 1}:{d.name}@{rev}{'+' if dirty else ''}", "indexer", d))
    return out


def check_counts(what: str, counts: dict[str, int], expected: dict[str, int]) -> int:
    """Every expected table holds exactly its rows and every other table is empty; returns the
    rows. Stops the bench otherwise."""
    wrong = [f"{t}: {counts.get(t, 0):,} rows, expected {n:,}" for t, n in expected.items()
             if counts.get(t, 0) != n]
    wrong += [f"{t}: {n:,} rows, expected none" for t, n in counts.items()
              if t not in expected and n]
    if wrong:
        raise SystemExit(f"{what}: the tables do not hold the chain's events:\n  "
                         + "\n  ".join(wrong))
    return sum(expected.values())


def indexer_env(ctx: Context, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "INDEXER_SCHEMA", "VIRTUAL_ENV")}
    env.update(DATABASE_URL=url, INDEXER_SCHEMA=SCHEMA, ANVIL_RPC_URL=ctx.node.url,
               INDEXER_METRICS_PORT="0")
    if ctx.a.redis:
        redis = redis_url_for_tests()
        if redis is None:
            raise SystemExit("--redis: no Redis (set TEST_REDIS_URL or run one on 6379)")
        env["REDIS_URL"] = redis
    return env


def run_one(ctx: Context, runner: Runner, n: int) -> dict[str, Any]:
    a, facts = ctx.a, ctx.chain.facts
    url = asyncio.run(fresh_database(ctx.admin, prefix="bench"))
    try:
        meter = CpuMeter(anvil_pid=ctx.node.proc.pid if ctx.node.proc else None,
                         postmaster_pid=ctx.postmaster, database=database_name(url),
                         interval=a.sample_interval)
        what = f"{ctx.chain.name} {runner.label} workers={n}"
        extra: dict[str, Any] = {}
        if runner.kind == "indexer":
            assert runner.directory is not None
            cmd = [str(runner.directory / ".venv" / "bin" / "indexer"), "run", "--chain",
                   str(ctx.chain.config), "--once", "--workers", str(n)]
            m = run_measured(cmd, env=indexer_env(ctx, url), cwd=runner.directory, meter=meter,
                             what=what, timeout=a.timeout)
            events = check_counts(what, asyncio.run(table_counts(url, SCHEMA)),
                                  facts["expected"])
            stages = [0.0, 0.0, 0.0]
            for found in STAGE.findall(m.stderr):
                for i in range(3):
                    stages[i] += float(found[i])
            if STAGE.search(m.stderr):
                extra.update(fetch_s=round(stages[0], 1), decode_s=round(stages[1], 1),
                             write_s=round(stages[2], 1))
        elif runner.kind == "plain":
            token = facts["addresses"]
            blocks = max(1, facts["head"] + 1)
            span = a.plain_range or max(1, round(10_000 * blocks / max(1, facts["logs"])))
            cmd = [sys.executable, str(REPO / "scripts" / "plain_pipeline.py"),
                   "--rpc", ctx.node.url, "--dsn", url,
                   "--address", token["TestTokenA"], "--address", token["TestTokenB"],
                   "--from-block", "0", "--to-block", str(facts["head"]), "--processes", str(n),
                   "--range", str(span), "--in-flight", str(a.plain_in_flight),
                   "--batch", str(a.plain_batch), "--schema", SCHEMA,
                   "--table", "demo_token_transfer"]
            m = run_measured(cmd, env=dict(os.environ), cwd=REPO, meter=meter, what=what,
                             timeout=a.timeout)
            want = {"demo_token_transfer": facts["expected"]["demo_token_transfer"]}
            events = check_counts(what, asyncio.run(table_counts(url, SCHEMA)), want)
            extra["plain_range"] = span
        else:
            from scripts import peers

            m, events = peers.run(runner.kind, ctx, url, meter)
            extra["peer"] = peers.describe(runner.kind, ctx)
        if runner.kind != "cryo":
            extra["db_mib"] = round(asyncio.run(database_mib(url)))
    finally:
        asyncio.run(drop_database(ctx.admin, url))
    cpu = m.cpu
    us = {g: cpu[g] * 1e6 / events for g in GROUPS}
    us["children"] = cpu["client_children"] * 1e6 / events
    us["total"] = sum(us[g] for g in ("client", "anvil", "postgres"))
    r = {"workload": ctx.chain.name, "runner": runner.label, "kind": runner.kind,
         "workers": n if runner.workers else None, "events": events,
         "seconds": round(m.wall, 2), "events_per_second": round(events / m.wall),
         "peak_rss_mb": round(cpu["peak_rss_mb"]), "cpu_seconds": cpu,
         "us_per_event": {k: round(v, 2) for k, v in us.items()}, **extra}
    print(f"  {what}: {events:,} events in {r['seconds']}s = {r['events_per_second']:,}/s; "
          f"CPU us/event: client {us['client']:.2f}, anvil {us['anvil']:.2f}, "
          f"postgres {us['postgres']:.2f} (+{us['pg_shared']:.2f} shared)", flush=True)
    return r


def bench_workload(ctx: Context, runners: list[Runner]) -> None:
    for _ in range(ctx.a.repeat):
        for n in ctx.a.counts:
            for runner in runners:
                if runner.workers or n == ctx.a.counts[0]:
                    ctx.runs.append(run_one(ctx, runner, n))


# ------------------------------------------------------------------------------------- tables


def _groups(runs: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in runs:
        out.setdefault((r["workload"], r["runner"], r["workers"]), []).append(r)
    return out


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def throughput_table(runs: list[dict]) -> str:
    out = ["| workload | runner | workers | events | seconds | events/s | vs 1 worker | "
           "peak RSS MB | database MiB | fetch s | decode s | write s |", "|" + "---|" * 12]
    groups = _groups(runs)
    for (w, label, n), rs in groups.items():
        rate = median([r["events_per_second"] for r in rs])
        one = groups.get((w, label, 1))
        base = median([r["events_per_second"] for r in one]) if one else None
        vs = f"{rate / base:.2f}x" if base and n else "-"

        def med(key: str, rs: list[dict] = rs, digits: int = 1) -> str:
            vals = [r[key] for r in rs if key in r]
            return _fmt(median(vals), digits) if vals else "-"

        out.append(f"| {w} | {label} | {n or '-'} | {rs[0]['events']:,} | "
                   f"{median([r['seconds'] for r in rs]):.2f} | {rate:,.0f} | {vs} | "
                   f"{median([r['peak_rss_mb'] for r in rs]):.0f} | {med('db_mib', digits=0)} | "
                   f"{med('fetch_s')} | "
                   f"{med('decode_s')} | {med('write_s')} |")
    return "\n".join(out)


def cpu_table(runs: list[dict]) -> str:
    out = ["| workload | runner | workers | client µs/event | of it in child processes | "
           "anvil | postgres backends | sum | postgres shared (server-wide) |",
           "|" + "---|" * 9]
    for (w, label, n), rs in _groups(runs).items():
        def med(key: str, rs: list[dict] = rs) -> str:
            return _fmt(median([r["us_per_event"][key] for r in rs]))

        out.append(f"| {w} | {label} | {n or '-'} | {med('client')} | {med('children')} | "
                   f"{med('anvil')} | {med('postgres')} | {med('total')} | {med('pg_shared')} |")
    return "\n".join(out)


def ratio_rows(runs: list[dict]) -> list[dict[str, Any]]:
    """Ratios of runs made next to each other (same round): the first indexer against the plain
    pipeline and the peers, and every other indexer checkout against the first."""
    out = []
    by: dict[tuple, list[dict]] = {}
    for r in runs:
        by.setdefault((r["workload"], r["runner"], r["workers"]), []).append(r)
    workloads = list(dict.fromkeys(r["workload"] for r in runs))
    for w in workloads:
        labels = list(dict.fromkeys(r["runner"] for r in runs if r["workload"] == w))
        kinds = {r["runner"]: r["kind"] for r in runs}
        indexers = [x for x in labels if kinds[x] == "indexer"]
        first = indexers[0]
        counts = list(dict.fromkeys(r["workers"] for r in runs
                                    if r["workload"] == w and r["runner"] == first))
        for other in labels:
            if other == first:
                continue
            for n in counts:
                if kinds[other] == "indexer":
                    num, den, name = by.get((w, other, n)), by.get((w, first, n)), \
                        f"{other} / {first}"
                elif kinds[other] == "plain":
                    num, den, name = by.get((w, first, n)), by.get((w, other, n)), \
                        f"{first} (B) / plain pipeline (A)"
                else:
                    if n != counts[0]:
                        continue
                    num, den, name = by.get((w, first, n)), by.get((w, other, None)), \
                        f"{first} / {other}"
                if not num or not den:
                    continue
                pairs = [x["events_per_second"] / y["events_per_second"]
                         for x, y in zip(num, den, strict=False)]
                cpu = [x["us_per_event"]["total"] / y["us_per_event"]["total"]
                       for x, y in zip(num, den, strict=False)
                       if "us_per_event" in x and "us_per_event" in y]
                out.append({"workload": w, "workers": n, "comparison": name,
                            "ratio": median(pairs), "pairs": pairs,
                            "cpu_ratio": median(cpu) if cpu else None})
    return out


def ratio_table(rows: list[dict[str, Any]]) -> str:
    out = ["| workload | workers | comparison | events/s ratio, median | each round | "
           "CPU µs/event ratio, median |", "|---|---|---|---|---|---|"]
    for r in rows:
        cpu = "-" if r.get("cpu_ratio") is None else f"{r['cpu_ratio']:.2f}"
        out.append(f"| {r['workload']} | {r['workers']} | {r['comparison']} | "
                   f"{r['ratio']:.2f} | {', '.join(f'{p:.2f}' for p in r['pairs'])} | {cpu} |")
    return "\n".join(out)


def kinds_table(chains: list[Chain]) -> str:
    out = ["| workload | table | rows |", "|---|---|---|"]
    for c in chains:
        for t, n in c.facts["expected"].items():
            out.append(f"| {c.name} | {t} | {n:,} |")
    return "\n".join(out)


# --------------------------------------------------------------------------------------- main


def _stopped(signum: int, frame: object) -> None:
    raise SystemExit(f"bench: stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    # SIGTERM unwinds like an error: anvil is stopped and the run's database dropped.
    signal.signal(signal.SIGTERM, _stopped)
    admin = database_url_for_tests()
    pm = postmaster_pid(admin)
    indexers = indexer_runners(a.indexer)
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; "
          f"postgres CPU {'from /proc' if pm else 'not measured (server not on this machine)'}",
          flush=True)
    if a.peer_list:
        from scripts import peers

        for name in a.peer_list:
            peers.install(name)
    runs: list[dict[str, Any]] = []
    chains: list[Chain] = []
    t_all = time.perf_counter()
    for name in a.workloads:
        t0 = time.perf_counter()
        chain = prepare_chain(name, a)
        chains.append(chain)
        runners = list(indexers)
        if name == "transfers" and a.plain:
            runners.insert(0, Runner("plain pipeline", "plain", None))
        if name == "mixed":
            runners += [Runner(p, p, None, workers=False) for p in a.peer_list]
        node = serve(chain)
        try:
            ctx = Context(a, chain, node, admin, pm)
            bench_workload(ctx, runners)
            runs += ctx.runs
        finally:
            node.stop()
        print(f"{name}: done in {time.perf_counter() - t0:.0f}s", flush=True)
    ratios = ratio_rows(runs)
    print()
    print(throughput_table(runs))
    print()
    print("CPU microseconds per event, by process group (median over rounds):")
    print()
    print(cpu_table(runs))
    if ratios:
        print()
        print(ratio_table(ratios))
    if any(c.name == "mixed" for c in chains):
        print()
        print(kinds_table([c for c in chains if c.name == "mixed"]))
    print(f"\nbench took {time.perf_counter() - t_all:.0f}s", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"runs": runs, "ratios": ratios,
                                      "chains": {c.name: c.facts for c in chains}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
