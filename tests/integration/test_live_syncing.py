"""A node that falls behind (syncing, or a lagging backend behind a load balancer) is not a
reorg: the live tail waits for it and deletes nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg

from tests.integration.test_end_to_end import compare
from tests.support.chaos import Chaos, ChaosProxy
from tests.support.cli import env_for, start_indexer, stop, wait_for, write_chain
from tests.support.contracts import Deployed
from tests.support.reorg import covered_to
from tests.support.traffic import run_traffic

FINALITY = 5


async def _query(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    except asyncpg.UndefinedTableError:
        return []
    finally:
        await conn.close()


def _live_tip(url: str) -> int | None:
    rows = asyncio.run(_query(
        url, "SELECT max(number) AS n FROM indexer.blocks WHERE chain_id = 31337 AND live"))
    return rows[0]["n"] if rows else None


def _caught_up(url: str, top: int) -> bool:
    """The live tail holds ``top`` and every source is recorded done from block 0 to ``top``
    without a gap (a hole left by a retried backfill unit would not count)."""
    reach = covered_to(url)
    return _live_tip(url) == top and len(reach) == 4 and min(reach.values()) >= top


def _head(deployed: Deployed) -> int:
    return int(deployed.rpc.call("eth_blockNumber"), 16)


def test_a_node_far_behind_the_indexed_tip_causes_no_reorg(
    deployed: Deployed, database_url: str, tmp_path: Path
):
    run_traffic(deployed, rounds=4, seed=21)
    chain = write_chain(tmp_path / "anvil.yaml", finality_depth=FINALITY)
    log = tmp_path / "run.log"
    with ChaosProxy(deployed.url, Chaos()) as proxy:
        proc = start_indexer(["run", "--chain", str(chain)], env_for(database_url, proxy.url),
                             log=log)
        try:
            top = _head(deployed)
            wait_for(lambda: _live_tip(database_url) == top, timeout=60)
            rows_before = asyncio.run(_query(
                database_url, "SELECT count(*) AS n FROM indexer.ranges WHERE chain_id = 31337"))
            # The node now answers as if it were 3 x finality_depth blocks behind (its head and
            # every block above it are unknown to it), for longer than any settling time.
            proxy.chaos.lag = 3 * FINALITY
            wait_for(lambda: "below the indexed tip" in log.read_text(), timeout=30)
            time.sleep(8)
            assert _live_tip(database_url) == top
            assert asyncio.run(_query(database_url, "SELECT * FROM indexer.reorgs")) == []
            assert "replaced (depth" not in log.read_text()
            proxy.chaos.lag = 0  # synced: new blocks come in as usual
            run_traffic(deployed, rounds=2, seed=22, prepare=False, sweep=False)
            top = _head(deployed)
            wait_for(lambda: _caught_up(database_url, top), timeout=60)
            assert asyncio.run(_query(database_url, "SELECT * FROM indexer.reorgs")) == []
            assert rows_before  # ranges were recorded before the lag
        finally:
            stop(proc)
    compare(deployed, database_url, top)


def test_a_node_a_few_blocks_behind_is_waited_for_while_syncing_then_taken_as_shorter(
    deployed: Deployed, database_url: str, tmp_path: Path
):
    """Within the finality depth the head going down could be a chain that got shorter: while
    the node says it is syncing nothing is deleted; once it says it is not and the lower head
    lasts, the blocks above it are taken as gone, and come back when the node has them again."""
    run_traffic(deployed, rounds=3, seed=23)
    chain = write_chain(tmp_path / "anvil.yaml", finality_depth=FINALITY)
    log = tmp_path / "run.log"
    with ChaosProxy(deployed.url, Chaos()) as proxy:
        proc = start_indexer(["run", "--chain", str(chain)], env_for(database_url, proxy.url),
                             log=log)
        try:
            top = _head(deployed)
            wait_for(lambda: _live_tip(database_url) == top, timeout=60)
            proxy.chaos.syncing = True
            proxy.chaos.lag = 2
            wait_for(lambda: "below the indexed tip" in log.read_text(), timeout=30)
            time.sleep(7)  # past the settling time (5 block times of 1 s)
            assert _live_tip(database_url) == top
            assert asyncio.run(_query(database_url, "SELECT * FROM indexer.reorgs")) == []
            proxy.chaos.syncing = False
            wait_for(lambda: "the chain got shorter" in log.read_text(), timeout=30)
            (repair,) = asyncio.run(_query(database_url, "SELECT * FROM indexer.reorgs"))
            assert (repair["fork_block"], repair["old_tip"], repair["deep"]) == (top - 2, top, False)
            proxy.chaos.lag = 0
            wait_for(lambda: _caught_up(database_url, top), timeout=60)
        finally:
            stop(proc)
    compare(deployed, database_url, top)
