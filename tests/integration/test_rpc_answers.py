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


def test_blocks_over_the_providers_result_cap_are_indexed_whole(
    chain: Deployed, database_url: str, tmp_path: Path
) -> None:
    """A provider that serves at most 2 logs per answer, one block too: blocks with more are
    read by halves of the address list, then from their receipts (once: fatal at every
    restart)."""
    with ChaosProxy(chain.url, Chaos(block_logs_cap=2)) as proxy:
        err = _run(tmp_path, database_url, proxy.url)
    assert proxy.seen["block_logs_cap"] > 0
    assert proxy.methods["eth_getBlockReceipts"] > 0, "no block needed its receipts"
    assert "reading its receipts" in err
    compare(chain, database_url)


def test_logs_sharing_a_log_index_are_said_counted_and_read_from_receipts(
    chain: Deployed, database_url: str, tmp_path: Path
) -> None:
    """A node whose eth_getLogs numbers the second log of every block like the first (once
    refused and asked again for ever)."""
    with ChaosProxy(chain.url, Chaos(shared_log_index=True)) as proxy:
        err = _run(tmp_path, database_url, proxy.url, timeout=120)
    assert proxy.seen["shared_log_index"] > 0
    assert proxy.methods["eth_getBlockReceipts"] > 0
    assert "share logIndex" in err and "from receipts instead" in err
    compare(chain, database_url)
