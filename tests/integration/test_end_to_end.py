"""`indexer run` against a real anvil with the demo system and real traffic, compared row by row
with an independent decoder (web3 + eth-abi over eth_getLogs)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from tests.support.cli import (
    env_for,
    indexer,
    start_indexer,
    stop,
    stopped_children,
    wait_for,
    write_chain,
)
from tests.support.contracts import Deployed, abi
from tests.support.reference import Source, assert_tables_equal, expected_rows, read_tables
from tests.support.traffic import bulk_transfers, run_traffic

SCHEMA = "chaindata"


def demo_sources(deployed: Deployed) -> list[Source]:
    """What chains/anvil.yaml configures, described from the npm and compiled artifacts."""
    a = deployed.addresses
    return [
        Source("WETH9", abi("WETH9"), [a.weth]),
        Source("UniswapV2Factory", abi("UniswapV2Factory"), [a.factory]),
        Source("UniswapV2Pair", abi("UniswapV2Pair"), deployed.pairs(),
               ["Swap", "Sync", "Mint", "Burn", "Transfer"]),
        Source("DemoToken", abi("TestToken"), [a.token_a, a.token_b]),
    ]


def head(deployed: Deployed) -> int:
    return int(deployed.rpc.call("eth_blockNumber"), 16)


def compare(deployed: Deployed, database_url: str, until: int | None = None) -> dict[str, list]:
    expected = expected_rows(deployed.url, demo_sources(deployed), 0, until if until is not None else head(deployed))
    actual = asyncio.run(read_tables(database_url, SCHEMA, list(expected)))
    assert_tables_equal(expected, actual)
    return expected


@pytest.fixture
def traffic(deployed: Deployed) -> Deployed:
    # Pairs are created in rounds 0, 10 and 20: two of them in the middle of the indexed range.
    run_traffic(deployed, rounds=30, seed=7)
    return deployed


def test_run_once_indexes_every_event_equal_to_the_chain(traffic: Deployed, database_url: str):
    env = env_for(database_url, traffic.url)
    res = indexer(["run", "--chain", "anvil", "--once"], env)
    assert res.code == 0, res.err
    expected = compare(traffic, database_url)
    counts = {t: len(r) for t, r in expected.items()}
    for table in ("uniswap_v2_factory_pair_created", "uniswap_v2_pair_swap", "uniswap_v2_pair_sync",
                  "uniswap_v2_pair_mint", "uniswap_v2_pair_burn", "weth9_deposit",
                  "weth9_withdrawal", "demo_token_transfer", "demo_token_approval"):
        assert counts[table] > 0, f"traffic produced no {table} rows: the comparison proves nothing"
    assert counts["uniswap_v2_factory_pair_created"] == 3
    assert "events" in res.err and "demo_token_transfer" in res.err  # the summary


def test_second_run_writes_nothing_new(traffic: Deployed, database_url: str):
    env = env_for(database_url, traffic.url)
    assert indexer(["run", "--chain", "anvil", "--once"], env).code == 0
    again = indexer(["run", "--chain", "anvil", "--once"], env)
    assert again.code == 0, again.err
    assert "; 0 events in" in again.err, again.err
    compare(traffic, database_url)


def test_new_blocks_after_a_run_are_indexed_by_the_next(traffic: Deployed, database_url: str):
    env = env_for(database_url, traffic.url)
    assert indexer(["run", "--chain", "anvil", "--once"], env).code == 0
    run_traffic(traffic, rounds=5, seed=8, prepare=False)
    assert indexer(["run", "--chain", "anvil", "--once"], env).code == 0
    compare(traffic, database_url)


def test_until_stops_at_the_given_block(traffic: Deployed, database_url: str):
    until = head(traffic) // 2
    env = env_for(database_url, traffic.url)
    res = indexer(["run", "--chain", "anvil", "--until", str(until)], env)
    assert res.code == 0, res.err
    compare(traffic, database_url, until)
    max_block = asyncio.run(_max_block(database_url))
    assert max_block is not None and max_block <= until


async def _max_block(url: str) -> int | None:
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('indexer.ranges') IS NOT NULL"):
            return None
        return await conn.fetchval(
            "SELECT max(to_block) FROM indexer.ranges WHERE chain_id = 31337"
        )
    finally:
        await conn.close()


def test_live_run_follows_new_blocks_and_stops_cleanly_on_sigint(
    traffic: Deployed, database_url: str, tmp_path: Path
):
    env = env_for(database_url, traffic.url)
    proc = start_indexer(["run", "--chain", "anvil"], env, log=tmp_path / "run.log")
    try:
        wait_for(lambda: asyncio.run(_max_block(database_url)) == head(traffic), timeout=60)
        run_traffic(traffic, rounds=4, seed=9, prepare=False)
        target = head(traffic)
        wait_for(lambda: asyncio.run(_max_block(database_url)) == target, timeout=60)
    finally:
        code = stop(proc, signal.SIGINT)
    assert code == 130, (tmp_path / "run.log").read_text()
    assert "run the same command to continue" in (tmp_path / "run.log").read_text()
    compare(traffic, database_url, target)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_restarts_after_interruptions_end_equal_to_a_clean_run(
    deployed: Deployed, database_url: str, tmp_path: Path, sig: int
):
    run_traffic(deployed, rounds=12, seed=3)
    bulk_transfers(deployed.url, deployed.addresses.token_a, 60_000, logs_per_tx=500, txs_per_block=2)
    run_traffic(deployed, rounds=12, seed=4, prepare=False)
    env = env_for(database_url, deployed.url)
    chain = write_chain(tmp_path / "anvil.yaml", get_logs_max_range=2)  # many small units
    args = ["run", "--chain", str(chain), "--once", "--target-logs", "300", "--concurrency", "3"]
    rng = random.Random(sig)
    interrupted = 0
    for attempt in range(8):
        before = asyncio.run(_ranges_done(database_url))
        proc = start_indexer(args, env, log=tmp_path / f"run{attempt}.log")
        # Stop at a random point: after a random number of further blocks committed, plus a
        # random delay.
        more = rng.randint(2, 30)
        wait_for(lambda p=proc, goal=before + more: p.poll() is not None
                 or asyncio.run(_ranges_done(database_url)) >= goal, timeout=120, interval=0.02)
        time.sleep(rng.uniform(0, 0.2))
        if proc.poll() is not None:
            break
        stop(proc, sig)
        interrupted += 1
    assert interrupted >= 3, "the run finished before it could be interrupted: grow the chain"
    final = indexer(args, env)
    assert final.code == 0, final.err
    compare(deployed, database_url)


async def _ranges_done(url: str) -> int:
    """Blocks recorded done, summed over sources (unchanged when records are merged)."""
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('indexer.ranges') IS NOT NULL"):
            return 0
        return await conn.fetchval(
            "SELECT coalesce(sum(to_block - from_block + 1), 0) FROM indexer.ranges")
    finally:
        await conn.close()


def test_wrong_chain_id_is_refused_before_any_work(deployed: Deployed, database_url: str, tmp_path: Path):
    chain = write_chain(tmp_path / "other.yaml", name="other", chain_id=43114)
    res = indexer(["run", "--chain", str(chain), "--once"], env_for(database_url, deployed.url))
    assert res.code != 0
    assert "43114" in res.err and "31337" in res.err
    assert "Traceback" not in res.err


def test_bad_chain_file_is_refused_naming_file_and_key(database_url: str, tmp_path: Path):
    chain = write_chain(tmp_path / "bad.yaml", finality_depth=-1)
    res = indexer(["run", "--chain", str(chain), "--once"], env_for(database_url, "http://127.0.0.1:9"))
    assert res.code == 2
    assert "bad.yaml" in res.err and "finality_depth" in res.err
    assert "Traceback" not in res.err


def test_status_shows_head_indexed_lag_and_rows(traffic: Deployed, database_url: str):
    env = env_for(database_url, traffic.url)
    assert indexer(["run", "--chain", "anvil", "--once"], env).code == 0
    res = indexer(["status", "--chain", "anvil", "--json"], env)
    assert res.code == 0, res.err
    import json

    [row] = json.loads(res.out)
    assert row["chain"] == "anvil" and row["head"] == head(traffic)
    assert row["indexed"] == row["head"] and row["lag"] == 0
    expected = compare(traffic, database_url)
    assert row["tables"] == {t: len(r) for t, r in expected.items() if t in row["tables"]}
    assert row["tables"]["weth9_deposit"] == len(expected["weth9_deposit"])


def test_two_worker_processes_split_the_blocks_and_end_equal_to_the_chain(
    deployed: Deployed, database_url: str, tmp_path: Path
):
    run_traffic(deployed, rounds=20, seed=11)
    bulk_transfers(deployed.url, deployed.addresses.token_b, 40_000, logs_per_tx=500, txs_per_block=2)
    run_traffic(deployed, rounds=20, seed=12, prepare=False)
    chain = write_chain(tmp_path / "anvil.yaml", get_logs_max_range=4)
    # Each worker stops itself (SIGSTOP) with its first unit fetched; once both are stopped, both
    # go on, so each has leased work whatever the start-up time of either process.
    log = tmp_path / "run.log"
    parent = start_indexer(["run", "--chain", str(chain), "--once", "--workers", "2", "--target-logs", "500"],
                           env_for(database_url, deployed.url, INDEXER_FAULTS="after_fetch=stop",
                                   INDEXER_LEASE_TTL="300"), log=log)
    try:
        children = wait_for(lambda: stopped_children([parent.pid], 2), timeout=120)
        for pid in children:
            os.kill(pid, signal.SIGCONT)
        assert parent.wait(240) == 0, log.read_text()
    finally:
        stop(parent, signal.SIGKILL)
    err = log.read_text()
    assert err.count("indexed up to block") == 2, err  # one summary per worker
    compare(deployed, database_url)
    workers = asyncio.run(_workers(database_url))
    assert len(workers) == 2 and {w[-2:] for w in workers} == {"/0", "/1"}, workers


async def _workers(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        return {r["worker"] for r in await conn.fetch("SELECT DISTINCT worker FROM indexer.ranges")}
    finally:
        await conn.close()


def test_metrics_endpoint_serves_contract_gauges_while_running(
    traffic: Deployed, database_url: str, tmp_path: Path
):
    import urllib.request

    from tests.support.services import free_port

    port = free_port()
    env = env_for(database_url, traffic.url, INDEXER_METRICS_PORT=str(port))
    proc = start_indexer(["run", "--chain", "anvil"], env, log=tmp_path / "run.log")
    try:
        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return r.read().decode()

        done = f'indexer_indexed_block{{chain="anvil"}} {head(traffic)}.0'
        wait_for(lambda: _scrape_or_empty(scrape) if done in _scrape_or_empty(scrape) else "",
                 timeout=60)
        text = scrape()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            assert r.status == 200
    finally:
        stop(proc)
    h = head(traffic)
    for series in (f'indexer_chain_head_block{{chain="anvil"}} {h}.0',
                   f'indexer_safe_block{{chain="anvil"}} {h}.0',
                   f'indexer_indexed_block{{chain="anvil"}} {h}.0',
                   'indexer_lag_blocks{chain="anvil"} 0.0',
                   'indexer_chain_info{block_time_seconds="1",chain="anvil",chain_id="31337",finality_depth="0"} 1.0'):
        assert series in text, series
    assert 'indexer_events_written_total{chain="anvil",table="weth9_deposit"}' in text
    assert 'indexer_rpc_requests_total{chain="anvil",endpoint="0:127.0.0.1",method="eth_getLogs",outcome="ok"}' in text


def _scrape_or_empty(scrape) -> str:  # type: ignore[no-untyped-def]
    try:
        return scrape()
    except OSError:  # the server is not up yet
        return ""


def test_embedded_postgres_is_used_when_database_url_is_unset(traffic: Deployed, tmp_path: Path):
    env = env_for(None, traffic.url)
    try:
        res = indexer(["run", "--chain", "anvil", "--once"], env, cwd=tmp_path)
        assert res.code == 0, res.err
        data = tmp_path / ".indexer" / "pgdata"
        assert (data / "PG_VERSION").exists()
        assert str(data) in res.err and "psql" in res.err  # says where the data is and how to query
        status = indexer(["status", "--chain", "anvil", "--json"], env, cwd=tmp_path)
        assert status.code == 0, status.err
        import json

        [row] = json.loads(status.out)
        assert row["indexed"] == head(traffic) and row["tables"]["weth9_deposit"] > 0
    finally:
        indexer(["db", "stop"], env, cwd=tmp_path)


def _without_block_timestamp(request: dict, reply: dict) -> dict:
    if request.get("method") == "eth_getLogs" and isinstance(reply.get("result"), list):
        for log in reply["result"]:
            log.pop("blockTimestamp", None)
    return reply


def test_block_times_come_from_headers_when_logs_lack_block_timestamp(
    traffic: Deployed, database_url: str
):
    from tests.support.proxy import RpcProxy

    with RpcProxy(traffic.url, _without_block_timestamp) as proxy:
        res = indexer(["run", "--chain", "anvil", "--once"], env_for(database_url, proxy.url))
        assert res.code == 0, res.err
        assert proxy.calls.get("eth_getBlockByNumber", 0) > 1  # headers were asked for
    compare(traffic, database_url)


def test_chain_check_passes_on_the_demo_and_fails_on_an_address_without_code(
    deployed: Deployed, tmp_path: Path
):
    env = env_for(None, deployed.url)
    ok = indexer(["chain", "check", "anvil"], env)
    assert ok.code == 0, ok.out + ok.err
    assert "chain id 31337" in ok.out and ok.out.count("bytes of code") == 4
    chain = write_chain(tmp_path / "nocode.yaml", contracts=[
        {"name": "Ghost", "abi": str(Path(__file__).parents[2] / "chains/abis/erc20.json"),
         "address": "0x000000000000000000000000000000000000dEaD"},
    ])
    bad = indexer(["chain", "check", str(chain)], env)
    assert bad.code == 1
    assert "FAIL Ghost 0x000000000000000000000000000000000000dead: no code" in bad.out
