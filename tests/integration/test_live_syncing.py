"""A node that falls behind (syncing, or a lagging backend behind a load balancer) is not a
reorg: the live tail waits for it and deletes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.test_end_to_end import compare
from tests.support.chaos import Chaos, ChaosProxy
from tests.support.cli import env_for, start_indexer, stop, wait_for, write_chain
from tests.support.contracts import Deployed
from tests.support.reorg import caught_up, fetch, head, recorded_reorgs
from tests.support.traffic import run_traffic

FINALITY = 5


def _live_tip(url: str) -> int | None:
    rows = fetch(url, "SELECT max(number) AS n FROM indexer.blocks WHERE chain_id = 31337 AND live")
    return rows[0]["n"] if rows else None


@contextmanager
def following(deployed: Deployed, database_url: str, tmp_path: Path) -> Iterator[ChaosProxy]:
    """`indexer run` on the chain (finality_depth 5) through a chaos proxy, caught up with the
    head; the proxy is yielded to make the node fall behind."""
    chain = write_chain(tmp_path / "anvil.yaml", finality_depth=FINALITY)
    with ChaosProxy(deployed.url, Chaos()) as proxy:
        proc = start_indexer(["run", "--chain", str(chain)], env_for(database_url, proxy.url),
                             log=tmp_path / "run.log")
        try:
            wait_for(lambda: caught_up(database_url, deployed.rpc), timeout=60)
            yield proxy
        finally:
            stop(proc)


def test_a_node_far_behind_the_indexed_tip_causes_no_reorg(
    deployed: Deployed, database_url: str, tmp_path: Path
):
    run_traffic(deployed, rounds=4, seed=21)
    log = tmp_path / "run.log"
    with following(deployed, database_url, tmp_path) as proxy:
        top = head(deployed.rpc)
        rows = fetch(database_url, "SELECT count(*) AS n FROM chaindata.weth9_deposit")[0]["n"]
        assert rows > 0
        # The node now answers as if it were 3 x finality_depth blocks behind (its head and
        # every block above it are unknown to it), for longer than any settling time.
        proxy.chaos.lag = 3 * FINALITY
        wait_for(lambda: "below the indexed tip" in log.read_text(), timeout=30)
        time.sleep(8)
        assert _live_tip(database_url) == top
        assert recorded_reorgs(database_url) == []
        assert "replaced (depth" not in log.read_text()
        assert fetch(database_url, "SELECT count(*) AS n FROM chaindata.weth9_deposit")[0]["n"] == rows
        proxy.chaos.lag = 0  # synced: new blocks come in as usual
        run_traffic(deployed, rounds=2, seed=22, prepare=False, sweep=False)
        top = head(deployed.rpc)
        wait_for(lambda: caught_up(database_url, deployed.rpc), timeout=60)
        assert recorded_reorgs(database_url) == []
    compare(deployed, database_url, top)


def test_a_node_a_few_blocks_behind_is_waited_for_while_syncing_then_taken_as_shorter(
    deployed: Deployed, database_url: str, tmp_path: Path
):
    """Within the finality depth the head going down could be a chain that got shorter: while
    the node says it is syncing nothing is deleted; once it says it is not and the lower head
    lasts, the blocks above it are taken as gone, and come back when the node has them again."""
    run_traffic(deployed, rounds=3, seed=23)
    log = tmp_path / "run.log"
    with following(deployed, database_url, tmp_path) as proxy:
        top = head(deployed.rpc)
        proxy.chaos.syncing = True
        proxy.chaos.lag = 2
        wait_for(lambda: "below the indexed tip" in log.read_text(), timeout=30)
        time.sleep(7)  # past the settling time (5 block times of 1 s)
        assert _live_tip(database_url) == top
        assert recorded_reorgs(database_url) == []
        proxy.chaos.syncing = False
        wait_for(lambda: "the chain got shorter" in log.read_text(), timeout=30)
        (repair,) = recorded_reorgs(database_url)
        assert (repair["fork_block"], repair["old_tip"], repair["deep"]) == (top - 2, top, False)
        proxy.chaos.lag = 0
        wait_for(lambda: caught_up(database_url, deployed.rpc), timeout=60)
    compare(deployed, database_url, top)
