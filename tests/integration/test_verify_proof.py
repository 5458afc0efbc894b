"""``indexer verify --proof`` against anvil and Postgres: the proven logs of every block are the
eth_getLogs answer, for every transaction type anvil mines (legacy, 2930, 1559, 4844 blob,
7702) and at every hardfork since Berlin, from eth_getBlockReceipts or from each transaction's
receipt; a node that rewrites logs in eth_getLogs and in its receipts alike, keeping every
block hash, is trusted by ``verify`` and refused by ``verify --proof``, block by block."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from indexer.config import RpcEndpoint
from indexer.rpc.client import RpcClient
from indexer.types import BlockRange
from indexer.verify.proof import ProofError
from indexer.verify.prover import Prover
from tests.support.chaos import Chaos, ChaosProxy
from tests.support.cli import env_for, indexer
from tests.support.contracts import ACCOUNTS, Deployed, abi, receipt
from tests.support.reference import Source, assert_tables_equal, expected_rows, read_tables
from tests.support.rpc import JsonRpc
from tests.support.services import Anvil
from tests.support.traffic import run_traffic
from tests.support.txtypes import (
    FORK_KINDS,
    KINDS,
    deploy_legacy,
    mine_together,
    send_raw,
    signed_call,
    signed_transfer,
)

SCHEMA = "chaindata"
TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
FIELDS = ("address", "topics", "data", "blockNumber", "blockHash", "transactionHash",
          "transactionIndex", "logIndex")


def _fields(logs: list[Any]) -> list[dict[str, Any]]:
    return [{k: str(lg[k]).lower() if k != "topics" else [t.lower() for t in lg[k]]
             for k in FIELDS} for lg in logs]


def _every_kind(deployed: Deployed) -> dict[str, int]:
    """A token transfer of each type in a block of its own, then one of each in one block:
    the blocks, by type ("together" for the last)."""
    rpc = deployed.rpc
    blocks: dict[str, int] = {}
    for i, kind in enumerate(KINDS):
        tx = send_raw(rpc, signed_transfer(kind, rpc, deployed.token_a, ACCOUNTS[1], 10 + i))
        blocks[kind] = int(receipt(rpc, tx)["blockNumber"], 16)
    first = int(rpc.call("eth_getTransactionCount", ACCOUNTS[0], "pending"), 16)
    raws = [signed_transfer(k, rpc, deployed.token_a if i % 2 else deployed.token_b,
                            ACCOUNTS[2], 20 + i, nonce=first + i) for i, k in enumerate(KINDS)]
    blocks["together"] = mine_together(rpc, raws)
    return blocks


def _types(rpc: JsonRpc, block: int) -> list[int]:
    return [int(r["type"], 16) for r in rpc.call("eth_getBlockReceipts", hex(block))]


@pytest.fixture(scope="module")
def chain(deployed_module: Deployed) -> tuple[Deployed, dict[str, int]]:
    """One chain for the module's tests: they read it (directly or through a proxy) and
    never mine on it, so each gets the same blocks without making them again."""
    deployed = deployed_module
    run_traffic(deployed, rounds=6, seed=71)
    blocks = _every_kind(deployed)
    run_traffic(deployed, rounds=2, seed=72, prepare=False)
    assert _types(deployed.rpc, blocks["together"]) == list(KINDS.values())
    return deployed, blocks


async def _prove(url: str, rng: BlockRange, addresses: list[str] | None = None,
                 topics: list[str] | None = None, *, per_transaction: bool = False) -> Any:
    async with RpcClient([RpcEndpoint(url)], chain="anvil") as rpc:
        prover = Prover(rpc, "anvil")
        prover.block_receipts = not per_transaction
        return await prover.logs(rng, addresses, topics)


@pytest.mark.parametrize("per_transaction", [False, True])
async def test_proven_logs_of_every_block_are_the_eth_getlogs_answer(chain, per_transaction):
    deployed, _ = chain
    rpc = deployed.rpc
    head = int(rpc.call("eth_blockNumber"), 16)
    expected = rpc.call("eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(head)})
    blocks = [rpc.call("eth_getBlockByNumber", hex(n), False) for n in range(head + 1)]
    # Receipts are asked for the blocks whose bloom is not empty: the others hold no log.
    txs = sum(len(b["transactions"]) for b in blocks if int(b["logsBloom"], 16))
    proven = await _prove(deployed.url, BlockRange(0, head), per_transaction=per_transaction)
    assert proven.failures == []
    assert proven.blocks == head + 1 and proven.receipts == txs
    assert len(expected) > 100 and _fields(proven.logs) == _fields(expected)


async def test_a_filter_selects_as_eth_getlogs_and_skips_blocks_its_bloom_excludes(chain):
    deployed, _ = chain
    rpc = deployed.rpc
    head = int(rpc.call("eth_blockNumber"), 16)
    token = deployed.addresses.token_b.lower()
    expected = rpc.call("eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(head),
                                        "address": [token], "topics": [[TRANSFER]]})
    proven = await _prove(deployed.url, BlockRange(0, head), [token], [TRANSFER])
    everything = await _prove(deployed.url, BlockRange(0, head))
    assert proven.failures == [] and proven.blocks == head + 1
    assert len(expected) > 0 and _fields(proven.logs) == _fields(expected)
    assert 0 < proven.receipts < everything.receipts  # only blocks whose bloom may match


async def test_one_block_is_proven_or_refused_naming_it(chain):
    deployed, blocks = chain
    n = blocks["together"]
    expected = deployed.rpc.call("eth_getLogs", {"fromBlock": hex(n), "toBlock": hex(n)})
    async with RpcClient([RpcEndpoint(deployed.url)], chain="anvil") as rpc:
        assert _fields(await Prover(rpc).block(n)) == _fields(expected)
    with ChaosProxy(deployed.url, Chaos(forge={n: "data"})) as proxy:
        async with RpcClient([RpcEndpoint(proxy.url)], chain="anvil") as rpc:
            with pytest.raises(ProofError, match=f"block {n}: the receipts root rebuilt from "
                               "5 receipts is 0x[0-9a-f]{64}, not the header's receiptsRoot"):
                await Prover(rpc).block(n)


def _verify(env: dict[str, str], *extra: str) -> tuple[int, dict[str, Any]]:
    res = indexer(["verify", "--chain", "anvil", "--json", *extra], env)
    assert res.code in (0, 1), res.err
    return res.code, json.loads(res.out)


def test_verify_proof_passes_on_an_honest_anvil_for_every_transaction_type(chain, database_url):
    deployed, blocks = chain
    env = env_for(database_url, deployed.url)
    res = indexer(["run", "--chain", "anvil", "--once"], env)
    assert res.code == 0, res.err
    code, doc = _verify(env, "--proof")
    assert code == 0, doc
    assert doc["equal"] and doc["proof"] and doc["proof_failures"] == []
    assert doc["rows_checked"] > 100 and doc["receipts_proven"] >= len(blocks) + 4
    text = indexer(["verify", "--chain", "anvil", "--proof"], env)
    assert text.code == 0 and "equal: every table matches the chain (proven)" in text.out
    assert "receipts against their block's receiptsRoot" in text.out


def _sources(deployed: Deployed) -> list[Source]:
    a = deployed.addresses
    return [Source("WETH9", abi("WETH9"), [a.weth]),
            Source("UniswapV2Factory", abi("UniswapV2Factory"), [a.factory]),
            Source("UniswapV2Pair", abi("UniswapV2Pair"), deployed.pairs(),
                   ["Swap", "Sync", "Mint", "Burn", "Transfer"]),
            Source("DemoToken", abi("TestToken"), [a.token_a, a.token_b])]


@pytest.mark.parametrize("receipts", ["eth_getBlockReceipts", "eth_getTransactionReceipt"])
def test_verify_proof_refuses_a_node_that_rewrites_logs_keeping_block_hashes(
        chain, database_url, receipts):
    deployed, blocks = chain
    forged: dict[int, Any] = {blocks["1559"]: "data", blocks["together"]: "topics"}
    chaos = Chaos(forge=forged, no_block_receipts=receipts == "eth_getTransactionReceipt")
    with ChaosProxy(deployed.url, chaos) as proxy:
        env = env_for(database_url, proxy.url)
        res = indexer(["run", "--chain", "anvil", "--once"], env)
        assert res.code == 0, res.err
        assert proxy.seen["forge"] >= 6  # the block of its own, and the five of the other
        code, trusted = _verify(env)
        assert code == 0 and trusted["equal"], trusted  # its word against its word
        code, refused = _verify(env, "--proof")
        assert code == 1 and not refused["equal"]
        assert refused["differences"] == []
        assert {f["block"] for f in refused["proof_failures"]} == set(forged)
        assert all("not the header's receiptsRoot" in f["reason"]
                   for f in refused["proof_failures"]), refused["proof_failures"]
        text = indexer(["verify", "--chain", "anvil", "--proof"], env)
        assert text.code == 1 and "NOT PROVEN: 2 blocks" in text.out
        assert all(f"block {b}: the receipts root rebuilt" in text.out for b in forged)
        assert proxy.methods[receipts] > 0
    # Asked of the honest node, the rows stored through the forger are the ones that differ.
    env = env_for(database_url, deployed.url)
    code, honest = _verify(env, "--proof")
    assert code == 1 and honest["proof_failures"] == []
    assert {d["block"] for d in honest["differences"]} == set(forged)
    assert {d["kind"] for d in honest["differences"]} == {"changed"}
    code, repaired = _verify(env, "--proof", "--repair")
    assert code == 0 and repaired["equal"] and len(repaired["repaired"]) == \
        len(honest["differences"]), repaired
    head = int(deployed.rpc.call("eth_blockNumber"), 16)
    expected = expected_rows(deployed.url, _sources(deployed), 0, head)
    assert_tables_equal(expected, asyncio.run(read_tables(database_url, SCHEMA,
                                                          list(expected))))


@pytest.mark.parametrize("fork", sorted(FORK_KINDS))
async def test_blocks_of_every_hardfork_are_proven(fork: str):
    with Anvil(extra_args=["--hardfork", fork]) as node, JsonRpc(node.url) as rpc:
        weth = deploy_legacy(node.url, "WETH9")
        kinds = FORK_KINDS[fork]
        for kind in kinds:
            receipt(rpc, send_raw(rpc, signed_call(kind, rpc, weth, "deposit", [], value=5)))
        first = int(rpc.call("eth_getTransactionCount", ACCOUNTS[0], "pending"), 16)
        together = mine_together(rpc, [signed_call(k, rpc, weth, "deposit", [], value=7,
                                                   nonce=first + i)
                                       for i, k in enumerate(kinds)])
        assert _types(rpc, together) == [KINDS[k] for k in kinds]
        expected = rpc.call("eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(together)})
        proven = await _prove(node.url, BlockRange(0, together))
        assert proven.failures == [] and proven.blocks == together + 1
        assert len(expected) == 2 * len(kinds) and _fields(proven.logs) == _fields(expected)


def test_continuous_checks_with_proof_refuse_a_forging_checker_and_repair_a_forging_writer(
        chain, database_url, tmp_path):
    """``verify: {sample: 1, proof: true}`` in the chain file: the checks run on the second
    endpoint. A forging second endpoint: its blocks are not proven, said at ERROR, and the
    ``--once`` run exits 1. A forging first endpoint (it served the rows): the honest second
    one proves the chain's logs, the forged rows are found and, with ``repair: true``,
    replaced; the run exits 0 with tables equal to the chain."""
    from tests.support.cli import write_chain

    deployed, blocks = chain
    forged: dict[int, Any] = {blocks["1559"]: "data", blocks["together"]: "topics"}
    with ChaosProxy(deployed.url, Chaos(forge=forged)) as proxy:
        checker_lies = write_chain(tmp_path / "a.yaml", rpc=[{"url": deployed.url},
                                                             {"url": proxy.url}],
                                   verify={"sample": 1.0, "proof": True})
        res = indexer(["run", "--chain", str(checker_lies), "--once"],
                      env_for(database_url, deployed.url))
        assert res.code == 1, res.err
        assert "NOT PROVEN against their receiptsRoot" in res.err
        assert "hold blocks whose logs their receipts do not prove" in res.err
        assert all(f"block {b}:" in res.err for b in forged)
        writer_lies = write_chain(tmp_path / "b.yaml", rpc=[{"url": proxy.url},
                                                            {"url": deployed.url}],
                                  verify={"sample": 1.0, "proof": True, "repair": True})
        res = indexer(["reset", "--chain", str(writer_lies), "--yes"],
                      env_for(database_url, deployed.url))
        assert res.code == 0, res.err
        res = indexer(["run", "--chain", str(writer_lies), "--once"],
                      env_for(database_url, deployed.url))
        assert proxy.seen["forge"] > 0
    assert res.code == 0, res.err
    assert "DATA MISMATCH" in res.err and "now equal the chain" in res.err
    head = int(deployed.rpc.call("eth_blockNumber"), 16)
    expected = expected_rows(deployed.url, _sources(deployed), 0, head)
    assert_tables_equal(expected, asyncio.run(read_tables(database_url, SCHEMA,
                                                          list(expected))))
