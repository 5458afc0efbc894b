"""The test harness itself: real anvil, deployment, traffic, reference decoder, solc, Postgres."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from eth_abi import encode
from eth_utils import event_abi_to_log_topic, keccak, to_checksum_address

from tests.support.contracts import (
    ACCOUNT0,
    ACCOUNTS,
    EXPECTED,
    Deployed,
    Deployer,
    abi,
    artifact,
    deploy_contract,
    receipt,
    send,
)
from tests.support.reference import (
    Source,
    addresses_from,
    assert_tables_equal,
    event_tables,
    expected_rows,
    read_tables,
)
from tests.support.rpc import JsonRpc
from tests.support.services import Anvil, drop_database, fresh_database
from tests.support.solc import CONTRACTS_DIR, compile_contract, compile_sources
from tests.support.traffic import bulk_transfers, run_traffic


def topic(contract: str, event: str) -> str:
    spec = next(e for e in abi(contract) if e.get("type") == "event" and e["name"] == event)
    return "0x" + event_abi_to_log_topic(spec).hex()


def count_logs(rpc: JsonRpc, contract: str, event: str, address: list[str] | None = None) -> int:
    flt: dict[str, object] = {
        "fromBlock": "0x0",
        "toBlock": "latest",
        "topics": [topic(contract, event)],
    }
    if address is not None:
        flt["address"] = address
    return len(rpc.call("eth_getLogs", flt))


def sources(d: Deployed) -> list[Source]:
    a = d.addresses
    return [
        Source("TestToken", abi("TestToken"), [a.token_a, a.token_b]),
        Source("WETH9", abi("WETH9"), [a.weth]),
        Source("UniswapV2Factory", abi("UniswapV2Factory"), [a.factory]),
        Source(
            "UniswapV2Pair",
            abi("UniswapV2Pair"),
            d.pairs(),
            events=["Swap", "Sync", "Mint", "Burn"],
        ),
    ]


def head(rpc: JsonRpc) -> int:
    return int(rpc.call("eth_blockNumber"), 16)


# ------------------------------------------------------------------------------- anvil, deploy


def test_anvil_answers_with_chain_id_and_dev_accounts(anvil: Anvil) -> None:
    with anvil.rpc() as rpc:
        assert int(rpc.call("eth_chainId"), 16) == 31337
        assert [to_checksum_address(a) for a in rpc.call("eth_accounts")] == ACCOUNTS
        assert head(rpc) == 0


def test_anvil_stop_frees_the_port() -> None:
    node = Anvil(chain_id=1337).start()
    port = node.port
    node.stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_deployment_lands_at_fixed_addresses(deployed: Deployed) -> None:
    assert deployed.addresses == EXPECTED
    for address in EXPECTED.as_dict().values():
        assert len(deployed.rpc.call("eth_getCode", address, "latest")) > 2
    assert deployed.token_a.functions.name().call() == "DemoToken A"
    assert deployed.token_b.functions.symbol().call() == "DTB"
    assert deployed.router.functions.factory().call() == EXPECTED.factory
    assert deployed.router.functions.WETH().call() == EXPECTED.weth


# ------------------------------------------------------------------------------------ traffic


def test_traffic_emits_every_event_kind(deployed: Deployed) -> None:
    report = run_traffic(deployed, rounds=12, seed=7)
    rpc, a = deployed.rpc, deployed.addresses
    pairs = deployed.pairs()
    assert (
        len(pairs) == 3
    )  # router-created pairs: the npm v2-core init code hash matches the router's
    assert count_logs(rpc, "UniswapV2Factory", "PairCreated", [a.factory]) == 3
    for event in ("Swap", "Sync", "Mint", "Burn"):
        assert count_logs(rpc, "UniswapV2Pair", event, pairs) > 0, event
    for event in ("Deposit", "Withdrawal", "Transfer", "Approval"):
        assert count_logs(rpc, "WETH9", event, [a.weth]) > 0, event
    for event in ("Transfer", "Approval"):
        assert count_logs(rpc, "TestToken", event, [a.token_a, a.token_b]) > 0, event
    created = rpc.call(
        "eth_getLogs",
        {
            "fromBlock": "0x0",
            "toBlock": "latest",
            "topics": [topic("UniswapV2Factory", "PairCreated")],
        },
    )
    assert len({log["blockNumber"] for log in created}) == 3  # each pair at its own block
    assert report.pair_created_at == {"A/B": 0, "A/WETH": 4, "B/WETH": 8}
    assert report.last_block - report.first_block + 1 == len(report.tx_hashes)  # automine


def _log_fingerprint(url: str) -> list[tuple[str, tuple[str, ...], str]]:
    with JsonRpc(url) as rpc:
        logs = rpc.call("eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest"})
    return [(log["address"], tuple(log["topics"]), log["data"]) for log in logs]


def test_traffic_is_deterministic_and_packs_blocks() -> None:
    runs = []
    for _ in range(2):
        with Anvil() as node:
            system = Deployer(node.url).deploy()
            report = run_traffic(system, rounds=6, seed=3, txs_per_block=10)
            system.rpc.close()
            assert report.last_block - report.first_block + 1 < len(report.tx_hashes) / 5
            runs.append(_log_fingerprint(node.url))
    assert runs[0] == runs[1]
    assert len(runs[0]) > 100


def test_bulk_transfers_emit_exactly_n_logs(deployed: Deployed) -> None:
    token = deployed.addresses.token_a
    report = bulk_transfers(deployed.url, token, 2_500, logs_per_tx=1000, txs_per_block=2)
    assert report.n_txs == 3
    assert report.last_block - report.first_block + 1 == 2
    logs = deployed.rpc.call(
        "eth_getLogs",
        {
            "fromBlock": hex(report.first_block),
            "toBlock": hex(report.last_block),
            "address": token,
            "topics": [topic("TestToken", "Transfer")],
        },
    )
    assert len(logs) == 2_500


# ------------------------------------------------------------------------- reference decoder


def test_reference_decodes_known_transfer_and_every_table(deployed: Deployed) -> None:
    run_traffic(deployed, rounds=6, seed=11)
    recipient = ACCOUNTS[7]
    tx = send(
        deployed.rpc,
        ACCOUNT0,
        deployed.addresses.token_b,
        deployed.token_b.encode_abi("transfer", [recipient, 123_456_789]),
        gas=100_000,
    )
    got = receipt(deployed.rpc, tx)
    block = deployed.rpc.call("eth_getBlockByNumber", got["blockNumber"], False)

    rows = expected_rows(deployed.url, sources(deployed), 0, head(deployed.rpc), chunk=50)

    for table in (
        "test_token_transfer",
        "test_token_approval",
        "weth9_deposit",
        "weth9_withdrawal",
        "weth9_transfer",
        "uniswap_v2_factory_pair_created",
        "uniswap_v2_pair_swap",
        "uniswap_v2_pair_sync",
        "uniswap_v2_pair_mint",
        "uniswap_v2_pair_burn",
    ):
        assert rows.get(table), table
    assert "uniswap_v2_pair_transfer" not in rows  # events= limits the pair's tables
    transfer = [r for r in rows["test_token_transfer"] if r[3] == bytes.fromhex(tx[2:])]
    assert transfer == [
        (
            31337,
            int(got["blockNumber"], 16),
            datetime.fromtimestamp(int(block["timestamp"], 16), tz=UTC),
            bytes.fromhex(tx[2:]),
            int(got["transactionIndex"], 16),
            int(got["logs"][0]["logIndex"], 16),
            bytes.fromhex(deployed.addresses.token_b[2:]),
            bytes.fromhex(ACCOUNT0[2:]),
            bytes.fromhex(recipient[2:]),
            Decimal(123_456_789),
        )
    ]
    created = rows["uniswap_v2_factory_pair_created"]
    pair_columns = event_tables(Source("UniswapV2Factory", abi("UniswapV2Factory"), None))[
        0
    ].columns
    assert pair_columns[-4:] == ("token0", "token1", "pair", "arg3")
    assert sorted(addresses_from(created, pair_columns, "pair")) == sorted(deployed.pairs())
    assert [r[-1] for r in created] == [1, 2, 3]  # allPairs.length as numeric
    swap = rows["uniswap_v2_pair_swap"][0]
    assert len(swap) == 7 + 6 and all(isinstance(v, Decimal) for v in swap[8:12])


def _ddl(table: str, columns: tuple[str, ...], types: list[str]) -> str:
    fixed = ["bigint", "bigint", "timestamptz", "bytea", "integer", "integer", "bytea"]
    cols = ", ".join(f'"{c}" {t}' for c, t in zip(columns, fixed + types, strict=True))
    return f'CREATE TABLE chaindata."{table}" ({cols}, PRIMARY KEY (chain_id, block_number, log_index))'


async def test_reference_rows_round_trip_through_postgres(
    database_url: str, deployed: Deployed
) -> None:
    run_traffic(deployed, rounds=4, seed=5)
    srcs = sources(deployed)
    expected = expected_rows(deployed.url, srcs, 0, head(deployed.rpc))
    token_transfer = event_tables(srcs[0])[1]
    sync = next(t for t in event_tables(srcs[3]) if t.table == "uniswap_v2_pair_sync")
    assert token_transfer.table == "test_token_transfer"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE SCHEMA chaindata")
        await conn.execute(
            _ddl(token_transfer.table, token_transfer.columns, ["bytea", "bytea", "numeric(78,0)"])
        )
        await conn.execute(_ddl(sync.table, sync.columns, ["numeric(78,0)", "numeric(78,0)"]))
        for t in (token_transfer, sync):
            await conn.copy_records_to_table(
                t.table, schema_name="chaindata", records=expected[t.table]
            )
    finally:
        await conn.close()
    tables = [token_transfer.table, sync.table]
    actual = await read_tables(database_url, "chaindata", tables)
    wanted = {t: expected[t] for t in tables}
    assert_tables_equal(wanted, actual)

    broken = {t: list(rows) for t, rows in actual.items()}
    first = broken[sync.table][0]
    broken[sync.table][0] = (*first[:-1], first[-1] + 1)
    del broken[token_transfer.table][-1]
    with pytest.raises(AssertionError) as err:
        assert_tables_equal(wanted, broken)
    message = str(err.value)
    assert "test_token_transfer: expected" in message and "1 missing" in message
    assert "uniswap_v2_pair_sync" in message and "1 different" in message


async def test_read_tables_parses_jsonb(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "CREATE TABLE t (chain_id bigint, block_number bigint, log_index int, v jsonb)"
        )
        await conn.execute(
            "INSERT INTO t VALUES (1, 2, 3, $1::jsonb)",
            json.dumps({"a": [1, "0xab"], "big": 2**200}),
        )
    finally:
        await conn.close()
    rows = await read_tables(database_url, "public", ["t"])
    assert rows == {"t": [(1, 2, 3, {"a": [1, "0xab"], "big": 2**200})]}


# ----------------------------------------------------------------------------- solc, services


def test_solc_compiles_test_token() -> None:
    compiled = compile_contract("TestToken")
    names = {e.get("name") for e in compiled.abi}
    assert {"spray", "sprayMint", "emitTransfers", "Transfer"} <= names
    assert len(compiled.bytecode) > 1000
    assert artifact("TestToken") == compiled


def test_solc_compiles_all_types_if_present() -> None:
    path = CONTRACTS_DIR / "AllTypes.sol"
    if not path.exists():
        pytest.skip("tests/contracts/AllTypes.sol not written yet")
    compiled = compile_sources([path])
    assert compiled, "AllTypes.sol defines no contract"
    assert any(e.get("type") == "event" for c in compiled.values() for e in c.abi)


async def test_fresh_database_is_created_and_dropped(database_admin_url: str) -> None:
    url = await fresh_database(database_admin_url, prefix="harness")
    conn = await asyncpg.connect(url)
    assert await conn.fetchval("SELECT current_database()") == urlsplit(url).path.lstrip("/")
    await conn.close()
    await drop_database(database_admin_url, url)
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(url)


def test_redis_url_answers_ping(redis_url: str) -> None:
    parts = urlsplit(redis_url)
    with socket.create_connection((parts.hostname, parts.port or 6379), timeout=2) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(16).startswith(b"+PONG")


def test_reference_decodes_all_types_edge_cases(anvil: Anvil) -> None:
    if not (CONTRACTS_DIR / "AllTypes.sol").exists():
        pytest.skip("tests/contracts/AllTypes.sol not written yet")
    url = anvil.url
    c = deploy_contract(url, "AllTypes")
    nft = deploy_contract(url, "NftLike")
    who = ACCOUNTS[3]
    b32 = bytes(range(32))
    calls: list[tuple[str, list[object]]] = [
        ("emitInts", [255, 2**64 - 1, 2**256 - 1, -128, -(2**255)]),
        ("emitStructs", [(1, -2), (who, (3, 4), "memo"), [(5, 6), (7, -8)]]),
        ("emitIndexedDynamic", ["name", b"\x01\x02", [1, 2], 7]),
        ("emitTopics", [5, -1, True, b32]),
        ("emitSecret", [who, 9]),
        ("emitValue", [1]),
        ("emitValueText", ["x"]),
    ]
    with JsonRpc(url) as rpc:
        for fn, args in calls:
            receipt(rpc, send(rpc, ACCOUNT0, c.address, c.encode_abi(fn, args), gas=300_000))
        # A string that is not UTF-8 and holds a NUL: encoded as bytes (same ABI layout).
        data = (
            "0x"
            + (
                keccak(text="emitDynamic(bytes,string)")[:4]
                + encode(["bytes", "bytes"], [b"\x01", b"ok\xff\x00"])
            ).hex()
        )
        receipt(rpc, send(rpc, ACCOUNT0, c.address, data, gas=300_000))
        receipt(
            rpc,
            send(
                rpc,
                ACCOUNT0,
                nft.address,
                nft.encode_abi("emitTransfer", [ACCOUNT0, who, 42]),
                gas=100_000,
            ),
        )
        last = head(rpc)
    rows = expected_rows(
        url,
        [
            Source("AllTypes", c.abi, [c.address]),
            Source("ERC20", abi("TestToken"), [nft.address], events=["Transfer"]),
        ],
        0,
        last,
    )
    only = {t: r[0][7:] for t, r in rows.items() if r}
    assert only["all_types_ints"] == (
        255,
        Decimal(2**64 - 1),
        Decimal(2**256 - 1),
        -128,
        Decimal(-(2**255)),
    )
    assert only["all_types_structs"] == (
        {"x": 1, "y": -2},
        {"maker": who.lower(), "at": {"x": 3, "y": 4}, "memo": "memo"},
        [{"x": 5, "y": 6}, {"x": 7, "y": -8}],
    )
    assert only["all_types_indexed_dynamic"] == (
        keccak(text="name"),
        keccak(b"\x01\x02"),
        keccak(encode(["uint256[]"], [[1, 2]])[64:]),
        Decimal(7),
    )
    assert only["all_types_topics"] == (Decimal(5), -1, True, b32)
    assert only["all_types_secret"] == (bytes.fromhex(who[2:]), Decimal(9))
    assert only["all_types_dynamic"] == (b"\x01", "ok\ufffd\ufffd")
    value_tables = sorted(t for t in rows if t.startswith("all_types_value_"))
    assert len(value_tables) == 2 and all(
        len(t) == len("all_types_value_") + 8 for t in value_tables
    )
    assert sorted(len(rows[t]) for t in value_tables) == [1, 1]
    assert rows["erc20_transfer"] == []  # ERC721-shaped Transfer does not fit the ERC20 event


def test_dumped_state_reloads_with_old_blocks_and_logs(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with Anvil(dump_state=state) as node:
        system = Deployer(node.url).deploy()
        run_traffic(system, rounds=3, seed=2)
        system.rpc.close()
        bulk_transfers(node.url, EXPECTED.token_a, 3_000, logs_per_tx=1000, txs_per_block=3)
        before = _log_fingerprint(node.url)
        with node.rpc() as rpc:
            last = rpc.call("eth_getBlockByNumber", "latest", False)
    assert state.stat().st_size > 0
    with Anvil(load_state=state) as node, node.rpc() as rpc:
        assert rpc.call("eth_getBlockByNumber", last["number"], False)["hash"] == last["hash"]
        assert _log_fingerprint(node.url) == before
        rpc.call("evm_mine")
        assert rpc.call("eth_getBlockByNumber", "latest", False)["parentHash"] == last["hash"]
