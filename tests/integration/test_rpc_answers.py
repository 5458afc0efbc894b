"""`indexer run --once` through a proxy of our own in front of anvil that tells standing lies in
its eth_getLogs answers, the kind a retry never cures: every run must end with every table
equal to the chain (the independent reference decoder reads block times from the headers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_end_to_end import compare
from tests.support.chaos import Chaos, ChaosProxy
from tests.support.cli import env_for, indexer, write_chain
from tests.support.contracts import Deployed
from tests.support.traffic import run_traffic


@pytest.fixture(scope="module")
def chain(deployed_module: Deployed) -> Deployed:
    run_traffic(deployed_module, rounds=12, seed=11)
    return deployed_module


def _run(tmp_path: Path, database_url: str, proxy_url: str, *, timeout: float = 240) -> str:
    chain_file = write_chain(tmp_path / "anvil.yaml", get_logs_max_range=50)
    res = indexer(["run", "--chain", str(chain_file), "--once"],
                  env_for(database_url, proxy_url, INDEXER_RPC_TIMEOUT="2"), timeout=timeout)
    assert res.code == 0, res.err[-3000:]
    assert "Traceback" not in res.err
    return res.err


def test_block_time_is_the_headers_whatever_the_logs_say(
    chain: Deployed, database_url: str, tmp_path: Path
) -> None:
    with ChaosProxy(chain.url, Chaos(wrong_timestamps=True)) as proxy:
        _run(tmp_path, database_url, proxy.url)
    assert proxy.seen["wrong_timestamps"] > 0, "anvil sent no blockTimestamp: nothing was tested"
    compare(chain, database_url)
