"""Repairs the live tail refuses to make on its own, on anvil while `indexer run` follows the
head: an endpoint that starts serving another chain (same chain id, another block 0), and a
reorg deeper than the chain file's `max_reorg_depth`. Either way nothing is deleted, the run
ends with exit 1 and an ERROR line that says what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.test_reorg import following, more_traffic, rows_above
from tests.support.contracts import Deployed
from tests.support.proxy import RpcProxy
from tests.support.reorg import head, recorded_reorgs, reorg
from tests.support.services import Anvil
from tests.support.traffic import run_traffic


def _same(request: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    return reply


def test_an_endpoint_that_turns_into_another_chain_is_refused_and_nothing_is_deleted(
    deployed: Deployed, database_url: str, tmp_path: Path
) -> None:
    run_traffic(deployed, rounds=6, seed=31)
    with RpcProxy(deployed.url, _same) as proxy, following(
            deployed, database_url, tmp_path, finality_depth=3, rpc_url=proxy.url) as live:
        live.wait_caught_up()
        rows = rows_above(database_url, -1)
        assert rows > 0
        # Another anvil: chain id 31337 too, but its own block 0 and no contract of ours.
        with Anvil(extra_args=["--timestamp", "1000000"]) as other:
            other.rpc().call("anvil_mine", hex(head(deployed.rpc) + 20))
            proxy.upstream = other.url
            assert live.proc is not None
            code = live.proc.wait(90)
        live.proc = None
        text = live.readable()
        assert code == 1, text[-3000:]
        assert rows_above(database_url, -1) == rows
        assert recorded_reorgs(database_url) == []
        [line] = [x for x in live.errors() if "REPAIR REFUSED" in x]
        assert "block 0" in line and "Nothing was deleted" in line and "indexer reset" in line
        assert "error: anvil: the stored blocks differ" in text


def test_a_reorg_deeper_than_max_reorg_depth_is_refused_and_nothing_is_deleted(
    deployed: Deployed, database_url: str, tmp_path: Path
) -> None:
    run_traffic(deployed, rounds=6, seed=32)
    with following(deployed, database_url, tmp_path, finality_depth=3,
                   max_reorg_depth=4) as live:
        live.wait_caught_up()
        more_traffic(deployed, seed=33)
        live.wait_caught_up()
        rows = rows_above(database_url, -1)
        reorg(deployed, 8, seed=34)
        assert live.proc is not None
        code = live.proc.wait(90)
        live.proc = None
        text = live.readable()
        assert code == 1, text[-3000:]
        assert rows_above(database_url, -1) == rows
        assert recorded_reorgs(database_url) == []
        [line] = [x for x in live.errors() if "REPAIR REFUSED" in x]
        assert "max_reorg_depth 4 in" in line and "Nothing was deleted" in line, line
