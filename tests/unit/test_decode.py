from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from eth_abi import encode

from indexer.abi import EventSpec, event_specs, keccak256
from indexer.decode import Decoder, DecodeResult
from indexer.types import RawLog

ADDR = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20
TX = "0x" + "77" * 32
BLOCK_TIME = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MAX256 = 2**256 - 1
MIN256 = -(2**255)


def inp(name: str, type_: str, indexed: bool = False, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "indexed": indexed, **extra}


def event(name: str, *inputs: dict[str, Any], anonymous: bool = False) -> dict[str, Any]:
    return {"type": "event", "name": name, "inputs": list(inputs), "anonymous": anonymous}


def word(value: int | bytes) -> str:
    raw = value if isinstance(value, bytes) else value.to_bytes(32, "big", signed=value < 0)
    return "0x" + raw.rjust(32, b"\0").hex()


def topic0(spec: EventSpec) -> str:
    return "0x" + spec.topic0.hex()


def raw_log(
    topics: list[str], data: bytes | str, *, address: str = ADDR, index: int = 0, block: int = 16
) -> RawLog:
    return {
        "address": address,
        "topics": topics,
        "data": data if isinstance(data, str) else "0x" + data.hex(),
        "blockNumber": hex(block),
        "transactionHash": TX,
        "transactionIndex": "0x3",
        "logIndex": hex(index),
    }


def run(specs: list[EventSpec], logs: list[RawLog], contract: str = "C") -> DecodeResult:
    decoder = Decoder(10, {contract: specs})
    times = {log_block: BLOCK_TIME for log_block in {int(log["blockNumber"], 16) for log in logs}}
    return decoder.decode(logs, {ADDR: (contract,)}, times)


def only_row(result: DecodeResult) -> tuple[Any, ...]:
    assert not result.failures, result.failures
    (rows,) = result.rows.values()
    (row,) = rows
    return row


ERC20 = event_specs(
    "Token",
    [
        event(
            "Transfer",
            inp("from", "address", True),
            inp("to", "address", True),
            inp("value", "uint256"),
        )
    ],
)
(TRANSFER,) = ERC20

ADDRESS_VALUE = "0x" + "12" * 20
STRUCT = [{"name": "id", "type": "uint256"}, {"name": "owner", "type": "address"}]
NESTED = [
    {"name": "label", "type": "string"},
    {"name": "inner", "type": "tuple", "components": STRUCT},
    {"name": "tags", "type": "bytes[]"},
]

# (ABI input, value given to eth_abi.encode, value expected in the row, SQL type)
ROUND_TRIPS = [
    (inp("v", "uint8"), 255, 255, "bigint"),
    (inp("v", "uint64"), 2**64 - 1, 2**64 - 1, "numeric(20,0)"),
    (inp("v", "uint256"), MAX256, MAX256, "numeric(78,0)"),
    (inp("v", "uint256"), 0, 0, "numeric(78,0)"),
    (inp("v", "int8"), -1, -1, "bigint"),
    (inp("v", "int8"), -128, -128, "bigint"),
    (inp("v", "int8"), 127, 127, "bigint"),
    (inp("v", "int64"), -(2**63), -(2**63), "bigint"),
    (inp("v", "int256"), MIN256, MIN256, "numeric(78,0)"),
    (inp("v", "int256"), 2**255 - 1, 2**255 - 1, "numeric(78,0)"),
    (inp("v", "address"), ADDRESS_VALUE, bytes.fromhex("12" * 20), "bytea"),
    (inp("v", "bool"), True, True, "boolean"),
    (inp("v", "bool"), False, False, "boolean"),
    (inp("v", "bytes1"), b"\xfe", b"\xfe", "bytea"),
    (inp("v", "bytes32"), b"\x01" * 32, b"\x01" * 32, "bytea"),
    (inp("v", "bytes"), b"", b"", "bytea"),
    (inp("v", "bytes"), b"\x00\xff" * 40, b"\x00\xff" * 40, "bytea"),
    (inp("v", "string"), "", "", "text"),
    (inp("v", "string"), "héllo wörld ✓ 🦄", "héllo wörld ✓ 🦄", "text"),
    (inp("v", "uint256[3]"), [1, MAX256, 0], [1, MAX256, 0], "jsonb"),
    (inp("v", "address[]"), [], [], "jsonb"),
    (
        inp("v", "address[]"),
        [ADDRESS_VALUE, "0x" + "AB" * 20],
        [ADDRESS_VALUE, "0x" + "ab" * 20],
        "jsonb",
    ),
    (inp("v", "string[]"), ["", "a", "ü"], ["", "a", "ü"], "jsonb"),
    (inp("v", "int8[]"), [-1, 5], [-1, 5], "jsonb"),
    (inp("v", "bool[2]"), [True, False], [True, False], "jsonb"),
    (inp("v", "bytes2[]"), [b"\x00\x01"], ["0x0001"], "jsonb"),
    (
        inp("v", "tuple", components=STRUCT),
        (7, ADDRESS_VALUE),
        {"id": 7, "owner": ADDRESS_VALUE},
        "jsonb",
    ),
    (
        inp(
            "v", "tuple", components=[{"name": "", "type": "uint8"}, {"name": "", "type": "bytes"}]
        ),
        (1, b"\xaa"),
        [1, "0xaa"],
        "jsonb",
    ),
    (
        inp("v", "tuple", components=NESTED),
        ("x", (MAX256, ADDRESS_VALUE), [b"", b"\x01"]),
        {"label": "x", "inner": {"id": MAX256, "owner": ADDRESS_VALUE}, "tags": ["0x", "0x01"]},
        "jsonb",
    ),
    (
        inp("v", "tuple[]", components=STRUCT),
        [(1, ADDRESS_VALUE), (2, ADDRESS_VALUE)],
        [{"id": 1, "owner": ADDRESS_VALUE}, {"id": 2, "owner": ADDRESS_VALUE}],
        "jsonb",
    ),
]


@pytest.mark.parametrize(("param", "value", "expected", "sql"), ROUND_TRIPS)
@pytest.mark.parametrize("neighbours", [False, True], ids=["alone", "between_static_and_string"])
def test_decode_round_trips_every_type_family(
    param: dict[str, Any], value: Any, expected: Any, sql: str, neighbours: bool
) -> None:
    params = [inp("head", "uint16"), param, inp("tail", "string")] if neighbours else [param]
    values = [65535, value, "end"] if neighbours else [value]
    (spec,) = event_specs("C", [event("E", inp("who", "address", True), *params)])
    data = encode([p.abi_type for p in spec.params[1:]], values)
    row = only_row(run([spec], [raw_log([topic0(spec), word(5)], data)]))
    assert row[7] == (5).to_bytes(20, "big")
    got = row[9] if neighbours else row[8]
    if sql == "jsonb":
        got = json.loads(got)
    assert got == expected
    assert spec.params[2 if neighbours else 1].sql_type == sql
    if neighbours:
        assert (row[8], row[10]) == (65535, "end")


def test_decode_keeps_json_integers_exact() -> None:
    (spec,) = event_specs("C", [event("E", inp("v", "uint256[]"))])
    row = only_row(run([spec], [raw_log([topic0(spec)], encode(["uint256[]"], [[MAX256]]))]))
    assert row[-1] == f"[{MAX256}]"


def test_decode_builds_fixed_columns() -> None:
    log = raw_log([topic0(TRANSFER), word(1), word(2)], word(3), index=0x1F, block=0x10)
    log["address"] = ADDR.upper().replace("0X", "0x")
    row = only_row(run(ERC20, [log], contract="Token"))
    assert row == (
        10,
        16,
        BLOCK_TIME,
        bytes.fromhex("77" * 32),
        3,
        31,
        bytes.fromhex("ab" * 20),
        (1).to_bytes(20, "big"),
        (2).to_bytes(20, "big"),
        3,
    )


@pytest.mark.parametrize(
    ("type_", "topic", "expected"),
    [
        ("uint256", word(MAX256), MAX256),
        ("int8", word(-1), -1),
        ("int256", word(MIN256), MIN256),
        ("bool", word(1), True),
        ("address", word(bytes.fromhex("12" * 20)), bytes.fromhex("12" * 20)),
        ("bytes32", "0x" + "ee" * 32, b"\xee" * 32),
        ("string", "0x" + keccak256(b"hello").hex(), keccak256(b"hello")),
        ("bytes", "0x" + keccak256(b"\x01").hex(), keccak256(b"\x01")),
        ("uint256[]", "0x" + "aa" * 32, b"\xaa" * 32),
    ],
)
def test_decode_reads_indexed_values_from_topics(type_: str, topic: str, expected: Any) -> None:
    (spec,) = event_specs("C", [event("E", inp("v", type_, True))])
    assert only_row(run([spec], [raw_log([topic0(spec), topic], "0x")]))[-1] == expected


@pytest.mark.parametrize(
    ("topics", "data", "reason"),
    [
        (
            [word(1), word(2), word(3)],
            "0x",
            "Transfer(address,address,uint256): expected 3 topics, got 4",
        ),
        ([word(1)], word(3), "expected 3 topics, got 2"),
        ([word(1), word(2)], "0x" + "00" * 31, "data of 31 bytes, expected 32"),
        ([word(1), word(2)], word(3) + "00" * 32, "data of 64 bytes, expected 32"),
        ([word(2**160), word(2)], word(3), "from (address) has dirty high bytes"),
        ([word(1), "0x" + "00" * 20], word(3), "topic 2 is not 32 bytes"),
        ([word(1), word(2)], "0x" + "zz" * 32, "ValueError"),
    ],
    ids=[
        "erc721_transfer",
        "missing_topic",
        "short_data",
        "long_data",
        "dirty_address",
        "short_topic",
        "bad_hex",
    ],
)
def test_decode_counts_misfitting_logs_as_failures(
    topics: list[str], data: str, reason: str
) -> None:
    good = raw_log([topic0(TRANSFER), word(1), word(2)], word(9), index=1)
    bad = raw_log([topic0(TRANSFER), *topics], data, index=2)
    result = run(ERC20, [good, bad, good | {"logIndex": "0x3"}], contract="Token")
    assert result.count() == 2
    (failure,) = result.failures
    assert (failure.table, failure.block_number, failure.log_index, failure.tx_hash) == (
        "token_transfer",
        16,
        2,
        TX,
    )
    assert reason in failure.reason


def test_decode_counts_erc721_transfer_under_erc20_abi_as_failure() -> None:
    log = raw_log([topic0(TRANSFER), word(1), word(2), word(42)], "0x")
    result = run(ERC20, [log], contract="Token")
    assert result.rows == {}
    assert [f.reason for f in result.failures] == [
        "Transfer(address,address,uint256): expected 3 topics, got 4"
    ]


@pytest.mark.parametrize(
    ("param", "data", "reason"),
    [
        (inp("v", "uint8"), word(256), "v (uint8) exceeds 8 bits"),
        (inp("v", "uint64"), word(2**64), "v (uint64) exceeds 64 bits"),
        (inp("v", "int8"), word(128), "v (int8) out of range"),
        (inp("v", "int8"), word(-129), "v (int8) out of range"),
        (inp("v", "bool"), word(2), "v (bool) is not 0 or 1"),
        (inp("v", "address"), word(2**160), "v (address) has dirty high bytes"),
        (inp("v", "bytes1"), word(b"\x01\x02".ljust(32, b"\0")), "v (bytes1) has dirty padding"),
        (inp("v", "string"), word(64), "offset 64 outside data of 32 bytes"),
        (inp("v", "bytes"), word(16), "offset 16 outside data"),
        (
            inp("v", "bytes"),
            word(32) + word(33)[2:] + "00" * 32,
            "length 33 at offset 32 runs past data",
        ),
        (inp("v", "bytes"), word(32) + word(1)[2:] + "01" * 32, "nonzero padding after 1 bytes"),
        (inp("v", "bytes"), word(32) + word(2)[2:] + "ab", "runs past data"),
        (inp("v", "string[]"), word(32) + word(5)[2:], "InsufficientDataBytes"),
        (inp("v", "uint256[2]"), word(1), "data of 32 bytes, expected 64"),
        (
            inp(
                "v",
                "tuple",
                components=[{"name": "a", "type": "uint8"}, {"name": "b", "type": "bool"}],
            ),
            word(1) + word(2)[2:],
            "Boolean must be either",
        ),
    ],
)
def test_decode_rejects_dirty_or_malformed_values(
    param: dict[str, Any], data: str, reason: str
) -> None:
    (spec,) = event_specs("C", [event("E", param)])
    result = run([spec], [raw_log([topic0(spec)], data)])
    assert result.count() == 0
    (failure,) = result.failures
    assert reason in failure.reason
    assert failure.reason.startswith(spec.signature + ": ")


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"ok\xffok", "ok\ufffdok"),
        (b"a\x00b", "a\ufffdb"),
        (b"\xe2\x82", "\ufffd"),
    ],
)
def test_decode_repairs_invalid_utf8_and_nul_in_strings(raw: bytes, text: str) -> None:
    specs = event_specs("C", [event("S", inp("s", "string")), event("A", inp("a", "string[]"))])
    logs = [
        raw_log([topic0(specs[0])], encode(["bytes"], [raw]), index=0),
        raw_log([topic0(specs[1])], encode(["bytes[]"], [[raw]]), index=1),
    ]
    result = run(specs, logs)
    assert not result.failures
    assert result.rows["c_s"][0][-1] == text
    assert json.loads(result.rows["c_a"][0][-1]) == [text]


def test_decode_skips_unknown_addresses_and_unselected_events_silently() -> None:
    unselected = "0x" + keccak256(b"Approval(address,address,uint256)").hex()
    logs = [
        raw_log([topic0(TRANSFER), word(1), word(2)], word(3), address=OTHER, index=0),
        raw_log([unselected, word(1), word(2)], word(3), index=1),
        raw_log([], "0x", index=2),
        raw_log([topic0(TRANSFER), word(1), word(2)], word(3), index=3),
    ]
    result = run(ERC20, logs, contract="Token")
    assert result.failures == []
    assert [row[5] for row in result.rows["token_transfer"]] == [3]


@pytest.mark.parametrize(
    ("log_address", "mapped"),
    [
        (ADDR, ADDR),
        ("0x" + "AB" * 20, ADDR),
        ("0xAbAbabababababababababababababababababAB", ADDR),
    ],
)
def test_decode_matches_address_in_any_case(log_address: str, mapped: str) -> None:
    log = raw_log(
        [topic0(TRANSFER).upper().replace("0X", "0x"), word(1), word(2)],
        word(3),
        address=log_address,
    )
    result = Decoder(1, {"Token": ERC20}).decode([log], {mapped: ("Token",)}, {16: BLOCK_TIME})
    assert result.count() == 1


def test_decode_keeps_input_order_and_caches_per_block_and_tx() -> None:
    logs = []
    for i in range(6):
        log = raw_log([topic0(TRANSFER), word(i), word(2)], word(i), index=i, block=16 + i // 3)
        log["transactionHash"] = word(100 + i // 2)
        logs.append(log)
    times = {16: BLOCK_TIME, 17: datetime(2024, 5, 1, 12, 0, 12, tzinfo=UTC)}
    result = Decoder(1, {"Token": ERC20}).decode(logs, {ADDR: ("Token",)}, times)
    rows = result.rows["token_transfer"]
    assert [r[-1] for r in rows] == list(range(6))
    assert [r[1] for r in rows] == [16, 16, 16, 17, 17, 17]
    assert [r[2] for r in rows] == [times[16]] * 3 + [times[17]] * 3
    assert [r[3][-1] for r in rows] == [100, 100, 101, 101, 102, 102]
    assert result.count() == 6


def test_decode_requires_block_time_of_every_matched_block() -> None:
    log = raw_log([topic0(TRANSFER), word(1), word(2)], word(3), block=99)
    with pytest.raises(KeyError, match="no block time for block 99"):
        Decoder(1, {"Token": ERC20}).decode([log], {ADDR: ("Token",)}, {})


def test_decode_writes_overloads_to_their_own_tables() -> None:
    specs = event_specs("C", [event("Log", inp("a", "uint256")), event("Log", inp("a", "string"))])
    logs = [
        raw_log([topic0(specs[0])], encode(["uint256"], [7]), index=0),
        raw_log([topic0(specs[1])], encode(["string"], ["seven"]), index=1),
    ]
    result = run(specs, logs)
    assert {t: [r[-1] for r in rows] for t, rows in result.rows.items()} == {
        specs[0].table: [7],
        specs[1].table: ["seven"],
    }
    assert specs[0].table != specs[1].table


def test_decode_writes_one_log_to_every_contract_configured_at_its_address() -> None:
    other = event_specs(
        "Mirror",
        [
            event(
                "Transfer",
                inp("a", "address", True),
                inp("b", "address", True),
                inp("c", "uint256"),
            )
        ],
    )
    log = raw_log([topic0(TRANSFER), word(1), word(2)], word(3))
    decoder = Decoder(1, {"Token": ERC20, "Mirror": other})
    result = decoder.decode([log], {ADDR: ("Token", "Mirror")}, {16: BLOCK_TIME})
    assert sorted(result.rows) == ["mirror_transfer", "token_transfer"]


def test_decode_refuses_address_mapped_to_unconfigured_contract() -> None:
    log = raw_log([topic0(TRANSFER), word(1), word(2)], word(3))
    with pytest.raises(ValueError, match="unknown contract 'Nope'"):
        Decoder(1, {"Token": ERC20}).decode([log], {ADDR: ("Nope",)}, {16: BLOCK_TIME})


ANON_ABI = [
    event("Named", inp("x", "uint256", True)),
    event("Pair", inp("a", "uint256", True), inp("b", "uint256", True), anonymous=True),
    event("Note", inp("who", "address", True), inp("text", "string"), anonymous=True),
    event("Flag", inp("on", "bool"), anonymous=True),
]


@pytest.mark.parametrize(
    ("topics", "data", "table", "value"),
    [
        ([word(1), word(2)], "0x", "c_pair", 2),
        ([word(bytes.fromhex("12" * 20))], encode(["string"], ["hi"]), "c_note", "hi"),
        ([], word(1), "c_flag", True),
        ([], word(2), None, None),  # not a bool: matches no anonymous event
        ([word(1), word(2), word(3)], "0x", None, None),
        ([word(2**200)], encode(["string"], ["hi"]), None, None),  # not an address
    ],
)
def test_decode_matches_anonymous_events_by_shape(
    topics: list[str], data: bytes | str, table: str | None, value: Any
) -> None:
    specs = event_specs("C", ANON_ABI)
    named = raw_log([topic0(specs[0]), word(9)], "0x", index=0)
    result = run(specs, [named, raw_log(topics, data, index=1)])
    assert result.failures == []
    assert [r[-1] for r in result.rows["c_named"]] == [9]
    if table is None:
        assert result.count() == 1
    else:
        assert result.rows[table][0][-1] == value
        assert result.count() == 2
