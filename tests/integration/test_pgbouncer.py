"""`indexer` through PgBouncer in transaction pooling mode (Debian's ``pgbouncer``, installed by
``scripts/setup-pgbouncer``), configured as most installations are
(``ignore_startup_parameters = extra_float_digits``): no startup parameter, session setting,
session advisory lock or named prepared statement may be relied on, since consecutive
transactions of one connection may run on different server connections. Two workers backfill
and follow the head, a reorg is repaired, and the tables end equal to the chain."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_end_to_end import compare
from tests.support.cli import env_for, indexer, start_indexer, stop, wait_for, write_chain
from tests.support.contracts import Deployed
from tests.support.pgcluster import PgBouncer, PgCluster, pgbouncer_binary
from tests.support.reorg import block_mismatches, caught_up, recorded_reorgs, reorg
from tests.support.services import ServiceError, database_name, drop_database, fresh_database
from tests.support.traffic import run_traffic

pytestmark = pytest.mark.skipif(pgbouncer_binary() is None,
                                reason="pgbouncer not installed (scripts/setup-pgbouncer)")


@pytest.fixture(scope="module")
def bouncer() -> Iterator[tuple[PgCluster, PgBouncer]]:
    try:
        server = PgCluster().init()
    except ServiceError as e:
        pytest.skip(str(e))
    # Fewer server connections than the workers' pools hold: transactions of one client
    # connection land on different server connections all the time.
    pooler = PgBouncer(server.port, pool_size=3)
    try:
        yield server, pooler.start()
    finally:
        pooler.stop()
        server.destroy()


@pytest.fixture
def urls(bouncer: tuple[PgCluster, PgBouncer]) -> Iterator[tuple[str, str]]:
    """(through PgBouncer, straight to the server) for one fresh database."""
    server, pooler = bouncer
    direct = asyncio.run(fresh_database(server.url(), "bouncer"))
    try:
        yield pooler.url(database_name(direct)), direct
    finally:
        asyncio.run(drop_database(server.url(), direct))


def test_two_workers_through_pgbouncer_backfill_follow_and_repair_a_reorg(
    deployed: Deployed, urls: tuple[str, str], bouncer: tuple[PgCluster, PgBouncer],
    tmp_path: Path,
):
    pooled, direct = urls
    run_traffic(deployed, rounds=10, seed=51)
    chain_file = write_chain(tmp_path / "anvil.yaml", finality_depth=3, get_logs_max_range=8)
    env = env_for(pooled, deployed.url)
    log = tmp_path / "run.log"
    proc = start_indexer(["run", "--chain", str(chain_file), "--workers", "2",
                          "--target-logs", "40"], env, log=log)
    try:
        wait_for(lambda: caught_up(direct, deployed.rpc), timeout=90)
        run_traffic(deployed, rounds=2, seed=52, prepare=False, sweep=False)
        wait_for(lambda: caught_up(direct, deployed.rpc), timeout=60)
        done = reorg(deployed, 2, seed=53)
        wait_for(lambda: caught_up(direct, deployed.rpc) and recorded_reorgs(direct),
                 timeout=60)
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        code = stop(proc, signal.SIGINT)
    text = log.read_text()
    assert code in (0, 130), text[-3000:]
    assert "through a connection pooler" in text  # found out at connect
    for refused in ("ProtocolViolationError", "unsupported startup parameter",
                    "InvalidSQLStatementNameError", "DuplicatePreparedStatementError",
                    "Traceback", " ERROR "):
        assert refused not in text, refused
    assert f"replaced (depth {done.depth})" in text
    compare(deployed, direct)
    assert block_mismatches(direct, deployed.rpc) == []

    status = indexer(["status", "--json"], env)  # and the other commands work through it too
    assert status.code == 0, status.err
    assert json.loads(status.out)[0]["indexed"] >= done.new_tip - 3
