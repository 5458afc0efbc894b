"""Reorg soak: `indexer run` follows an anvil chain mining every second while traffic flows and
random reorgs replace the top of the chain; at the end every table must equal the chain.

    scripts/soak [--duration 300] [--finality-depth 5] [--deep] [--reorg-every 8] [--seed N]
                 [--pair-every 20] [--hosts 1] [--workers 1] [--kill-every SECONDS]

Starts anvil (--block-time 1), deploys the demo system (WETH9, Uniswap V2 factory, router and
pairs, two ERC-20 tokens), writes a copy of chains/anvil.yaml with the finality depth and starts
`indexer run` on it into a fresh database (admin URL: DATABASE_URL, else the test Postgres).
Traffic rounds go on back to back, with a new Uniswap pair (a factory child) every
--pair-every seconds on average. Every --reorg-every seconds on average the top 1..depth blocks
are replaced by a branch with other transactions, by one of anvil_reorg (same length or
longer), anvil_rollback and mining (shorter or longer) or evm_revert to a snapshot and mining.
With --deep, one reorg in five goes deeper than the finality depth.

--hosts N runs N `indexer run` processes (each with --workers W) sharing one Redis: they split
the backfill and one of them leads the live tail. --kill-every kills a random one of them
(SIGKILL of its process group: a leader, a parent or its workers die mid-work) every so many
seconds on average and starts it again 0 to 3 seconds later, so reorgs also happen while it is
down and the live tail changes hands.

After --duration seconds traffic and mining stop; once the indexer holds the head block and
every source is done up to it, the event tables, the stored block headers and the factory
children are compared with the chain. Prints a summary and exits 1 on any difference. Not part
of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.test_end_to_end import SCHEMA, demo_sources  # noqa: E402
from tests.support.cli import env_for, start_indexer, stop, wait_for, write_chain  # noqa: E402
from tests.support.contracts import (  # noqa: E402
    ACCOUNT0,
    Deployed,
    Deployer,
    deploy_contract,
    receipt,
    send,
)
from tests.support.reference import assert_tables_equal, expected_rows, read_tables  # noqa: E402
from tests.support.reorg import (  # noqa: E402
    Reorg,
    block_hashes,
    block_mismatches,
    caught_up,
    children,
    coverage,
    head,
    mine_blocks,
    mining_paused,
    recorded_reorgs,
    reorg,
    revert,
    snapshot,
)
from tests.support.services import (  # noqa: E402
    Anvil,
    database_url_for_tests,
    drop_database,
    fresh_database,
    redis_url_for_tests,
)
from tests.support.traffic import DEADLINE, E18, MAX_UINT, run_traffic  # noqa: E402

KINDS = ("same", "longer", "shorter", "snapshot")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/soak", description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 when everything matches the chain, 1 otherwise.")
    p.add_argument("--duration", type=float, default=300, metavar="SECONDS",
                   help="how long traffic and reorgs go on (default 300)")
    p.add_argument("--finality-depth", type=int, default=5, metavar="N",
                   help="finality_depth of the chain file (default 5; 0: every reorg is a deep one)")
    p.add_argument("--max-depth", type=int, default=None, metavar="N",
                   help="deepest ordinary reorg (default: the finality depth, 3 when it is 0)")
    p.add_argument("--deep", action="store_true",
                   help="one reorg in five goes deeper than the finality depth (up to twice it + 2)")
    p.add_argument("--reorg-every", type=float, default=8, metavar="SECONDS",
                   help="mean time between reorgs (default 8)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    p.add_argument("--pair-every", type=float, default=20, metavar="SECONDS",
                   help="mean time between new Uniswap pairs (factory children) created near"
                        " the head, where reorgs can drop them (default 20; 0: none)")
    p.add_argument("--hosts", type=int, default=1, metavar="N",
                   help="indexer processes sharing the work through Redis (default 1)")
    p.add_argument("--workers", type=int, default=1, metavar="W",
                   help="--workers of each indexer process (default 1)")
    p.add_argument("--kill-every", type=float, default=0, metavar="SECONDS",
                   help="mean time between SIGKILLs of a random indexer process (default 0: never)")
    p.add_argument("--catch-up-timeout", type=float, default=120, metavar="SECONDS")
    p.add_argument("--keep", action="store_true",
                   help="keep the database and the work directory (always kept on FAIL)")
    args = p.parse_args(argv)
    if args.finality_depth < 0:
        p.error("--finality-depth must be 0 or more")
    if args.hosts < 1 or args.workers < 1:
        p.error("--hosts and --workers must be at least 1")
    args.max_depth = args.max_depth or args.finality_depth or 3
    if args.seed is None:
        args.seed = int(time.time())
    return args


@dataclass
class Tally:
    made: list[Reorg] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    rounds: int = 0
    traffic_errors: int = 0
    pairs: int = 0

    @property
    def max_depth(self) -> int:
        return max((r.depth for r in self.made), default=0)


class Soak:
    def __init__(self, args: argparse.Namespace, d: Deployed, floor: int) -> None:
        self.args = args
        self.d = d
        self.floor = floor  # the set-up's last block: reorgs never reach it
        self.rng = random.Random(args.seed)
        self.tally = Tally()
        self.snap: tuple[str, int] | None = None  # snapshot id and its head

    def depth(self) -> int:
        fd = self.args.finality_depth
        if self.args.deep and self.rng.random() < 0.2:
            return self.rng.randint(fd + 1, 2 * fd + 2)
        return self.rng.randint(1, self.args.max_depth)

    def traffic(self) -> None:
        """One round, all its transactions mined; a reverted or lost one is counted, not fatal
        (a reorg may have dropped what it relied on)."""
        try:
            run_traffic(self.d, rounds=1, seed=self.rng.randrange(2**32), prepare=False,
                        sweep=False)
        except RuntimeError as e:
            self.tally.traffic_errors += 1
            print(f"  traffic round failed: {str(e)[:200]}", flush=True)
        self.tally.rounds += 1
        if self.snap is None or head(self.d.rpc) - self.snap[1] > self.args.max_depth:
            with mining_paused(self.d.rpc):
                self.snap = (snapshot(self.d.rpc), head(self.d.rpc))

    def new_pair(self) -> None:
        """A new token and its pair with DemoToken A, made through the router: a PairCreated
        (a factory child) and the pair's first events in blocks a later reorg may replace."""
        d = self.d
        self.tally.pairs += 1
        n = self.tally.pairs
        try:
            token = deploy_contract(d.url, "TestToken", f"Soak {n}", f"SK{n}", 10**9 * E18)
            receipt(d.rpc, send(d.rpc, ACCOUNT0, token.address,
                                token.encode_abi("approve", [d.addresses.router, MAX_UINT])))
            data = d.router.encode_abi("addLiquidity", [
                token.address, d.addresses.token_a, 1_000 * E18, 1_000 * E18, 0, 0, ACCOUNT0,
                DEADLINE])
            got = receipt(d.rpc, send(d.rpc, ACCOUNT0, d.addresses.router, data, gas=5_000_000))
            print(f"  new pair SK{n}/DTA in block {int(got['blockNumber'], 16)}", flush=True)
        except RuntimeError as e:  # a reorg dropped the token or its approval: counted
            self.tally.traffic_errors += 1
            print(f"  new pair SK{n} failed: {str(e)[:200]}", flush=True)

    def reorg(self) -> Reorg | None:
        depth = min(self.depth(), head(self.d.rpc) - self.floor - 1)
        if depth < 1:
            return None
        kind = self.rng.choice(KINDS)
        seed = self.rng.randrange(2**32)
        tip = head(self.d.rpc)
        if kind == "snapshot" and self.snap is not None and 0 < tip - self.snap[1] <= depth:
            made = self._revert(seed)
        else:
            kind = "same" if kind == "snapshot" else kind
            new_blocks = {"same": depth, "longer": depth + self.rng.randint(1, 3),
                          "shorter": self.rng.randint(0, depth - 1)}[kind]
            made = reorg(self.d, depth, new_blocks=new_blocks, seed=seed)
        self.snap = None  # a snapshot from before a reorg would bring an old branch back
        self.tally.made.append(made)
        self.tally.kinds[kind] += 1
        deep = " DEEP" if made.depth > self.args.finality_depth else ""
        print(f"  reorg {kind}: blocks {made.fork + 1}..{made.old_tip} replaced, new tip"
              f" {made.new_tip} (depth {made.depth}{deep})", flush=True)
        return made

    def _revert(self, seed: int) -> Reorg:
        assert self.snap is not None
        snap_id, fork = self.snap
        rpc = self.d.rpc
        with mining_paused(rpc):
            old_tip = head(rpc)
            old = block_hashes(rpc, list(range(fork + 1, old_tip + 1)))
            revert(rpc, snap_id)
            r = random.Random(seed)
            txs = mine_blocks(self.d, r.randint(1, old_tip - fork + 2), r)
            return Reorg(fork, old_tip, head(rpc), old, txs)


class IndexerDied(RuntimeError):
    pass


class Fleet:
    """The soak's indexer processes: --hosts of them, each `indexer run --workers W`; with
    --kill-every, one at random is killed now and then and started again a moment later."""

    def __init__(self, args: argparse.Namespace, chain: Path, env: dict[str, str], work: Path,
                 rng: random.Random) -> None:
        self.args = args
        self.chain = chain
        self.env = env
        self.rng = rng
        self.logs = [work / f"indexer-{i}.log" for i in range(args.hosts)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * args.hosts
        self.down: dict[int, float] = {}  # host -> when it starts again
        self.kills = 0
        self.next_kill = self._after()

    def _after(self) -> float:
        every = self.args.kill_every
        return time.monotonic() + self.rng.expovariate(1 / every) if every > 0 else float("inf")

    def start(self) -> None:
        for i in range(self.args.hosts):
            self._start(i)

    def _start(self, i: int) -> None:
        argv = ["run", "--chain", str(self.chain)]
        if self.args.workers > 1:
            argv += ["--workers", str(self.args.workers)]
        self.procs[i] = start_indexer(argv, {**self.env, "INDEXER_WORKER": f"host-{i}"},
                                      log=self.logs[i])
        self.down.pop(i, None)

    def alive(self) -> None:
        """Raise IndexerDied when a process exited that was not killed on purpose."""
        for i, proc in enumerate(self.procs):
            if i not in self.down and proc is not None and proc.poll() is not None:
                raise IndexerDied(f"indexer host-{i} exited with {proc.returncode}; the end of"
                                  f" its log:\n{self.logs[i].read_text()[-4000:]}")

    def tick(self) -> None:
        """Start again the processes whose pause is over; kill one when it is time."""
        now = time.monotonic()
        for i, when in list(self.down.items()):
            if now >= when:
                self._start(i)
        up = [i for i in range(self.args.hosts) if i not in self.down]
        if now >= self.next_kill and up:
            i = self.rng.choice(up)
            proc = self.procs[i]
            assert proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.kills += 1
            self.down[i] = now + self.rng.uniform(0, 3)
            print(f"  killed host-{i} (SIGKILL of its process group); back in"
                  f" {self.down[i] - now:.1f}s", flush=True)
            self.next_kill = self._after()

    def all_up(self) -> None:
        for i in list(self.down):
            self._start(i)

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                stop(proc, signal.SIGINT)

    def errors(self) -> int:
        return sum(" ERROR " in x for log in self.logs if log.exists()
                   for x in log.read_text().splitlines())


def wait_for_indexer(fleet: Fleet, database_url: str, d: Deployed, timeout: float) -> bool:
    """Caught up, and no stored block hash differs from the node's (a last reorg of blocks
    taken as final may be repaired after the backfill got to the head)."""
    def done() -> bool:
        fleet.alive()
        return caught_up(database_url, d.rpc) and not block_mismatches(database_url, d.rpc)

    try:
        wait_for(done, timeout=timeout, interval=0.2)
        return True
    except TimeoutError:
        return False


def check(d: Deployed, database_url: str) -> tuple[list[str], int]:
    """Differences between what is stored and the chain (none: PASS), and the event count."""
    tip = head(d.rpc)
    expected = expected_rows(d.url, demo_sources(d), 0, tip)
    actual = asyncio.run(read_tables(database_url, SCHEMA, list(expected)))
    problems: list[str] = []
    try:
        assert_tables_equal(expected, actual)
    except AssertionError as e:
        problems.append(str(e))
    problems += block_mismatches(database_url, d.rpc)[:20]
    stored, pairs = set(children(database_url)), {p.lower() for p in d.pairs()}
    if stored != pairs:
        problems.append(f"factory children: extra {sorted(stored - pairs)},"
                        f" missing {sorted(pairs - stored)}")
    tops = coverage(database_url)
    if set(tops.values()) != {tip}:
        problems.append(f"sources done up to {tops}, the head is {tip}")
    return problems, sum(len(rows) for rows in expected.values())


def drive(args: argparse.Namespace, soak: Soak, fleet: Fleet, database_url: str) -> None:
    start = time.monotonic()
    next_reorg = start + soak.rng.expovariate(1 / args.reorg_every)
    next_pair = start + soak.rng.expovariate(1 / args.pair_every) if args.pair_every > 0 \
        else float("inf")
    next_report = start + 10
    while (now := time.monotonic()) - start < args.duration:
        fleet.alive()
        fleet.tick()
        if now >= next_reorg:
            soak.reorg()
            next_reorg = now + soak.rng.expovariate(1 / args.reorg_every)
        if now >= next_pair:
            soak.new_pair()
            next_pair = now + soak.rng.expovariate(1 / args.pair_every)
        soak.traffic()
        if now >= next_report:
            tops = coverage(database_url)
            print(f"t={now - start:.0f}s head {head(soak.d.rpc)}, indexed"
                  f" {min(tops.values()) if tops else '-'}, {len(soak.tally.made)} reorgs made,"
                  f" {len(recorded_reorgs(database_url))} recorded", flush=True)
            next_report = now + 10


def report(args: argparse.Namespace, soak: Soak, fleet: Fleet, database_url: str, events: int,
           problems: list[str]) -> None:
    t = soak.tally
    recorded = recorded_reorgs(database_url)
    fd = args.finality_depth
    lines = [
        f"seed {args.seed}, finality_depth {fd}, {args.duration:.0f}s; {args.hosts} indexer"
        f" process(es) of {args.workers} worker(s); {fleet.kills} killed",
        f"blocks: {head(soak.d.rpc)}; events: {events}; traffic rounds: {t.rounds}"
        f" ({t.traffic_errors} failed, new pairs included); new pairs tried: {t.pairs},"
        f" pairs on the chain at the end (the set-up's 3 included): {len(soak.d.pairs())}",
        f"reorgs made: {len(t.made)} ({', '.join(f'{k} {n}' for k, n in sorted(t.kinds.items()))});"
        f" max depth {t.max_depth}; deeper than finality: {sum(r.depth > fd for r in t.made)}",
        f"reorgs the indexer recorded: {len(recorded)}; max depth"
        f" {max((r['depth'] for r in recorded), default=0)}; deep: {sum(r['deep'] for r in recorded)}",
        f"ERROR lines in the indexer logs: {fleet.errors()}",
    ]
    print("\n== soak summary\n" + "\n".join(lines))
    for p in problems:
        print(p[:4000])
    print("FAIL" if problems else "PASS")


def soak_run(args: argparse.Namespace, node: Anvil, database_url: str, work: Path) -> bool:
    """Set up, drive, compare and report; True on PASS."""
    d = Deployer(node.url).deploy()
    setup = run_traffic(d, rounds=3, seed=args.seed)  # balances, approvals and the three pairs
    chain = write_chain(work / "anvil.yaml", finality_depth=args.finality_depth)
    extra = {}
    if args.hosts > 1:
        redis = redis_url_for_tests()
        if redis is None:
            raise SystemExit("soak: --hosts above 1 needs Redis (TEST_REDIS_URL, a local one on"
                             " 6379 or redis-server on PATH)")
        extra["REDIS_URL"] = redis
    soak = Soak(args, d, setup.last_block)
    fleet = Fleet(args, chain, env_for(database_url, node.url, **extra), work, soak.rng)
    fleet.start()
    events = 0
    try:
        drive(args, soak, fleet, database_url)
        d.rpc.call("evm_setIntervalMining", 0)  # the chain stands still for the comparison
        fleet.all_up()
        print(f"stopped at head {head(d.rpc)}: waiting for the indexer", flush=True)
        if wait_for_indexer(fleet, database_url, d, args.catch_up_timeout):
            problems, events = check(d, database_url)
        else:
            problems = [f"not caught up within {args.catch_up_timeout}s:"
                        f" sources done up to {coverage(database_url)}"]
    except IndexerDied as e:
        problems = [str(e)]
    finally:
        fleet.stop()
    report(args, soak, fleet, database_url, events, problems)
    return not problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    admin = os.environ.get("DATABASE_URL") or database_url_for_tests()
    work = Path(tempfile.mkdtemp(prefix="indexer-soak-"))
    database_url = asyncio.run(fresh_database(admin, prefix="soak"))
    print(f"soak: seed {args.seed}, database {database_url.rsplit('/', 1)[-1]}, work dir {work}")
    passed = False
    try:
        with Anvil(block_time=1) as node:
            passed = soak_run(args, node, database_url, work)
    finally:
        if passed and not args.keep:
            asyncio.run(drop_database(admin, database_url))
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept: database {database_url}, work dir {work} (indexer-N.log)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
