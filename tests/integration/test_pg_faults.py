"""`indexer run` against a Postgres server of the test's own that the test disturbs: restarted
in the middle of a run (``pg_ctl stop -m fast``, started again seconds later), its backends
terminated again and again, gone for longer than the run may wait, and a worker frozen in the
middle of its COPY. Every run that goes on must end with every table equal to the chain's logs
(the independent reference decoder); a run that gives up says why and exits 1."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.integration.test_end_to_end import compare
from tests.support.cli import env_for, start_indexer, stop, wait_for, write_chain
from tests.support.contracts import Deployed
from tests.support.pgcluster import PgCluster
from tests.support.reorg import caught_up, fetch, reorg
from tests.support.services import ServiceError, drop_database, fresh_database
from tests.support.traffic import bulk_transfers, run_traffic

# A commit takes a while (the fault point sleeps), so that a run lasts long enough to be hit.
SLOW = "before_commit=sleep:0.3!"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    try:
        server = PgCluster().init()
    except ServiceError as e:
        pytest.skip(str(e))
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def db(cluster: PgCluster) -> Iterator[str]:
    url = asyncio.run(fresh_database(cluster.url(), "pgfault"))
    try:
        yield url
    finally:
        if not cluster.running():
            cluster.start()
        asyncio.run(drop_database(cluster.url(), url))


@pytest.fixture(scope="module")
def chain(deployed_module: Deployed) -> Deployed:
    run_traffic(deployed_module, rounds=12, seed=41)
    return deployed_module


def _command(tmp_path: Path, *extra: str) -> list[str]:
    chain_file = write_chain(tmp_path / "anvil.yaml", get_logs_max_range=8)
    return ["run", "--chain", str(chain_file), "--target-logs", "40", "--concurrency", "2",
            *extra]


def _committed(url: str) -> int:
    try:
        return len(fetch(url, "SELECT 1 FROM indexer.ranges"))
    except (OSError, ServiceError):
        return 0


def _finish(proc: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> str:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc, signal.SIGKILL)
        raise AssertionError(f"the run did not end: {log.read_text()[-3000:]}") from None
    return log.read_text()


def test_a_restart_of_postgres_in_the_middle_of_a_run_is_waited_for(
    chain: Deployed, cluster: PgCluster, db: str, tmp_path: Path
):
    log = tmp_path / "run.log"
    proc = start_indexer(_command(tmp_path, "--once", "--workers", "2"),
                         env_for(db, chain.url, INDEXER_FAULTS=SLOW), log=log)
    wait_for(lambda: _committed(db) > 0, timeout=60)
    cluster.stop("fast")  # every session ends; connections are refused
    time.sleep(6)
    cluster.start()
    text = _finish(proc, log)
    assert proc.returncode == 0, text[-3000:]
    assert "Postgres unreachable while" in text, "the outage never hit the run"
    assert "retrying in" in text and "giving up after 300s" in text  # each attempt said
    assert "Traceback" not in text
    compare(chain, db)


def test_backends_terminated_again_and_again_lose_nothing(
    chain: Deployed, cluster: PgCluster, db: str, tmp_path: Path
):
    log = tmp_path / "run.log"
    proc = start_indexer(_command(tmp_path, "--once", "--workers", "2"),
                         env_for(db, chain.url, INDEXER_FAULTS=SLOW), log=log)
    wait_for(lambda: _committed(db) > 0, timeout=60)
    ended = 0
    for _ in range(12):
        if proc.poll() is not None:
            break
        ended += cluster.terminate(db.rsplit("/", 1)[1])
        time.sleep(0.4)
    text = _finish(proc, log)
    assert ended >= 6, "too few backends terminated: the test proves little"
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text
    compare(chain, db)


def test_postgres_gone_for_longer_than_the_wait_ends_the_run_with_a_clear_error(
    chain: Deployed, cluster: PgCluster, db: str, tmp_path: Path
):
    log = tmp_path / "run.log"
    env = env_for(db, chain.url, INDEXER_FAULTS=SLOW, INDEXER_DB_WAIT="4")
    proc = start_indexer(_command(tmp_path, "--once"), env, log=log)
    wait_for(lambda: _committed(db) > 0, timeout=60)
    cluster.stop("fast")
    try:
        started = time.monotonic()
        text = _finish(proc, log, timeout=60)
        took = time.monotonic() - started
    finally:
        cluster.start()
    assert proc.returncode == 1, text[-3000:]
    assert "Postgres unreachable for" in text and "(INDEXER_DB_WAIT=4)" in text
    assert "Traceback" not in text
    assert took < 30
    # What was committed is kept; the same command goes on from there.
    again = start_indexer(_command(tmp_path, "--once"), env_for(db, chain.url), log=log)
    assert _finish(again, log) and again.returncode == 0
    compare(chain, db)


def test_a_worker_frozen_in_its_copy_does_not_hold_its_blocks_for_ever(
    deployed: Deployed, cluster: PgCluster, db: str, tmp_path: Path
):
    """Worker A stops (SIGSTOP) in the middle of the COPY of a block of 10,000 logs, the rows
    sent so far inserted: Postgres waits for the rest for ever (no timeout applies to a COPY
    waiting for data), and those rows' key locks block worker B, which writes the same block.
    B ends A's stalled commit after twice the lease TTL (at least 10 s) and finishes."""
    bulk_transfers(deployed.url, deployed.addresses.token_a, 10_000, logs_per_tx=1000,
                   txs_per_block=10)
    run_traffic(deployed, rounds=2, seed=42)
    env = env_for(db, deployed.url, INDEXER_LEASE_TTL="3")
    command = ["run", "--chain", str(write_chain(tmp_path / "anvil.yaml")), "--once"]
    frozen = start_indexer(command, {**env, "INDEXER_FAULTS": "during_copy=stop"},
                           log=tmp_path / "a.log")

    def stopped() -> bool:
        with open(f"/proc/{frozen.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"

    try:
        wait_for(stopped, timeout=60)
        log = tmp_path / "b.log"
        started = time.monotonic()
        other = start_indexer(command, env, log=log)
        text = _finish(other, log, timeout=120)
        assert other.returncode == 0, text[-3000:]
        assert "ended a commit stalled in its COPY" in text
        assert time.monotonic() - started < 60
    finally:
        os.killpg(frozen.pid, signal.SIGKILL)
        frozen.wait()
    compare(deployed, db)


def test_the_live_tail_rides_out_a_restart_and_repairs_a_reorg_after_it(
    deployed: Deployed, cluster: PgCluster, db: str, tmp_path: Path
):
    run_traffic(deployed, rounds=4, seed=43)
    chain_file = write_chain(tmp_path / "anvil.yaml", finality_depth=3)
    log = tmp_path / "run.log"
    proc = start_indexer(["run", "--chain", str(chain_file)], env_for(db, deployed.url), log=log)
    try:
        wait_for(lambda: caught_up(db, deployed.rpc), timeout=60)
        cluster.stop("fast")
        mined = threading.Thread(target=run_traffic, args=(deployed,),
                                 kwargs={"rounds": 2, "seed": 44, "prepare": False,
                                         "sweep": False})
        mined.start()  # new blocks while the database is away
        time.sleep(5)
        cluster.start()
        mined.join(60)
        wait_for(lambda: caught_up(db, deployed.rpc), timeout=90)
        reorg(deployed, 2, seed=45)
        wait_for(lambda: caught_up(db, deployed.rpc), timeout=90)
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        code = stop(proc)
    text = log.read_text()
    assert code in (0, 130), text[-3000:]
    assert "Postgres unreachable while" in text
    assert "replaced (depth 2)" in text
    assert "Traceback" not in text
    compare(deployed, db)


def test_a_reindex_whose_replace_times_out_on_a_lock_tries_again_and_ends_equal(
    chain: Deployed, database_url: str
):
    """The replace of a unit waits on a lock held elsewhere past its timeout (2 x the lease
    TTL, at least 10 s): the server cancels it, nothing of it went in, and the reindex says so
    and does the unit again once the lock is let go."""
    from tests.support.cli import indexer

    env = env_for(database_url, chain.url, INDEXER_LEASE_TTL="1")
    assert indexer(["run", "--chain", "anvil", "--once"], env).code == 0
    locked, release = threading.Event(), threading.Event()

    async def hold() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE chaindata.demo_token_transfer_c31337_p0"
                                   " IN ACCESS EXCLUSIVE MODE")
                locked.set()
                while not release.is_set():
                    await asyncio.sleep(0.1)
        finally:
            await conn.close()

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    try:
        assert locked.wait(30)
        timer = threading.Timer(13.0, release.set)  # past one 10 s timeout and its back-off
        timer.start()
        res = indexer(["reindex", "--chain", "anvil", "--contract", "DemoToken",
                       "--event", "Transfer"], env, timeout=120)
    finally:
        release.set()
        holder.join(30)
    assert res.code == 0, res.err
    assert "not replaced (QueryCanceledError" in res.err, res.err
    assert "re-indexed" in res.err
    compare(chain, database_url)
