"""What the catalogue asks of the node and routes to which table, per source (pure): the keys
of a chain file, the filter and routing of units, pinned table names, and an anonymous event
never taking the log of an event the file leaves out."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from indexer.abi import AbiError, keccak256
from indexer.chain.catalog import build_catalog
from indexer.chain.coverage import event_progress
from indexer.config import ChainConfig, ContractConfig, FactorySpec, RpcEndpoint
from indexer.plan import Unit
from indexer.types import BlockRange as R

A, B = "0x" + "aa" * 20, "0x" + "bb" * 20
T = datetime(2024, 1, 1, tzinfo=UTC)


def event(name: str, *types: tuple[str, str, bool], anonymous: bool = False) -> dict[str, Any]:
    return {"type": "event", "name": name, "anonymous": anonymous,
            "inputs": [{"name": n, "type": t, "indexed": i} for n, t, i in types]}


TRANSFER = event("Transfer", ("from", "address", True), ("to", "address", True),
                 ("value", "uint256", False))
APPROVAL = event("Approval", ("owner", "address", True), ("spender", "address", True),
                 ("value", "uint256", False))
CREATED = event("Created", ("child", "address", False))
ERC20 = (TRANSFER, APPROVAL)


def topic(sig: str) -> str:
    return "0x" + keccak256(sig.encode()).hex()


def chain(*contracts: ContractConfig) -> ChainConfig:
    return ChainConfig(name="t", chain_id=5, rpc=(RpcEndpoint("http://x"),), block_time=1.0,
                       finality_depth=0, start_block=0, get_logs_max_range=100,
                       partition_blocks=1000, contracts=contracts, source=Path("t.yaml"))


def token(addresses: tuple[str, ...] = (A, B), events: tuple[str, ...] | None = None,
          name: str = "Token", abi: tuple[dict[str, Any], ...] = ERC20) -> ContractConfig:
    return ContractConfig(name, Path("erc20.json"), abi, addresses, 0, events)


def test_a_source_is_one_event_of_one_contract_at_one_target():
    factory = ContractConfig("F", Path("f.json"), (CREATED,), (A,), 0, None)
    child = ContractConfig("Child", Path("c.json"), ERC20, (), 0, None,
                           FactorySpec("F", "Created", "child"))
    cat = build_catalog(chain(token(), factory, child))
    assert sorted(cat.keyed) == sorted([
        f"Token:{A}:{topic('Transfer(address,address,uint256)')}",
        f"Token:{A}:{topic('Approval(address,address,uint256)')}",
        f"Token:{B}:{topic('Transfer(address,address,uint256)')}",
        f"Token:{B}:{topic('Approval(address,address,uint256)')}",
        f"F:{A}:{topic('Created(address)')}",
        f"Child:factory:F:{topic('Transfer(address,address,uint256)')}",
        f"Child:factory:F:{topic('Approval(address,address,uint256)')}",
    ])
    assert cat.discovery_keys("F") == (f"F:{A}:{topic('Created(address)')}",)
    assert {s.factory for s in cat.sources if s.name.startswith("Child:")} == {"F"}


def test_a_unit_of_some_events_at_some_addresses_routes_only_those():
    cat = build_catalog(chain(token()))
    transfer_a = f"Token:{A}:{topic('Transfer(address,address,uint256)')}"
    approval_b = f"Token:{B}:{topic('Approval(address,address,uint256)')}"
    flt = cat.filter_for([Unit(R(0, 9), (transfer_a, approval_b))], {})
    assert flt.addresses == [A, B]
    assert flt.topics == sorted([topic("Transfer(address,address,uint256)"),
                                 topic("Approval(address,address,uint256)")])
    # eth_getLogs returns Approvals at A and Transfers at B too: they are not this unit's.
    assert flt.only == {(A, "Token"): frozenset({"token_transfer"}),
                        (B, "Token"): frozenset({"token_approval"})}
    logs = [_log(A, "Transfer", 0), _log(A, "Approval", 1), _log(B, "Transfer", 2),
            _log(B, "Approval", 3)]
    result = cat.decoder.decode(logs, flt.routes, {1: T}, flt.only)
    assert {t: [r[5] for r in rows] for t, rows in result.rows.items()} == {
        "token_transfer": [0], "token_approval": [3]}


def test_a_unit_of_every_event_at_its_addresses_needs_no_narrowing():
    cat = build_catalog(chain(token()))
    flt = cat.filter_for([Unit(R(0, 9), tuple(cat.keyed))], {})
    assert flt.only is None


def _log(address: str, name: str, index: int) -> dict[str, Any]:
    sig = {"Transfer": "Transfer(address,address,uint256)",
           "Approval": "Approval(address,address,uint256)"}[name]
    return {"address": address, "topics": [topic(sig), "0x" + "00" * 32, "0x" + "00" * 32],
            "data": "0x" + "00" * 31 + "07", "blockNumber": "0x1", "transactionHash":
            "0x" + "11" * 32, "transactionIndex": "0x0", "logIndex": hex(index)}


def test_an_anonymous_event_never_takes_the_log_of_an_event_left_out():
    # A Transfer has three topics and a 32-byte word, just like this anonymous event.
    anon = event("Moved", ("a", "uint256", True), ("b", "address", True), ("c", "address", True),
                 ("v", "uint256", False), anonymous=True)
    cat = build_catalog(chain(token((A,), events=("Moved",), abi=(*ERC20, anon))))
    flt = cat.filter_for([Unit(R(0, 9), tuple(cat.keyed))], {})
    assert flt.topics is None  # an anonymous event: no topic filter
    result = cat.decoder.decode([_log(A, "Transfer", 0)], flt.routes, {1: T}, flt.only)
    assert result.rows == {}


def test_a_pinned_table_keeps_its_name_and_a_new_event_that_wants_it_gets_a_suffix():
    widened = event("Transfer", ("from", "address", True), ("to", "address", True),
                    ("value", "uint256", False), ("memo", "bytes", False))
    pinned = {("Token", "Transfer(address,address,uint256)"): "token_transfer"}
    cat = build_catalog(chain(token(abi=(widened, APPROVAL))), pinned)
    (spec,) = [s for s in cat.specs["Token"] if s.name == "Transfer"]
    assert spec.table == "token_transfer_" + spec.topic0.hex()[:8]
    assert [(s.table, why) for s, why in cat.renamed] == [
        (spec.table, "token_transfer holds the rows of Token.Transfer(address,address,uint256)")]
    overloaded = build_catalog(chain(token(abi=(TRANSFER, widened, APPROVAL))), pinned)
    tables = sorted(s.table for s in overloaded.specs["Token"])
    assert "token_transfer" in tables  # the rule would say token_transfer_ddf252ad now


def test_two_events_of_one_file_may_not_write_to_one_table():
    a = token((A,), name="Uniswap", abi=(event("V2PairSwap", ("x", "uint256", False)),))
    b = token((B,), name="UniswapV2Pair", abi=(event("Swap", ("x", "uint256", False)),))
    with pytest.raises(AbiError, match="would both write to table uniswap_v2_pair_swap"):
        build_catalog(chain(a, b))


def test_progress_per_event_counts_the_blocks_each_source_still_needs():
    cat = build_catalog(chain(token()))
    keys = {k: s for k, s in cat.keyed.items()}
    done = {k: [R(0, 99)] for k, s in keys.items() if s.spec.name == "Transfer"}
    done[next(k for k, s in keys.items() if s.spec.name == "Approval" and A in k)] = [R(0, 9)]
    got = {(e.contract, e.event): e for e in event_progress(cat, done, 99)}
    transfer, approval = got[("Token", "Transfer")], got[("Token", "Approval")]
    assert (transfer.state, transfer.percent, transfer.line()) == ("done", 100.0,
                                                                   "Token Transfer: done")
    assert (approval.blocks_needed, approval.blocks_left, approval.most_left) == (200, 190, 100)
    assert approval.with_rate(10.0).line() == "Token Approval: backfilling, 5%, ETA 10 s"
    assert dataclasses.replace(approval, eta_seconds=None).line() == \
        "Token Approval: backfilling, 5%"
