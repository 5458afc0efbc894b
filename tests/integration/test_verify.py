"""``indexer verify`` against a real chain and Postgres: rows deleted, a value changed, a bogus
row added and a whole block's rows deleted, in four tables, are found block by block and
table by table; ``--repair`` sets them right (also while two workers index); the tables then
equal the independent decoder."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import asyncpg
import pytest

from tests.integration.test_end_to_end import compare
from tests.support.cli import env_for, indexer, start_indexer, stop, wait_for, write_chain
from tests.support.contracts import Deployed
from tests.support.traffic import run_traffic

SCHEMA = "chaindata"


async def _damage(database_url: str) -> dict[str, set[int]]:
    """Four kinds of damage in four tables; the blocks each table was damaged in."""
    conn = await asyncpg.connect(database_url)
    hit: dict[str, set[int]] = {}
    try:
        async def pick(table: str, skip: int = 0) -> asyncpg.Record:
            row = await conn.fetchrow(
                f"SELECT block_number, log_index FROM {SCHEMA}.{table}"
                " ORDER BY block_number, log_index OFFSET $1 LIMIT 1", skip)
            assert row is not None, f"{table} is empty: the test proves nothing"
            return row

        r = await pick("demo_token_transfer", 3)  # a row deleted
        await conn.execute(f"DELETE FROM {SCHEMA}.demo_token_transfer WHERE block_number = $1"
                           " AND log_index = $2", r["block_number"], r["log_index"])
        hit["demo_token_transfer"] = {r["block_number"]}
        r = await pick("uniswap_v2_pair_swap", 1)  # a value changed
        await conn.execute(f"UPDATE {SCHEMA}.uniswap_v2_pair_swap SET amount0_in = amount0_in + 1"
                           " WHERE block_number = $1 AND log_index = $2",
                           r["block_number"], r["log_index"])
        hit["uniswap_v2_pair_swap"] = {r["block_number"]}
        r = await pick("weth9_deposit", 2)  # a bogus row added (a copy at another log index)
        await conn.execute(
            f"INSERT INTO {SCHEMA}.weth9_deposit SELECT chain_id, block_number, block_time,"
            " tx_hash, tx_index, log_index + 500, address, dst, wad FROM"
            f" {SCHEMA}.weth9_deposit WHERE block_number = $1 AND log_index = $2",
            r["block_number"], r["log_index"])
        hit["weth9_deposit"] = {r["block_number"]}
        r = await pick("uniswap_v2_pair_sync", 4)  # every row of a block deleted
        await conn.execute(f"DELETE FROM {SCHEMA}.uniswap_v2_pair_sync WHERE block_number = $1",
                           r["block_number"])
        hit["uniswap_v2_pair_sync"] = {r["block_number"]}
    finally:
        await conn.close()
    return hit


def _verify(env: dict[str, str], chain: str, *extra: str) -> tuple[int, dict]:
    res = indexer(["verify", "--chain", chain, "--json", *extra], env)
    assert res.code in (0, 1), res.err
    return res.code, json.loads(res.out)


@pytest.fixture
def indexed(deployed: Deployed, database_url: str) -> tuple[Deployed, dict[str, str]]:
    run_traffic(deployed, rounds=30, seed=51)
    env = env_for(database_url, deployed.url)
    res = indexer(["run", "--chain", "anvil", "--once"], env)
    assert res.code == 0, res.err
    return deployed, env


def test_verify_finds_each_damaged_block_and_repair_sets_it_right(indexed, database_url: str):
    deployed, env = indexed
    code, clean = _verify(env, "anvil")
    assert code == 0 and clean["equal"] and clean["rows_checked"] > 0, clean
    hit = asyncio.run(_damage(database_url))
    code, found = _verify(env, "anvil")
    assert code == 1 and not found["equal"]
    blocks: dict[str, set[int]] = {}
    kinds: dict[str, set[str]] = {}
    for d in found["differences"]:
        blocks.setdefault(d["table"], set()).add(d["block"])
        kinds.setdefault(d["table"], set()).add(d["kind"])
    assert blocks == hit
    assert kinds == {"demo_token_transfer": {"missing"}, "uniswap_v2_pair_swap": {"changed"},
                     "weth9_deposit": {"extra"}, "uniswap_v2_pair_sync": {"missing"}}
    text = indexer(["verify", "--chain", "anvil"], env)
    assert text.code == 1 and "DIFFERENT uniswap_v2_pair_sync" in text.out
    code, repaired = _verify(env, "anvil", "--repair")
    assert code == 0 and repaired["equal"] and len(repaired["repaired"]) == \
        len(found["differences"]), repaired
    code, after = _verify(env, "anvil")
    assert code == 0 and after["equal"]
    compare(deployed, database_url)


def test_verify_repairs_while_two_workers_index(indexed, database_url: str, tmp_path: Path):
    deployed, env = indexed
    hit = asyncio.run(_damage(database_url))
    chain = write_chain(tmp_path / "anvil.yaml", finality_depth=2)
    workers = start_indexer(["run", "--chain", str(chain), "--workers", "2"], env,
                            log=tmp_path / "workers.log")
    run_traffic(deployed, rounds=4, seed=52, prepare=False)  # new blocks while repairing
    code, repaired = _verify(env, str(chain), "--repair")
    assert code == 0 and repaired["equal"], repaired
    assert {d["table"] for d in repaired["repaired"]} == set(hit)
    run_traffic(deployed, rounds=1, seed=53, prepare=False)

    def equal() -> bool:
        try:
            compare(deployed, database_url)
        except AssertionError:
            return False
        return True

    wait_for(equal, timeout=120)
    assert stop(workers, signal.SIGINT) in (0, 130), (tmp_path / "workers.log").read_text()
    assert _verify(env, str(chain))[0] == 0


def test_verify_refuses_bad_input(indexed):
    _, env = indexed
    res = indexer(["verify", "--chain", "anvil", "--contract", "Nope"], env)
    assert res.code == 2 and "no contract Nope" in res.err and "Traceback" not in res.err


class MiddleBlockLiar:
    """A node whose logs backend lost the logs of one block in the middle of every eth_getLogs
    range, while its header for that block says it holds none (logsBloom zeroed): no check of
    one answer can tell. Only a second look, elsewhere, can."""

    def __init__(self) -> None:
        self.hidden: set[int] = set()

    def __call__(self, request: dict, reply: dict) -> dict:
        method, result = request.get("method"), reply.get("result")
        if method == "eth_getLogs" and isinstance(result, list):
            blocks = sorted({int(lg["blockNumber"], 16) for lg in result})
            end = int(request["params"][0]["toBlock"], 16)
            middle = [b for b in blocks if b != end]
            if middle:
                drop = middle[len(middle) // 2]
                self.hidden.add(drop)
                reply["result"] = [lg for lg in result if int(lg["blockNumber"], 16) != drop]
        elif method == "eth_getBlockByNumber" and isinstance(result, dict) and \
                int(result["number"], 16) in self.hidden:
            result["logsBloom"] = "0x" + "00" * 256
        return reply


def test_background_checks_find_and_repair_rows_a_lying_endpoint_left_out(
        deployed: Deployed, database_url: str, tmp_path: Path):
    from tests.support.proxy import RpcProxy

    run_traffic(deployed, rounds=30, seed=54)
    liar = MiddleBlockLiar()
    with RpcProxy(deployed.url, liar) as proxy:
        chain = write_chain(tmp_path / "anvil.yaml", rpc=[{"url": proxy.url},
                                                          {"url": deployed.url}],
                            verify={"sample": 1.0, "repair": True})
        env = env_for(database_url, deployed.url)
        res = indexer(["run", "--chain", str(chain), "--once", "--target-logs", "50"], env)
    assert liar.hidden, "the proxy hid nothing: the test proves nothing"
    assert res.code == 0, res.err
    assert "DATA MISMATCH" in res.err and "now equal the chain" in res.err
    compare(deployed, database_url)


def test_a_run_whose_checks_find_differences_it_may_not_repair_ends_with_exit_1(
        deployed: Deployed, database_url: str, tmp_path: Path):
    from tests.support.proxy import RpcProxy

    run_traffic(deployed, rounds=20, seed=55)
    with RpcProxy(deployed.url, MiddleBlockLiar()) as proxy:
        chain = write_chain(tmp_path / "anvil.yaml", rpc=[{"url": proxy.url},
                                                          {"url": deployed.url}],
                            verify={"sample": 1.0})
        res = indexer(["run", "--chain", str(chain), "--once", "--target-logs", "50"],
                      env_for(database_url, deployed.url))
    assert res.code == 1, res.err
    assert "DATA MISMATCH" in res.err and "were not repaired" in res.err
    assert "indexer verify --chain anvil" in res.err
