"""Reorgs made on anvil while `indexer run` follows the head (finality_depth > 0).

Each test waits until the indexer holds the node's head block (same hash) with every source
done up to it, then compares once: every event table row by row with the canonical chain,
every stored block header with the node's, the factory children with the factory's pairs.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_end_to_end import compare
from tests.support.cli import env_for, start_indexer, stop, wait_for, write_chain
from tests.support.contracts import ACCOUNT0, Deployed, deploy_contract, receipt, send
from tests.support.proxy import RpcProxy
from tests.support.reorg import (
    DEMO_SOURCES,
    Reorg,
    block_mismatches,
    caught_up,
    children,
    coverage,
    covered_to,
    fetch,
    head,
    mine_blocks,
    recorded_reorgs,
    reorg,
    rollback,
)
from tests.support.rpc import JsonRpc, RpcError
from tests.support.traffic import DEADLINE, E18, MAX_UINT, bulk_transfers, run_traffic

FINALITY = 5
PAIR_TABLES = ("uniswap_v2_pair_swap", "uniswap_v2_pair_sync", "uniswap_v2_pair_mint",
               "uniswap_v2_pair_burn", "uniswap_v2_pair_transfer")
METRICS_AT = re.compile(r"metrics on http://0\.0\.0\.0:(\d+)/metrics")


class Live:
    """One `indexer run --chain FILE` following the head of `deployed`, logging to a file
    (restarts append to it)."""

    def __init__(self, deployed: Deployed, database_url: str, tmp_path: Path,
                 finality_depth: int, chain: dict[str, Any], env: dict[str, str],
                 rpc_url: str | None = None) -> None:
        self.d = deployed
        self.database_url = database_url
        self.log = tmp_path / "run.log"
        self.chain = write_chain(tmp_path / "anvil.yaml", finality_depth=finality_depth, **chain)
        self.env = env_for(database_url, rpc_url or deployed.url, **env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Live:
        self.proc = start_indexer(["run", "--chain", str(self.chain)], self.env, log=self.log)
        return self

    def stop(self, sig: int = signal.SIGINT) -> int:
        assert self.proc is not None
        code = stop(self.proc, sig)
        self.proc = None
        return code

    def text(self) -> str:
        """The log, progress redraws (carriage returns) as lines of their own."""
        return self.log.read_text().replace("\r", "\n") if self.log.exists() else ""

    def readable(self) -> str:
        """The log without the progress lines but the last."""
        lines = [x for x in self.text().splitlines() if x.strip()]
        progress = [i for i, x in enumerate(lines) if " blocks/s " in x]
        return "\n".join(x for i, x in enumerate(lines) if i not in progress[:-1])

    def wait_caught_up(self, timeout: float = 45) -> None:
        def done() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the indexer exited with {self.proc.returncode}")
            return caught_up(self.database_url, self.d.rpc)

        try:
            wait_for(done, timeout=timeout, interval=0.1)
        except TimeoutError:
            raise AssertionError(
                f"not caught up with head {head(self.d.rpc)} within {timeout}s: "
                f"sources done without a gap up to {covered_to(self.database_url)}") from None

    def check(self) -> dict[str, list[Any]]:
        """Everything stored equals the canonical chain up to the head (and nothing above)."""
        tip = head(self.d.rpc)
        expected = compare(self.d, self.database_url, tip)
        assert block_mismatches(self.database_url, self.d.rpc) == []
        assert set(children(self.database_url)) == {p.lower() for p in self.d.pairs()}
        assert set(coverage(self.database_url).values()) == {tip}, coverage(self.database_url)
        return expected

    def metrics(self) -> str:
        [*_, port] = METRICS_AT.findall(self.text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def metric(self, name: str) -> float:
        """A series of this chain; 0 when it was never set."""
        m = re.search(rf'^{name}{{chain="anvil"}} (\S+)$', self.metrics(), re.M)
        return float(m.group(1)) if m else 0.0

    def errors(self) -> list[str]:
        return [line for line in self.text().splitlines() if " ERROR " in line]


@contextmanager
def following(deployed: Deployed, database_url: str, tmp_path: Path, *,
              finality_depth: int = FINALITY, env: dict[str, str] | None = None,
              rpc_url: str | None = None, **chain: Any) -> Iterator[Live]:
    """A running indexer (on ``rpc_url``, default the node's); its log is printed when the
    body of the ``with`` fails, and it is stopped after."""
    live = Live(deployed, database_url, tmp_path, finality_depth, chain, env or {},
                rpc_url).start()
    try:
        yield live
    except BaseException:
        print(f"--- indexer log ({live.log}):\n{live.readable()[-12000:]}")
        raise
    finally:
        if live.proc is not None:
            live.stop()


def more_traffic(d: Deployed, seed: int, rounds: int = 2) -> None:
    run_traffic(d, rounds=rounds, seed=seed, prepare=False, sweep=False)


def rows_above(database_url: str, block: int) -> int:
    """Event rows above `block`, all tables."""
    tables = fetch(database_url, "SELECT table_name FROM indexer.event_tables")
    return sum(
        fetch(database_url, f'SELECT count(*) AS n FROM chaindata."{t["table_name"]}"'
              " WHERE block_number > $1", block)[0]["n"]
        for t in tables
    )


def rows_of(database_url: str, address: str) -> int:
    return sum(
        fetch(database_url, f'SELECT count(*) AS n FROM chaindata."{t}" WHERE address = $1',
              bytes.fromhex(address[2:]))[0]["n"]
        for t in PAIR_TABLES
    )


def summary(row: dict[str, Any]) -> tuple[int, int, int, bool]:
    """What a repair must record exactly. Its new_tip is the head the indexer saw, which a
    reorg made while it follows does not fix (the node's head passes through the fork point
    and every block of the new branch)."""
    return row["fork_block"], row["old_tip"], row["depth"], row["deep"]


def seen_during(row: dict[str, Any], r: Reorg, tip: int) -> bool:
    """The recorded new_tip is a head of the new branch (which may have grown to ``tip``)."""
    return r.fork < row["new_tip"] <= tip


@pytest.fixture(scope="module")
def chain(deployed_module: Deployed) -> Deployed:
    """The module's anvil with the demo system, its three pairs and some history."""
    run_traffic(deployed_module, rounds=9, seed=1)
    return deployed_module


@pytest.mark.parametrize("depth", [1, 2, FINALITY])
def test_reorg_within_the_finality_depth_is_repaired(
    chain: Deployed, database_url: str, tmp_path: Path, depth: int
):
    with following(chain, database_url, tmp_path) as live:
        live.wait_caught_up()
        more_traffic(chain, seed=depth)
        live.wait_caught_up()
        fork = head(chain.rpc) - depth
        assert rows_above(database_url, fork) > 0, "the replaced blocks held no rows"
        r = reorg(chain, depth, seed=depth)
        more_traffic(chain, seed=100 + depth, rounds=1)
        live.wait_caught_up()
        live.check()
        [row] = recorded_reorgs(database_url)
        assert summary(row) == (r.fork, r.old_tip, depth, False), row
        assert seen_during(row, r, head(chain.rpc)), row
        assert live.metric("indexer_reorgs_total") == 1
        assert live.metric("indexer_deep_reorgs_total") == 0
        assert live.metric("indexer_reorg_depth_blocks") == depth
        assert live.errors() == []  # a reorg within the finality depth is routine


def test_reorg_deeper_than_the_finality_depth_is_repaired_and_reported_loudly(
    chain: Deployed, database_url: str, tmp_path: Path
):
    with following(chain, database_url, tmp_path, finality_depth=3) as live:
        live.wait_caught_up()
        more_traffic(chain, seed=8)
        live.wait_caught_up()
        r = reorg(chain, 8, seed=8)
        more_traffic(chain, seed=108, rounds=1)
        live.wait_caught_up()
        live.check()
        [row] = recorded_reorgs(database_url)
        # The fork may be found lower (only checkpoints are kept below the window): never higher.
        assert row["deep"] is True and row["old_tip"] == r.old_tip
        assert row["fork_block"] <= r.fork and row["depth"] == r.old_tip - row["fork_block"]
        assert live.metric("indexer_deep_reorgs_total") == 1
        assert live.metric("indexer_reorgs_total") == 1
        assert [e for e in live.errors() if "reorg" in e.lower()], "no ERROR line for the deep reorg"


def test_reorg_on_a_chain_taken_as_final_is_repaired_as_deep(
    chain: Deployed, database_url: str, tmp_path: Path
):
    """finality_depth 0: the backfill indexes every block up to the head and no block is
    followed one by one, yet a reorg of indexed blocks is found (from the backfill's
    checkpoints), repaired and reported as deeper than the finality depth."""
    with following(chain, database_url, tmp_path, finality_depth=0) as live:
        live.wait_caught_up()
        more_traffic(chain, seed=61)
        live.wait_caught_up()
        assert rows_above(database_url, head(chain.rpc) - 3) > 0, "the replaced blocks held no rows"
        r = reorg(chain, 3, seed=61)
        more_traffic(chain, seed=161, rounds=1)
        # The backfill may reach the new head before the repair (blocks taken as final are
        # undone only after a second look): being caught up does not mean repaired here.
        wait_for(lambda: recorded_reorgs(database_url), timeout=30)
        live.wait_caught_up()
        live.check()
        [row] = recorded_reorgs(database_url)
        assert row["deep"] is True and row["fork_block"] <= r.fork, row
        assert row["old_tip"] >= r.old_tip and row["depth"] == row["old_tip"] - row["fork_block"]
        assert live.metric("indexer_deep_reorgs_total") == 1
        assert [e for e in live.errors() if "DEEP REORG" in e], "no ERROR line for the reorg"


def test_two_reorgs_in_a_row_are_both_repaired(chain: Deployed, database_url: str, tmp_path: Path):
    with following(chain, database_url, tmp_path) as live:
        live.wait_caught_up()
        more_traffic(chain, seed=21)
        live.wait_caught_up()
        first = reorg(chain, 3, seed=21)
        live.wait_caught_up()
        second = reorg(chain, 2, seed=22)  # inside the first one's branch, no traffic between
        live.wait_caught_up()
        live.check()
        rows = recorded_reorgs(database_url)
        assert [summary(r) for r in rows] == [
            (first.fork, first.old_tip, 3, False), (second.fork, second.old_tip, 2, False)]
        assert seen_during(rows[0], first, second.old_tip), rows
        assert seen_during(rows[1], second, second.new_tip), rows
        # Back to back: the indexer may see the first before the second replaces it, or not.
        third = reorg(chain, 3, seed=23)
        fourth = reorg(chain, 4, new_blocks=6, seed=24)
        more_traffic(chain, seed=25, rounds=1)
        live.wait_caught_up()
        live.check()
        later = recorded_reorgs(database_url)[2:]
        assert 1 <= len(later) <= 2, later
        assert min(r["fork_block"] for r in later) == fourth.fork == third.fork - 1
        assert later[0]["old_tip"] == third.old_tip
        assert live.metric("indexer_reorgs_total") == 2 + len(later)


def backfilled(database_url: str, upto: int) -> dict[str, int]:
    """Per contract, how many blocks of [0, upto] the range records of each of its sources
    cover (the fewest of its sources)."""
    rows = fetch(database_url, "SELECT contract, source,"
                 " sum(least(to_block, $1) - from_block + 1) AS n FROM indexer.source_ranges"
                 " WHERE chain_id = 31337 AND from_block <= $1 GROUP BY contract, source", upto)
    out: dict[str, int] = {}
    for r in rows:
        out[r["contract"]] = min(r["n"], out.get(r["contract"], r["n"]))
    return out


def test_reorg_during_the_backfill_to_live_handover_is_repaired(
    deployed: Deployed, database_url: str, tmp_path: Path
):
    run_traffic(deployed, rounds=6, seed=31)
    bulk_transfers(deployed.url, deployed.addresses.token_a, 6_000, logs_per_tx=50,
                   txs_per_block=1)
    run_traffic(deployed, rounds=3, seed=32, prepare=False)
    tip = head(deployed.rpc)
    target = tip - FINALITY  # what the backfill covers; the blocks above are the live tail's
    # The backfill's first unit (it runs alone: slow start) waits 4 s before its commit: the
    # live tail follows the top blocks, and the reorg replaces them, before the backfill has
    # stored anything below them.
    with following(deployed, database_url, tmp_path,
                   env={"INDEXER_FAULTS": "before_commit=sleep:4"}) as live:
        wait_for(lambda: coverage(database_url).get("WETH9", -1) >= tip, timeout=30,
                 interval=0.02)
        r = reorg(deployed, FINALITY, new_blocks=FINALITY + 3, seed=31)
        done = backfilled(database_url, target)
        assert len(done) < len(DEMO_SOURCES) or min(done.values()) <= target, (
            f"the backfill ended before the reorg ({done}): make it longer")
        more_traffic(deployed, seed=33, rounds=1)
        live.wait_caught_up(timeout=60)
        live.check()
        # The tail's blocks sat right above the backfill's target: the fork is found there.
        assert [summary(row) for row in recorded_reorgs(database_url)] == [
            (r.fork, r.old_tip, FINALITY, False)]
        assert live.errors() == []


def test_reorg_while_stopped_is_repaired_at_start(
    chain: Deployed, database_url: str, tmp_path: Path
):
    with following(chain, database_url, tmp_path) as live:
        live.wait_caught_up()
        more_traffic(chain, seed=41)
        live.wait_caught_up()
        assert live.stop(signal.SIGINT) == 130
        r = reorg(chain, 4, seed=41)
        live.start()
        live.wait_caught_up()  # no new block: only a repair makes the stored head match
        live.check()
        [row] = recorded_reorgs(database_url)
        assert summary(row) == (r.fork, r.old_tip, 4, False)
        assert row["new_tip"] == r.new_tip  # the node stood still meanwhile


def _add_liquidity(d: Deployed, token: str) -> int:
    """Account 0 adds liquidity to the pair (token, DemoToken A), creating it the first time;
    the block it landed in."""
    data = d.router.encode_abi("addLiquidity", [token, d.addresses.token_a, 1_000 * E18,
                                                1_000 * E18, 0, 0, ACCOUNT0, DEADLINE])
    got = receipt(d.rpc, send(d.rpc, ACCOUNT0, d.addresses.router, data, gas=5_000_000))
    return int(got["blockNumber"], 16)


def test_reorg_that_drops_a_pair_creation_removes_the_pair_its_rows_and_its_record(
    chain: Deployed, database_url: str, tmp_path: Path
):
    x = deploy_contract(chain.url, "TestToken", "Reorged X", "RX", 10**9 * E18)
    receipt(chain.rpc, send(chain.rpc, ACCOUNT0, x.address,
                            x.encode_abi("approve", [chain.addresses.router, MAX_UINT])))
    with following(chain, database_url, tmp_path) as live:
        live.wait_caught_up()
        base = head(chain.rpc)
        created = _add_liquidity(chain, x.address)  # PairCreated, then Mint, Sync, Transfer
        _add_liquidity(chain, x.address)
        pair = chain.pair(x.address, chain.addresses.token_a)
        assert pair is not None
        live.wait_caught_up()
        assert children(database_url).get(pair.lower()) == created
        assert rows_of(database_url, pair) > 0
        assert head(chain.rpc) - base == 2
        r = reorg(chain, 2, seed=51)  # a branch without the pair
        live.wait_caught_up()
        live.check()
        assert chain.pair(x.address, chain.addresses.token_a) is None
        assert pair.lower() not in children(database_url)
        assert rows_of(database_url, pair) == 0
        assert [summary(row)[:2] for row in recorded_reorgs(database_url)] == [(r.fork, r.old_tip)]
        # Created again in another block: the same CREATE2 address, found anew.
        again = _add_liquidity(chain, x.address)
        live.wait_caught_up()
        live.check()
        assert children(database_url)[pair.lower()] == again
        assert rows_of(database_url, pair) > 0


def test_chain_shortened_below_the_indexed_tip_is_repaired_when_a_new_block_comes(
    chain: Deployed, database_url: str, tmp_path: Path
):
    with following(chain, database_url, tmp_path) as live:
        live.wait_caught_up()
        more_traffic(chain, seed=61)
        live.wait_caught_up()
        tip = head(chain.rpc)
        rollback(chain.rpc, 3)
        # The head's hash is the stored one: like a node behind, nothing to undo yet.
        wait_for(lambda: live.metric("indexer_chain_head_block") == tip - 3, timeout=20)
        assert recorded_reorgs(database_url) == []
        mine_blocks(chain, 1, random.Random(61))  # another block at tip - 2
        live.wait_caught_up()
        live.check()
        [row] = recorded_reorgs(database_url)
        assert summary(row) == (tip - 3, tip, 3, False) and row["new_tip"] == tip - 2
        assert max(coverage(database_url).values()) == tip - 2
        assert live.metric("indexer_reorgs_total") == 1


class Vanish:
    """Proxy rewrite: the first eth_getLogs reaching block ``at`` finds the node one block
    shorter (rolled back right then), and gets the node's own answer to that."""

    def __init__(self, url: str) -> None:
        self.rpc = JsonRpc(url)
        self.at: int | None = None
        self.fired = False

    def __call__(self, request: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        to = request.get("params", [{}])[0].get("toBlock") if request.get("method") == (
            "eth_getLogs") else None
        if not isinstance(to, str) or not to.startswith("0x") or self.at is None or (
                self.fired or int(to, 16) < self.at):
            return reply
        self.fired = True
        rollback(self.rpc, head(self.rpc) - self.at + 1)
        try:
            return {**reply, "result": self.rpc.call("eth_getLogs", *request["params"])}
        except RpcError as e:
            return {"jsonrpc": "2.0", "id": request.get("id"), "error": e.error}


def test_block_gone_between_the_head_and_its_logs_is_not_fatal(
    chain: Deployed, database_url: str, tmp_path: Path
):
    vanish = Vanish(chain.url)
    with vanish.rpc, RpcProxy(chain.url, vanish) as proxy, following(
            chain, database_url, tmp_path, rpc_url=proxy.url) as live:
        live.wait_caught_up()
        vanish.at = head(chain.rpc) + 1
        mine_blocks(chain, 1, random.Random(71))  # its logs are asked for once it is gone
        wait_for(lambda: vanish.fired, timeout=20, interval=0.05)
        mine_blocks(chain, 2, random.Random(72))  # another block at that height, one more
        live.wait_caught_up()
        live.check()
        assert live.proc is not None and live.proc.poll() is None
