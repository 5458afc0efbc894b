"""An ``INDEXER_SCHEMA`` with capitals: every statement names it quoted, and tables are looked
up as they are named (no case folding), so a reorg repair and ``indexer reset`` reach the event
rows. (Looked up unquoted, ``ChainData`` was folded to ``chaindata`` and found no table: reset
left every row, a repair deleted none and the next run refused the new branch's rows forever.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.test_end_to_end import demo_sources, head
from tests.support.cli import env_for, indexer, start_indexer, stop, wait_for, write_chain
from tests.support.contracts import Deployed
from tests.support.reference import assert_tables_equal, expected_rows, read_tables
from tests.support.reorg import caught_up, fetch
from tests.support.traffic import run_traffic

SCHEMA = "ChainData"


def _compare(deployed: Deployed, database_url: str, until: int) -> dict[str, list]:
    expected = expected_rows(deployed.url, demo_sources(deployed), 0, until)
    assert_tables_equal(expected, asyncio.run(read_tables(database_url, SCHEMA, list(expected))))
    return expected


def test_a_schema_with_capitals_is_repaired_and_reset(
    deployed: Deployed, database_url: str, tmp_path: Path
):
    run_traffic(deployed, rounds=4, seed=41)
    chain = write_chain(tmp_path / "anvil.yaml", finality_depth=3)
    env = env_for(database_url, deployed.url, INDEXER_SCHEMA=SCHEMA)
    log = tmp_path / "run.log"
    proc = start_indexer(["run", "--chain", str(chain)], env, log=log)
    try:
        wait_for(lambda: caught_up(database_url, deployed.rpc), timeout=90)
        deployed.rpc.call("anvil_rollback", 2)  # the two newest blocks, with their logs, go
        run_traffic(deployed, rounds=1, seed=42, prepare=False, sweep=False)
        wait_for(lambda: "replaced (depth" in log.read_text(), timeout=60)
        wait_for(lambda: caught_up(database_url, deployed.rpc), timeout=60)
    finally:
        stop(proc)
    expected = _compare(deployed, database_url, head(deployed))  # the old branch's rows went
    assert sum(map(len, expected.values())) > 0
    res = indexer(["reset", "--chain", str(chain), "--yes"], env)
    assert res.code == 0, res.err
    for table in expected:
        (row,) = fetch(database_url, f'SELECT count(*) AS n FROM "{SCHEMA}".{table}')
        assert row["n"] == 0, table
    res = indexer(["run", "--chain", str(chain), "--once"], env)  # up to the safe head
    assert res.code == 0, res.err
    _compare(deployed, database_url, head(deployed) - 3)
