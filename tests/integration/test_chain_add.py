"""Adding a network while another is being indexed: `indexer chain add` probes a second anvil
(another chain id) and writes its file; `indexer run` on that file, untouched, makes the chain
appear in Prometheus, in the dashboards' `chain` variable and in the alert rules' series, with
no edit to any file."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.config import load_chain
from tests.integration.test_monitoring import (
    DASHBOARDS,
    Prometheus,
    grafana_expr,
    http_get,
    metrics_url,
)
from tests.support.cli import env_for, indexer, start_indexer, stop, wait_for
from tests.support.contracts import Deployer
from tests.support.services import Anvil, drop_database, free_port, fresh_database
from tests.support.traffic import run_traffic

SECOND_CHAIN_ID = 31338


@pytest.fixture
def workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="indexer-chain-add-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_chain_added_by_command_appears_in_prometheus_dashboards_and_alerts(
    database_admin_url: str, workdir: Path
):
    url = asyncio.run(fresh_database(database_admin_url))
    first_port, second_port = free_port(), free_port()
    # Two worker slots, as service discovery would find them; the second is empty for now.
    prom = Prometheus([f"127.0.0.1:{first_port}", f"127.0.0.1:{second_port}"], workdir).start()
    procs = []
    try:
        with Anvil() as first, Anvil(chain_id=SECOND_CHAIN_ID, block_time=1) as second:
            deployed = Deployer(first.url).deploy()
            run_traffic(deployed, rounds=3, seed=5)
            deployed.rpc.close()
            env = env_for(url, first.url, INDEXER_METRICS_PORT=str(first_port))
            procs.append(start_indexer(["run", "--chain", "anvil"], env, log=workdir / "first.log"))
            wait_for(lambda: prom.query('indexer_indexed_block{chain="anvil"} > 0'), timeout=60)

            # A new user: one command, from the folder the chains are kept in.
            res = indexer(["chain", "add", "second", "--rpc", second.url], env, cwd=workdir)
            assert res.code == 0, res.err + res.out
            path = workdir / "chains" / "second.yaml"
            assert "wrote chains/second.yaml" in res.out
            chain = load_chain(path)
            assert chain.chain_id == SECOND_CHAIN_ID and chain.name == "second"
            assert chain.block_time == 1.0  # measured from anvil's one-second blocks
            text = path.read_text()
            assert "measured" in text and "start_block" in text

            check = indexer(["chain", "check", "second"], env, cwd=workdir)
            assert f"ok   rpc[0] 0:127.0.0.1: chain id {SECOND_CHAIN_ID}" in check.out, check.out
            # the placeholder contract is reported until the user puts theirs
            assert "FAIL Placeholder" in check.out and check.code == 1

            env2 = env_for(url, None, INDEXER_METRICS_PORT=str(second_port))
            procs.append(start_indexer(["run", "--chain", "second"], env2, cwd=workdir,
                                       log=workdir / "second.log"))

            def listed() -> bool:
                return "second" in prom.label_values("indexer_chain_info", "chain")

            wait_for(listed, timeout=60, interval=1)
            assert "anvil" in prom.label_values("indexer_chain_info", "chain")
            info = prom.query('indexer_chain_info{chain="second"}')
            assert info[0]["metric"]["chain_id"] == str(SECOND_CHAIN_ID)
            assert info[0]["metric"]["block_time_seconds"] == "1"
            for expr in ('indexer_chain_head_block{chain="second"}',
                         'indexer_lag_seconds{chain="second"}',
                         # the alert rules' series: the chain is covered with no rule edited
                         'chain:indexer_excess_lag_seconds{chain="second"}',
                         'chain:indexer_lag_threshold_seconds{chain="second"}'):
                assert wait_for(lambda e=expr: prom.query(e), timeout=30, interval=1), expr
            overview = json.loads(next(p for p in DASHBOARDS if "overview" in p.name).read_text())
            for panel in overview["panels"][:3]:  # lag blocks, lag seconds, head vs indexed
                for target in panel["targets"]:
                    query = grafana_expr(target["expr"], "second")
                    got = wait_for(lambda q=query: prom.query(q), timeout=30, interval=1)
                    assert {s["metric"].get("chain") for s in got} == {"second"}, panel["title"]
            # the first chain kept being indexed meanwhile
            assert prom.query('indexer_indexed_block{chain="anvil"} > 0')
            assert http_get(metrics_url(second_port, "healthz"))[0] == 200
    finally:
        for p in procs:
            stop(p)
        prom.stop()
        asyncio.run(drop_database(database_admin_url, url))
