"""Every ABI type family through the real `indexer run`: values sent to AllTypes on a real anvil
come back from the event tables exactly as contract 3 and the decoder's value conventions say,
equal to the independent reference decoder and, value by value, to what was sent. An ERC-20 ABI
configured on an ERC-721-style contract meets logs it cannot decode: the run reports them and
goes on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector, keccak

from tests.support.cli import REPO, Result, env_for, indexer
from tests.support.contracts import ACCOUNT0, ACCOUNTS, abi, connect, deploy_contract
from tests.support.reference import Source, assert_tables_equal, expected_rows, read_tables
from tests.support.services import Anvil, drop_database, fresh_database

SCHEMA = "chaindata"
FIXED_COLUMNS = 7  # chain_id, block_number, block_time, tx_hash, tx_index, log_index, address

ZERO = "0x" + "00" * 20
OTHER = ACCOUNTS[1]
B32 = bytes(range(1, 33))
LONG = bytes(i % 251 for i in range(1000))
UNICODE = "héllo wörld ✓ 🚀"
U64_MAX = 2**64 - 1
U256_MAX = 2**256 - 1
I256_MIN = -(2**255)
I256_MAX = 2**255 - 1
INVALID_UTF8 = b"ok \xff\xfe then \xc3"  # two bad bytes, then a truncated sequence


def raw(address: str) -> bytes:
    return bytes.fromhex(address[2:])


def hexed(address: str) -> str:
    return address.lower()


def overload(event_signature: str) -> str:
    """The table of one overload: `<contract>_<event>_<8 hex of topic0>`."""
    name = event_signature.split("(")[0]
    return f"all_types_{name.lower()}_{keccak(text=event_signature).hex()[:8]}"


VALUE_UINT = overload("Value(uint256)")
VALUE_STRING = overload("Value(string,address)")


def array_topic(abi_type: str, values: list[Any]) -> bytes:
    """Topic of an indexed array: keccak of its elements, each encoded in place and padded to
    32 bytes, without a length (Solidity's rule for indexed reference types)."""
    return keccak(b"".join(encode([abi_type], [v]) for v in values))


# --------------------------------------------------------------------------- what is sent


@dataclass(frozen=True)
class Call:
    table: str
    function: str
    args: tuple[Any, ...]
    expected: tuple[Any, ...]  # parameter columns as asyncpg reads them back, jsonb parsed


def point(x: int, y: int) -> dict[str, int]:
    return {"x": x, "y": y}


CALLS: list[Call] = [
    Call("all_types_ints", "emitInts", (255, U64_MAX, U256_MAX, -128, I256_MIN),
         (255, Decimal(U64_MAX), Decimal(U256_MAX), -128, Decimal(I256_MIN))),
    Call("all_types_ints", "emitInts", (0, 0, 0, -1, I256_MAX),
         (0, Decimal(0), Decimal(0), -1, Decimal(I256_MAX))),
    Call("all_types_ints", "emitInts", (1, 2**63, 2**64, 127, -1),
         (1, Decimal(2**63), Decimal(2**64), 127, Decimal(-1))),
    Call("all_types_scalars", "emitScalars", (ZERO, False, b"\xff", B32),
         (raw(ACCOUNT0), raw(ZERO), False, b"\xff", B32)),
    Call("all_types_scalars", "emitScalars", (OTHER, True, b"\x00", bytes(32)),
         (raw(ACCOUNT0), raw(OTHER), True, b"\x00", bytes(32))),
    Call("all_types_dynamic", "emitDynamic", (b"", ""), (b"", "")),
    Call("all_types_dynamic", "emitDynamic", (LONG, UNICODE), (LONG, UNICODE)),
    Call("all_types_dynamic", "emitDynamic", (b"\x00", "before\x00after"),
         (b"\x00", "before\ufffdafter")),
    Call("all_types_arrays", "emitArrays", ([0, 1, U256_MAX], [], []), ([0, 1, U256_MAX], [], [])),
    Call("all_types_arrays", "emitArrays",
         ([7, 8, 9], [ZERO, OTHER], ["", UNICODE, "nul\x00inside"]),
         ([7, 8, 9], [ZERO, hexed(OTHER)], ["", UNICODE, "nul\ufffdinside"])),
    Call("all_types_structs", "emitStructs",
         ((U64_MAX, -(2**63)), (OTHER, (1, -1), "memo ✓"), []),
         (point(U64_MAX, -(2**63)),
          {"maker": hexed(OTHER), "at": point(1, -1), "memo": "memo ✓"}, [])),
    Call("all_types_structs", "emitStructs",
         ((0, 2**63 - 1), (ZERO, (0, 0), ""), [(1, -2), (U64_MAX, -(2**63))]),
         (point(0, 2**63 - 1), {"maker": ZERO, "at": point(0, 0), "memo": ""},
          [point(1, -2), point(U64_MAX, -(2**63))])),
    Call("all_types_indexed_dynamic", "emitIndexedDynamic", (UNICODE, LONG, [1, 2, U256_MAX], 7),
         (keccak(UNICODE.encode()), keccak(LONG), array_topic("uint256", [1, 2, U256_MAX]),
          Decimal(7))),
    Call("all_types_indexed_dynamic", "emitIndexedDynamic", ("", b"", [], 0),
         (keccak(b""), keccak(b""), keccak(b""), Decimal(0))),
    Call("all_types_topics", "emitTopics", (U256_MAX, -1, True, B32),
         (Decimal(U256_MAX), -1, True, B32)),
    Call("all_types_topics", "emitTopics", (0, -128, False, bytes(32)),
         (Decimal(0), -128, False, bytes(32))),
    Call("all_types_secret", "emitSecret", (OTHER, 123), (raw(OTHER), Decimal(123))),
    Call("all_types_secret", "emitSecret", (ZERO, U256_MAX), (raw(ZERO), Decimal(U256_MAX))),
    Call(VALUE_UINT, "emitValue", (U256_MAX,), (Decimal(U256_MAX),)),
    Call(VALUE_STRING, "emitValueText", ("forty-two",), ("forty-two", raw(ACCOUNT0))),
    Call("all_types_transfer", "emitTransfer", (ACCOUNT0, OTHER, 10**18),
         (raw(ACCOUNT0), raw(OTHER), Decimal(10**18))),
]

# A string whose bytes are not UTF-8 cannot be passed through web3's string encoder: the call
# data of emitDynamic(bytes,string) is built by hand (bytes and string share one encoding).
RAW_DYNAMIC = Call("all_types_dynamic", "emitDynamic(bytes,string)", (b"\xfe", INVALID_UTF8),
                   (b"\xfe", INVALID_UTF8.decode("utf-8", "replace")))

NFT_TRANSFERS = [(ZERO, OTHER, 1), (OTHER, ACCOUNT0, U256_MAX)]

ALL_TABLES = sorted({c.table for c in [*CALLS, RAW_DYNAMIC]})

# One table per type family: every column's SQL type, in table order (contract 3).
FIXED_TYPES = [
    ("chain_id", "bigint"), ("block_number", "bigint"),
    ("block_time", "timestamp with time zone"), ("tx_hash", "bytea"), ("tx_index", "integer"),
    ("log_index", "integer"), ("address", "bytea"),
]
COLUMN_TYPES: dict[str, list[tuple[str, str]]] = {
    "all_types_ints": [("u8", "bigint"), ("u64", "numeric(20,0)"), ("u256", "numeric(78,0)"),
                       ("i8", "bigint"), ("i256", "numeric(78,0)")],
    "all_types_scalars": [("who", "bytea"), ("account", "bytea"), ("flag", "boolean"),
                          ("b1", "bytea"), ("b32", "bytea")],
    "all_types_dynamic": [("data", "bytea"), ("text", "text")],
    "all_types_arrays": [("fixed_nums", "jsonb"), ("accounts", "jsonb"), ("labels", "jsonb")],
    "all_types_structs": [("point", "jsonb"), ("order", "jsonb"), ("points", "jsonb")],
    "all_types_indexed_dynamic": [("name", "bytea"), ("blob", "bytea"), ("ids", "bytea"),
                                  ("seq", "numeric(78,0)")],
    "all_types_topics": [("u", "numeric(78,0)"), ("i", "bigint"), ("flag", "boolean"),
                         ("data", "bytea")],
    "all_types_secret": [("who", "bytea"), ("amount", "numeric(78,0)")],
    VALUE_UINT: [("value", "numeric(78,0)")],
    VALUE_STRING: [("value", "text"), ("by", "bytea")],
}


# --------------------------------------------------------------------------- the one run


@dataclass
class Indexed:
    anvil: Anvil
    database_url: str
    all_types: str  # checksummed addresses
    nft: str
    head: int
    tx_hashes: dict[str, list[bytes]]  # table -> tx hash of each call, in the order sent
    run: Result


def _send_all(url: str) -> tuple[str, str, dict[str, list[bytes]]]:
    w3 = connect(url)
    all_types = deploy_contract(url, "AllTypes")
    nft = deploy_contract(url, "NftLike")
    sent: dict[str, list[bytes]] = {}

    def mined(tx: Any) -> bytes:
        got = w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        assert got["status"] == 1, got
        return bytes(got["transactionHash"])

    for call in CALLS:
        fn = getattr(all_types.functions, call.function)(*call.args)
        sent.setdefault(call.table, []).append(mined(fn.transact({"from": ACCOUNT0})))
    data = function_signature_to_4byte_selector(RAW_DYNAMIC.function) + encode(
        ["bytes", "bytes"], list(RAW_DYNAMIC.args)
    )
    tx = w3.eth.send_transaction(
        {"from": ACCOUNT0, "to": all_types.address, "data": data, "gas": 500_000}
    )
    sent[RAW_DYNAMIC.table].append(mined(tx))
    for args in NFT_TRANSFERS:
        mined(nft.functions.emitTransfer(*args).transact({"from": ACCOUNT0}))
    return all_types.address, nft.address, sent


def _chain_file(tmp: Path, rpc_url: str, all_types: str, nft: str) -> Path:
    abi_path = tmp / "all_types.json"
    abi_path.write_text(json.dumps(abi("AllTypes")))
    chain = {
        "name": "alltypes",
        "chain_id": 31337,
        "rpc": [{"url": rpc_url}],
        "block_time": "1s",
        "finality_depth": 0,
        "start_block": 0,
        "get_logs_max_range": 2000,
        "partition_blocks": 1000000,
        "contracts": [
            {"name": "AllTypes", "abi": str(abi_path), "address": all_types},
            {"name": "Erc20OnNft", "abi": str(REPO / "chains" / "abis" / "erc20.json"),
             "address": nft},
        ],
    }
    path = tmp / "alltypes.yaml"
    path.write_text(yaml.safe_dump(chain, sort_keys=False))
    return path


@pytest.fixture(scope="module")
async def module_database_url(database_admin_url: str) -> AsyncIterator[str]:
    url = await fresh_database(database_admin_url)
    try:
        yield url
    finally:
        await drop_database(database_admin_url, url)


@pytest.fixture(scope="module")
def indexed(
    anvil_module: Anvil, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Indexed:
    all_types, nft, sent = _send_all(anvil_module.url)
    head = connect(anvil_module.url).eth.block_number
    chain = _chain_file(tmp_path_factory.mktemp("alltypes"), anvil_module.url, all_types, nft)
    run = indexer(["run", "--chain", str(chain), "--once"],
                  env_for(module_database_url, anvil_module.url))
    return Indexed(anvil_module, module_database_url, all_types, nft, head, sent, run)


def strict(value: Any) -> Any:
    """A value with the type of every scalar made explicit, so that 1 != True != Decimal(1)."""
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    return (type(value).__name__, value)


def _tables(indexed: Indexed, tables: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    return asyncio.run(read_tables(indexed.database_url, SCHEMA, tables))


async def _fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def _query(indexed: Indexed, query: str, *args: Any) -> list[asyncpg.Record]:
    return asyncio.run(_fetch(indexed.database_url, query, *args))


# --------------------------------------------------------------------------- the tests


def test_run_survives_undecodable_logs_and_reports_them(indexed: Indexed):
    res = indexed.run
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    assert f"{len(NFT_TRANSFERS)} logs did not decode" in res.err, res.err
    warnings = [line for line in res.err.splitlines()
                if "does not decode as erc20_on_nft_transfer" in line]
    assert len(warnings) == len(NFT_TRANSFERS), res.err
    [exists] = _query(indexed, "SELECT to_regclass($1) IS NOT NULL AS e",
                      f"{SCHEMA}.erc20_on_nft_transfer")
    if exists["e"]:
        [n] = _query(indexed, f"SELECT count(*) AS n FROM {SCHEMA}.erc20_on_nft_transfer")
        assert n["n"] == 0


def test_tables_equal_the_reference_decoder(indexed: Indexed):
    assert indexed.run.code == 0, indexed.run.err
    source = Source("AllTypes", abi("AllTypes"), [indexed.all_types])
    expected = expected_rows(indexed.anvil.url, [source], 0, indexed.head)
    assert set(expected) == set(ALL_TABLES)
    for table in ALL_TABLES:
        assert expected[table], f"the reference found no {table} rows: the comparison proves nothing"
    assert_tables_equal(expected, _tables(indexed, list(expected)))


@pytest.mark.parametrize("table", ALL_TABLES)
def test_values_read_back_are_the_values_sent(indexed: Indexed, table: str):
    assert indexed.run.code == 0, indexed.run.err
    calls = [c for c in [*CALLS, RAW_DYNAMIC] if c.table == table]
    rows = _tables(indexed, [table])[table]
    assert strict([r[FIXED_COLUMNS:] for r in rows]) == strict([c.expected for c in calls])
    assert [r[3] for r in rows] == indexed.tx_hashes[table]
    assert {r[0] for r in rows} == {31337}
    assert {r[6] for r in rows} == {raw(indexed.all_types)}


@pytest.mark.parametrize("table", sorted(COLUMN_TYPES))
def test_column_types_follow_the_table_contract(indexed: Indexed, table: str):
    assert indexed.run.code == 0, indexed.run.err
    cols = _query(
        indexed,
        "SELECT column_name, data_type, numeric_precision, numeric_scale"
        " FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2"
        " ORDER BY ordinal_position",
        SCHEMA, table,
    )
    got = [
        (c["column_name"], f"numeric({c['numeric_precision']},{c['numeric_scale']})"
         if c["data_type"] == "numeric" else c["data_type"])
        for c in cols
    ]
    assert got == FIXED_TYPES + COLUMN_TYPES[table]


def test_overloads_get_the_topic0_suffix(indexed: Indexed):
    assert indexed.run.code == 0, indexed.run.err
    rows = _query(
        indexed,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname LIKE 'all_types_value%'"
        " AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
        SCHEMA,
    )
    assert sorted(r["relname"] for r in rows) == sorted([VALUE_UINT, VALUE_STRING])
    assert VALUE_UINT == "all_types_value_" + keccak(text="Value(uint256)").hex()[:8]
    assert VALUE_STRING == "all_types_value_" + keccak(text="Value(string,address)").hex()[:8]
    assert "all_types_value" not in {r["relname"] for r in rows}
