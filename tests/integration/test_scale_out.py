"""Several worker processes share one chain's backfill through the Redis lease board: killed,
paused and restarted workers, and a Redis that is flushed or restarted, lose and duplicate
nothing. Every test ends comparing every table with the chain and checking that no block of
any source was recorded done twice."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest
import redis

from tests.integration.test_end_to_end import compare
from tests.support.cli import (
    env_for,
    indexer,
    start_indexer,
    stop,
    stopped_children,
    wait_for,
    write_chain,
)
from tests.support.contracts import Deployed
from tests.support.services import _redis_ping, free_port
from tests.support.traffic import bulk_transfers, run_traffic

TTL = "2"  # seconds: lease TTL of the workers in these tests


@pytest.fixture
def redis_db(redis_url: str):
    """A Redis database of its own (index 9), empty before and after the test."""
    url = redis_url.rsplit("/", 1)[0] + "/9"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def busy_chain(deployed: Deployed, tmp_path: Path) -> tuple[Deployed, Path]:
    """The demo system with traffic around 40,000 bulk transfers, and a chain file that makes
    hundreds of small units (so workers overlap in time)."""
    run_traffic(deployed, rounds=15, seed=21)
    bulk_transfers(deployed.url, deployed.addresses.token_a, 40_000, logs_per_tx=500, txs_per_block=2)
    run_traffic(deployed, rounds=15, seed=22, prepare=False)
    return deployed, write_chain(tmp_path / "anvil.yaml", get_logs_max_range=2)


ARGS = ["--once", "--target-logs", "400", "--concurrency", "2"]


def run_args(chain: Path, worker: str) -> list[str]:
    return ["run", "--chain", str(chain), "--worker-id", worker, *ARGS]


async def _ranges(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('indexer.source_ranges') IS NOT NULL"):
            return []
        return await conn.fetch(
            "SELECT contract, source, from_block, to_block, worker, fence"
            " FROM indexer.source_ranges ORDER BY source, from_block"
        )
    finally:
        await conn.close()


def ranges(url: str) -> list[asyncpg.Record]:
    return asyncio.run(_ranges(url))


def assert_each_block_done_once(url: str, head: int) -> set[str]:
    """Per source (one event of one contract at one address or factory), the recorded ranges
    are disjoint and cover every block up to ``head``; returns the workers that recorded
    them."""
    by_source: dict[str, list[tuple[int, int]]] = {}
    contracts = set()
    for r in ranges(url):
        by_source.setdefault(r["source"], []).append((r["from_block"], r["to_block"]))
        contracts.add(r["contract"])
    assert contracts == {"WETH9", "UniswapV2Factory", "UniswapV2Pair", "DemoToken"}
    for source, spans in by_source.items():
        spans.sort()
        assert spans[0][0] == 0, source
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start == end + 1, f"{source}: gap or overlap at {end}-{start}"
        assert spans[-1][1] == head, source
    return {r["worker"] for r in ranges(url)}


def head_of(deployed: Deployed) -> int:
    return int(deployed.rpc.call("eth_blockNumber"), 16)


@pytest.mark.parametrize("point", ["after_fetch", "after_decode", "after_copy", "before_commit"])
def test_a_worker_killed_at_any_stage_loses_and_duplicates_nothing(
    busy_chain, database_url: str, redis_db: str, tmp_path: Path, point: str
):
    deployed, chain = busy_chain
    env = env_for(database_url, deployed.url, REDIS_URL=redis_db, INDEXER_LEASE_TTL=TTL)
    # The victim dies at `point` of its first unit, holding its lease; the survivor must wait
    # for that lease to expire and take the range over.
    victim = start_indexer(run_args(chain, "victim"), dict(env, INDEXER_FAULTS=f"{point}=kill"),
                           log=tmp_path / "victim.log")
    assert victim.wait(120) == -signal.SIGKILL, (tmp_path / "victim.log").read_text()
    leases = _leases_of(redis_db, "victim")
    assert leases, "the victim died holding no lease: the test proves nothing"
    survivor = start_indexer(run_args(chain, "survivor"), env, log=tmp_path / "survivor.log")
    assert survivor.wait(180) == 0, (tmp_path / "survivor.log").read_text()
    compare(deployed, database_url)
    workers = assert_each_block_done_once(database_url, head_of(deployed))
    assert "survivor" in workers


def test_workers_killed_at_random_moments_over_many_runs_end_exact(
    busy_chain, database_url: str, redis_db: str, tmp_path: Path
):
    deployed, chain = busy_chain
    env = env_for(database_url, deployed.url, REDIS_URL=redis_db, INDEXER_LEASE_TTL=TTL,
                  INDEXER_FAULTS="after_fetch=sleep:0.02!")  # long enough to kill workers in
    rng = random.Random(4)
    procs = {}
    killed = 0
    for i in range(10):
        for name in ("a", "b", "c"):
            if name not in procs or procs[name].poll() is not None:
                procs[name] = start_indexer(run_args(chain, f"{name}{i}"), env,
                                            log=tmp_path / f"{name}{i}.log")
        time.sleep(rng.uniform(0.2, 1.0))
        victim = procs[rng.choice("abc")]
        if victim.poll() is None:
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            killed += 1
    for p in procs.values():
        if p.poll() is None:
            p.wait(180)
    final = start_indexer(run_args(chain, "final"), env, log=tmp_path / "final.log")
    try:
        assert final.wait(120) == 0, (tmp_path / "final.log").read_text()
    finally:
        stop(final, signal.SIGKILL)
    compare(deployed, database_url)
    assert_each_block_done_once(database_url, head_of(deployed))
    assert killed >= 5, "too few workers were killed while working: grow the chain"


def test_a_paused_worker_cannot_commit_a_range_redone_by_another(
    busy_chain, database_url: str, redis_db: str, tmp_path: Path
):
    deployed, chain = busy_chain
    env = env_for(database_url, deployed.url, REDIS_URL=redis_db, INDEXER_LEASE_TTL=TTL)
    # The sleeper stops itself (SIGSTOP) with its first unit's rows copied, uncommitted.
    sleeper = start_indexer(run_args(chain, "sleeper"), dict(env, INDEXER_FAULTS="after_copy=stop"),
                            log=tmp_path / "sleeper.log")
    wait_for(lambda: _stopped(sleeper), timeout=60)
    held = _sleeper_range(redis_db)
    time.sleep(float(TTL) + 1)  # its lease expires
    other = start_indexer(run_args(chain, "other"), env, log=tmp_path / "other.log")
    assert other.wait(180) == 0, (tmp_path / "other.log").read_text()
    sleeper.send_signal(signal.SIGCONT)
    assert sleeper.wait(120) == 0, (tmp_path / "sleeper.log").read_text()
    log = (tmp_path / "sleeper.log").read_text()
    assert "not committed" in log or "failed" in log or "already" in log, log
    compare(deployed, database_url)
    workers = assert_each_block_done_once(database_url, head_of(deployed))
    assert workers == {"other"}, "the paused worker committed after losing its lease"
    assert held is not None


def _stopped(proc: subprocess.Popen[bytes]) -> bool:
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("T")
    except OSError:
        return False


def _leases_of(url: str, worker: str) -> list[str]:
    """Lease entries held by ``worker`` on the board, as stored in Redis."""
    client = redis.Redis.from_url(url)
    try:
        return [value.decode() for key in client.scan_iter("indexer:*:leases:*")
                for value in client.hvals(key) if f" {worker} ".encode() in value]
    finally:
        client.close()


def _sleeper_range(url: str) -> str | None:
    found = _leases_of(url, "sleeper")
    return found[0] if found else None


def test_redis_flushall_in_the_middle_of_a_backfill(
    busy_chain, database_url: str, redis_db: str, tmp_path: Path
):
    deployed, chain = busy_chain
    env = env_for(database_url, deployed.url, REDIS_URL=redis_db, INDEXER_LEASE_TTL=TTL,
                  INDEXER_FAULTS="after_fetch=sleep:0.02!")  # a backfill long enough to flush in
    procs = [start_indexer(run_args(chain, f"w{i}"), env, log=tmp_path / f"w{i}.log")
             for i in range(2)]
    client = redis.Redis.from_url(redis_db)
    flushed = 0
    try:
        for _ in range(5):
            time.sleep(0.4)
            if all(p.poll() is not None for p in procs):
                break
            client.flushdb()
            flushed += 1
    finally:
        client.close()
    for i, p in enumerate(procs):
        assert p.wait(180) == 0, (tmp_path / f"w{i}.log").read_text()
    assert flushed >= 2, "the backfill ended before Redis could be flushed twice: grow the chain"
    compare(deployed, database_url)
    assert_each_block_done_once(database_url, head_of(deployed))


def test_redis_restarting_in_the_middle_of_a_backfill(
    busy_chain, database_url: str, tmp_path: Path
):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    deployed, chain = busy_chain
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _redis_ping("127.0.0.1", port), timeout=10)
    env = env_for(database_url, deployed.url, REDIS_URL=f"redis://127.0.0.1:{port}/0",
                  INDEXER_LEASE_TTL=TTL, INDEXER_FAULTS="after_fetch=sleep:0.02!")
    procs = [start_indexer(run_args(chain, f"w{i}"), env, log=tmp_path / f"w{i}.log")
             for i in range(2)]
    try:
        # Both workers past their start-up check of Redis (it logs the metrics port after it).
        wait_for(lambda: all("metrics on" in (tmp_path / f"w{i}.log").read_text()
                             for i in range(2)), timeout=60)
        time.sleep(0.5)
        server.kill()
        server.wait()
        time.sleep(2.0)  # the workers meet a dead Redis
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i, p in enumerate(procs):
            assert p.wait(180) == 0, (tmp_path / f"w{i}.log").read_text()
    finally:
        server.kill()
        server.wait()
    logs = "".join((tmp_path / f"w{i}.log").read_text() for i in range(2))
    assert "unreachable" in logs, "Redis was not down while the workers ran: the test proved nothing"
    compare(deployed, database_url)
    assert_each_block_done_once(database_url, head_of(deployed))


def test_two_hosts_with_two_workers_each_share_one_backfill(
    busy_chain, database_url: str, redis_db: str, tmp_path: Path
):
    deployed, chain = busy_chain
    # Each of the four workers stops itself (SIGSTOP) with its first unit fetched; once all are
    # stopped, all go on, so every worker has leased work whatever the start-up time of each.
    env = env_for(database_url, deployed.url, REDIS_URL=redis_db, INDEXER_LEASE_TTL="300",
                  INDEXER_FAULTS="after_fetch=stop")
    hosts = [
        start_indexer(["run", "--chain", str(chain), "--workers", "2", "--worker-id", f"host{h}",
                       *ARGS], env, log=tmp_path / f"host{h}.log")
        for h in "ab"
    ]
    for pid in wait_for(lambda: stopped_children([p.pid for p in hosts], 4), timeout=120):
        os.kill(pid, signal.SIGCONT)
    for h, p in zip("ab", hosts, strict=True):
        assert p.wait(180) == 0, (tmp_path / f"host{h}.log").read_text()
    compare(deployed, database_url)
    workers = assert_each_block_done_once(database_url, head_of(deployed))
    assert workers == {"hosta/0", "hosta/1", "hostb/0", "hostb/1"}, workers


def test_status_shows_workers_and_leases_while_running(
    busy_chain, database_url: str, redis_db: str, tmp_path: Path
):
    deployed, chain = busy_chain
    env = env_for(database_url, deployed.url, REDIS_URL=redis_db, INDEXER_LEASE_TTL=TTL)
    proc = start_indexer(["run", "--chain", str(chain), "--worker-id", "seen",
                          "--target-logs", "200", "--concurrency", "1"],
                         dict(env, INDEXER_FAULTS="after_fetch=sleep:0.3!"),
                         log=tmp_path / "run.log")
    try:
        import json

        def live() -> dict | None:
            res = indexer(["status", "--chain", str(chain), "--json"], env)
            if res.code != 0:
                return None
            [row] = json.loads(res.out)
            return row if row["workers"] == ["seen"] and row["leased"] else None

        row = wait_for(live, timeout=60)
        assert row["pending"] >= 1 and row["ranges_done"] >= 0
        assert all(lease["worker"] == "seen" for lease in row["leased"])
    finally:
        stop(proc)


def test_two_chains_in_one_run_share_the_workers(
    busy_chain, database_url: str, redis_db: str, tmp_path: Path
):
    from tests.integration.test_end_to_end import demo_sources
    from tests.support.contracts import Deployer
    from tests.support.reference import assert_tables_equal, expected_rows, read_tables
    from tests.support.services import Anvil

    deployed, chain = busy_chain
    with Anvil(chain_id=31338) as node:
        second = Deployer(node.url).deploy()
        run_traffic(second, rounds=12, seed=31)
        other = write_chain(tmp_path / "second.yaml", name="second", chain_id=31338,
                            get_logs_max_range=2,
                            rpc=[{"url": node.url}])
        env = env_for(database_url, deployed.url, REDIS_URL=redis_db, INDEXER_LEASE_TTL=TTL)
        res = indexer(["run", "--chain", str(chain), "--chain", str(other), "--workers", "2",
                       *ARGS], env)
        assert res.code == 0, res.err
        for system in (deployed, second):
            head = int(system.rpc.call("eth_blockNumber"), 16)
            expected = expected_rows(system.url, demo_sources(system), 0, head)
            actual = asyncio.run(read_tables(database_url, "chaindata", list(expected)))
            cid = int(system.rpc.call("eth_chainId"), 16)
            mine = {t: [r for r in rows if r[0] == cid] for t, rows in actual.items()}
            assert_tables_equal(expected, mine)
        assert res.err.count("second: indexed up to block") == 2  # both workers ran both chains
        assert res.err.count("anvil: indexed up to block") == 2
