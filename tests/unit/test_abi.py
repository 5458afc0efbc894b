from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from indexer.abi import AbiError, event_specs, keccak256, parse_type, sql_type
from indexer.config.values import Bad, load_abi
from indexer.naming import FIXED_COLUMNS

TRANSFER_TOPIC0 = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def inp(name: str, type_: str, indexed: bool = False, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "indexed": indexed, **extra}


def event(name: str, *inputs: dict[str, Any], anonymous: bool = False) -> dict[str, Any]:
    return {"type": "event", "name": name, "inputs": list(inputs), "anonymous": anonymous}


ERC20 = [
    {"type": "function", "name": "transfer", "inputs": [], "outputs": []},
    event(
        "Transfer",
        inp("from", "address", True),
        inp("to", "address", True),
        inp("value", "uint256"),
    ),
    event(
        "Approval",
        inp("owner", "address", True),
        inp("spender", "address", True),
        inp("value", "uint256"),
    ),
]
OVERLOADED = [
    event("Log", inp("a", "uint256")),
    event("Log", inp("a", "string")),
    event("Other", inp("b", "bool")),
]


@pytest.mark.parametrize(
    ("abi_type", "indexed", "expected"),
    [
        ("address", False, "bytea"),
        ("bytes1", False, "bytea"),
        ("bytes32", False, "bytea"),
        ("bytes", False, "bytea"),
        ("bool", False, "boolean"),
        ("uint8", False, "bigint"),
        ("uint56", False, "bigint"),
        ("uint64", False, "numeric(20,0)"),
        ("uint72", False, "numeric(78,0)"),
        ("uint256", False, "numeric(78,0)"),
        ("uint", False, "numeric(78,0)"),
        ("int8", False, "bigint"),
        ("int64", False, "bigint"),
        ("int72", False, "numeric(78,0)"),
        ("int256", False, "numeric(78,0)"),
        ("string", False, "text"),
        ("uint256[3]", False, "jsonb"),
        ("address[]", False, "jsonb"),
        ("(uint256,address)", False, "jsonb"),
        ("(uint256,string)[]", False, "jsonb"),
        ("string", True, "bytea"),
        ("bytes", True, "bytea"),
        ("uint256[]", True, "bytea"),
        ("uint256[2]", True, "bytea"),
        ("(uint256,address)", True, "bytea"),
        ("uint256", True, "numeric(78,0)"),
        ("bool", True, "boolean"),
        ("address", True, "bytea"),
    ],
)
def test_sql_type_follows_table_contract(abi_type: str, indexed: bool, expected: str) -> None:
    assert sql_type(abi_type, indexed) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "uint7",
        "uint264",
        "uint0",
        "int08",
        "bytes33",
        "bytes0",
        "fixed128x18",
        "ufixed",
        "foo",
        "function",
    ],
)
def test_parse_type_refuses_unknown_and_unsupported_types(bad: str) -> None:
    with pytest.raises(AbiError, match=re.escape(repr(bad))):
        parse_type(bad)


def test_parse_type_reports_fixed_point_as_unsupported() -> None:
    with pytest.raises(AbiError, match="fixed-point type 'fixed128x18' is not supported"):
        parse_type("fixed128x18")


@pytest.mark.parametrize(
    ("text", "canonical", "dynamic"),
    [
        ("uint", "uint256", False),
        ("(uint256, address)[]", "(uint256,address)[]", True),
        ("(uint256,address)[2]", "(uint256,address)[2]", False),
        ("((uint8,string),bytes32)", "((uint8,string),bytes32)", True),
        ("bytes32[3][]", "bytes32[3][]", True),
    ],
)
def test_parse_type_canonicalises(text: str, canonical: str, dynamic: bool) -> None:
    node = parse_type(text)
    assert (node.canonical, node.dynamic) == (canonical, dynamic)


def test_load_abi_reads_bare_list_and_artifact(tmp_path: Path) -> None:
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(ERC20))
    artifact = tmp_path / "artifact.json"
    artifact.write_text(json.dumps({"contractName": "ERC20", "abi": ERC20, "bytecode": "0x"}))
    assert load_abi(bare) == tuple(ERC20)
    assert load_abi(artifact) == tuple(ERC20)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"'bad\.json' is not JSON"),
        ('{"contractName": "X"}', r"'bad\.json' is neither a JSON ABI list"),
        ('"abi"', r"'bad\.json' is neither a JSON ABI list"),
        ('[{"type": "function"}, 7]', r"'bad\.json': entry 1 is not an object"),
        ('[{"type": "event", "inputs": []}]', r"'bad\.json': event entry 0 needs a name"),
        ('[{"type": "event", "name": "E"}]', r"'bad\.json': event entry 0 needs a name and inputs"),
        ('[{"type": "event", "name": "E", "inputs": [{"name": "a"}]}]',
         r"'bad\.json': event entry 0 needs a name and inputs with types"),
        ('[{"type": "event", "name": "E", "inputs": [{"type": "tuple", "components": [{"name": "x"}]}]}]',
         r"'bad\.json': event entry 0 needs a name and inputs with types"),
        ('[{"type": "function", "name": "f"}]', r"'bad\.json' has no events"),
    ],
)
def test_load_abi_refuses_malformed_files_naming_file_and_entry(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(Bad, match=message):
        load_abi(path)


def test_load_abi_names_missing_file(tmp_path: Path) -> None:
    with pytest.raises(Bad, match="missing.json' does not exist"):
        load_abi(tmp_path / "missing.json")


def test_event_specs_builds_erc20_transfer() -> None:
    transfer, approval = event_specs("WETH9", ERC20)
    assert transfer.signature == "Transfer(address,address,uint256)"
    assert transfer.topic0.hex() == TRANSFER_TOPIC0
    assert transfer.table == "weth9_transfer"
    assert approval.table == "weth9_approval"
    assert not transfer.anonymous
    assert transfer.topic_count == 3
    assert transfer.columns == FIXED_COLUMNS + ("from", "to", "value")
    assert transfer.column_types == (
        "bigint", "bigint", "timestamptz", "bytea", "integer", "integer", "bytea",
        "bytea", "bytea", "numeric(78,0)",
    )  # fmt: skip
    assert [p.indexed for p in transfer.params] == [True, True, False]


def test_event_specs_suffixes_overloaded_tables_with_topic0() -> None:
    specs = event_specs("UniswapV2Pair", OVERLOADED)
    uint_log, string_log, other = specs
    assert uint_log.table == "uniswap_v2_pair_log_" + keccak256(b"Log(uint256)").hex()[:8]
    assert string_log.table == "uniswap_v2_pair_log_" + keccak256(b"Log(string)").hex()[:8]
    assert uint_log.table != string_log.table
    assert other.table == "uniswap_v2_pair_other"


def test_event_specs_keeps_overload_suffix_when_one_overload_is_selected() -> None:
    (spec,) = event_specs("C", OVERLOADED, ["Log(string)"])
    assert spec.table == "c_log_" + keccak256(b"Log(string)").hex()[:8]


@pytest.mark.parametrize(
    ("selectors", "signatures"),
    [
        (None, ["Log(uint256)", "Log(string)", "Other(bool)"]),
        (["Log"], ["Log(uint256)", "Log(string)"]),
        (["Log( uint256 )"], ["Log(uint256)"]),
        (["Log(uint)"], ["Log(uint256)"]),
        (["Other", "Log(string)"], ["Log(string)", "Other(bool)"]),
        (["Other", "Other"], ["Other(bool)"]),
    ],
)
def test_event_specs_selects_by_name_or_signature(
    selectors: list[str] | None, signatures: list[str]
) -> None:
    assert [s.signature for s in event_specs("C", OVERLOADED, selectors)] == signatures


def test_event_specs_unknown_selector_lists_existing_events() -> None:
    with pytest.raises(AbiError) as err:
        event_specs("Token", ERC20, ["Transfer(address,uint256)"], source="chains/abis/erc20.json")
    text = str(err.value)
    assert "chains/abis/erc20.json" in text
    assert "contract Token" in text
    assert "'Transfer(address,uint256)'" in text
    assert "Transfer(address,address,uint256), Approval(address,address,uint256)" in text


def test_event_specs_names_event_and_parameter_of_unknown_type() -> None:
    abi = [event("Bad", inp("ok", "uint8"), inp("weird", "uint7"))]
    with pytest.raises(
        AbiError, match=r"f\.json: contract C, event Bad: parameter 1 'weird': unknown type 'uint7'"
    ):
        event_specs("C", abi, source="f.json")


def test_event_specs_refuses_too_many_indexed_parameters() -> None:
    abi = [event("Big", *(inp(f"a{i}", "uint8", True) for i in range(4)))]
    with pytest.raises(AbiError, match="4 indexed parameters, at most 3"):
        event_specs("C", abi)
    anon = [event("Big", *(inp(f"a{i}", "uint8", True) for i in range(4)), anonymous=True)]
    assert event_specs("C", anon)[0].topic_count == 4


@pytest.mark.parametrize(
    ("names", "columns"),
    [
        (["address", "blockNumber", ""], ["arg_address", "arg_block_number", "arg2"]),
        (["amount0In", "sqrtPriceX96", "txHash"], ["amount0_in", "sqrt_price_x96", "arg_tx_hash"]),
        (["", "", "chain_id"], ["arg0", "arg1", "arg_chain_id"]),
    ],
)
def test_event_specs_renames_colliding_and_unnamed_parameters(
    names: list[str], columns: list[str]
) -> None:
    abi = [event("E", *(inp(n, "uint256") for n in names))]
    (spec,) = event_specs("C", abi)
    assert [p.column for p in spec.params] == columns
    assert [p.name for p in spec.params] == names


def test_event_specs_expands_tuples_in_signature_and_names_tuple_columns() -> None:
    order = inp(
        "order",
        "tuple",
        components=[
            {"name": "maker", "type": "address"},
            {
                "name": "legs",
                "type": "tuple[]",
                "components": [
                    {"name": "id", "type": "uint256"},
                    {"name": "memo", "type": "string"},
                ],
            },
        ],
    )
    fills = inp(
        "", "tuple[2]", components=[{"name": "", "type": "uint64"}, {"name": "", "type": "bool"}]
    )
    (spec,) = event_specs(
        "Exchange", [event("OrderFilled", order, fills, inp("tag", "string", True))]
    )
    assert spec.signature == "OrderFilled((address,(uint256,string)[]),(uint64,bool)[2],string)"
    assert spec.table == "exchange_order_filled"
    assert [p.column for p in spec.params] == ["order", "arg1", "tag"]
    assert [p.abi_type for p in spec.params] == [
        "(address,(uint256,string)[])",
        "(uint64,bool)[2]",
        "string",
    ]
    assert [p.sql_type for p in spec.params] == ["jsonb", "jsonb", "bytea"]
    assert spec.params[0].parsed.names == ("maker", "legs")


def test_event_specs_anonymous_event_keeps_its_flag_and_topic_count() -> None:
    (spec,) = event_specs(
        "C", [event("Anon", inp("a", "uint256", True), inp("b", "string"), anonymous=True)]
    )
    assert spec.anonymous
    assert spec.topic_count == 1
    assert spec.topic0 == keccak256(b"Anon(uint256,string)")


def test_event_specs_ignores_duplicate_identical_entries() -> None:
    assert len(event_specs("C", ERC20 + ERC20[1:2])) == 2
    assert event_specs("C", ERC20 + ERC20[1:2])[0].table == "c_transfer"


def test_event_specs_refuses_same_signature_with_different_indexed_flags() -> None:
    erc721 = event(
        "Transfer",
        inp("from", "address", True),
        inp("to", "address", True),
        inp("id", "uint256", True),
    )
    with pytest.raises(AbiError, match="declared twice with different indexed flags"):
        event_specs("C", ERC20 + [erc721])
