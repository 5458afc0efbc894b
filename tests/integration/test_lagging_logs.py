"""A node whose logs backend lags its headers (as behind a load balancer): its eth_getLogs
answers leave out the logs of recent blocks while its headers, blooms included, are those of
the chain. Such answers are refused and asked again, never taken: the run ends with every table
equal to the chain. (The same node at the end of every range is found by the check of the
range's last block; these lies are in the middle of ranges, or come with receipts that cannot
confirm anything.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_end_to_end import compare
from tests.support.cli import env_for, indexer, write_chain
from tests.support.contracts import Deployed
from tests.support.proxy import RpcProxy
from tests.support.traffic import run_traffic


class Lagging:
    """For its first ``lies`` eth_getLogs answers with logs in two blocks or more, the logs of
    one block in the middle (``middle``) or of the last block (``tip``, with null receipts)
    are left out; headers are always the chain's."""

    def __init__(self, lies: int, where: str) -> None:
        self.lies = lies
        self.where = where
        self.dropped: list[int] = []

    def __call__(self, request: dict, reply: dict) -> dict:
        method, result = request.get("method"), reply.get("result")
        if method == "eth_getBlockReceipts" and self.where == "tip" and self.lies > 0:
            reply["result"] = None  # "I have no receipts for that block (yet)"
        if method != "eth_getLogs" or not isinstance(result, list) or self.lies <= 0:
            return reply
        blocks = sorted({int(lg["blockNumber"], 16) for lg in result})
        end = int(request["params"][0]["toBlock"], 16)
        if self.where == "middle":
            inner = [b for b in blocks if b != end]
            if len(blocks) < 2 or not inner:
                return reply
            drop = inner[len(inner) // 2]
        else:
            if end not in blocks:
                return reply
            drop = end
        self.lies -= 1
        self.dropped.append(drop)
        reply["result"] = [lg for lg in result if int(lg["blockNumber"], 16) != drop]
        return reply


@pytest.mark.parametrize("where", ["middle", "tip"])
def test_answers_of_a_lagging_logs_backend_are_refused_until_it_catches_up(
        deployed: Deployed, database_url: str, tmp_path: Path, where: str):
    run_traffic(deployed, rounds=30, seed=61)
    # Each refused answer cools the endpoint down (up to a second) and the range is asked
    # again: a dozen lies in a row show the refusal as forty did, in a third of the time.
    lagging = Lagging(lies=12, where=where)
    with RpcProxy(deployed.url, lagging) as proxy:
        chain = write_chain(tmp_path / "anvil.yaml", get_logs_max_range=50)
        res = indexer(["run", "--chain", str(chain), "--once", "--target-logs", "50"],
                      env_for(database_url, proxy.url), timeout=300)
    assert lagging.lies == 0, "the proxy told fewer lies than planned: the test proves less"
    assert res.code == 0, res.err
    assert "logsBloom says it may hold one" in res.err
    compare(deployed, database_url)
