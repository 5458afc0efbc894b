"""Answer parsing and the checks every answer passes before use."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from indexer.rpc import wire
from indexer.rpc.errors import BadAnswer, DuplicateLogIndex
from indexer.rpc.wire import (
    check_batch_answer,
    check_logs,
    parse_header,
    parse_quantity,
)
from indexer.types import BlockRange

H1 = "0x" + "11" * 32
H2 = "0x" + "22" * 32


def block(n: int = 0x10, **extra: Any) -> dict[str, Any]:
    return {"number": hex(n), "hash": H1, "parentHash": H2, "timestamp": "0x65a0b3c0",
            "logsBloom": "0x" + "00" * 255 + "ff", "transactions": [], **extra}


def log(bn: int, li: int, **extra: Any) -> dict[str, Any]:
    return {"address": "0x" + "ab" * 20, "topics": [H1], "data": "0x", "blockNumber": hex(bn),
            "blockHash": "0x" + f"{bn:064x}", "transactionHash": H2, "transactionIndex": "0x0",
            "logIndex": hex(li), "removed": False, **extra}


@pytest.mark.parametrize(("value", "expected"), [("0x0", 0), ("0x1a", 26), ("0XFF", 255)])
def test_parse_quantity(value: str, expected: int) -> None:
    assert parse_quantity(value) == expected


@pytest.mark.parametrize("value", ["", "0x", "12", "0xzz", None, 12])
def test_parse_quantity_rejects_non_hex(value: Any) -> None:
    with pytest.raises(BadAnswer):
        parse_quantity(value)


def test_parse_header() -> None:
    header = parse_header(block())
    assert header.number == 16
    assert header.hash == bytes.fromhex("11" * 32)
    assert header.parent_hash == bytes.fromhex("22" * 32)
    assert header.timestamp == 0x65A0B3C0
    assert header.logs_bloom is not None and header.logs_bloom[-1] == 0xFF


def test_parse_header_without_bloom() -> None:
    obj = block()
    del obj["logsBloom"]
    assert parse_header(obj).logs_bloom is None


@pytest.mark.parametrize(
    "bad", [None, [], block(hash="0x12"), block(parentHash=None), block(number="16"),
            block(logsBloom="0x00"), block(hash="0x" + "zz" * 32)],
)
def test_parse_header_rejects_malformed(bad: Any) -> None:
    with pytest.raises(BadAnswer):
        parse_header(bad)


def test_check_logs_accepts_good_logs() -> None:
    logs = [log(10, 0), log(10, 1), log(12, 0), log(19, 5)]
    check_logs(logs, BlockRange(10, 19))  # type: ignore[arg-type]
    check_logs([], BlockRange(10, 19))


def _without(key: str) -> dict[str, Any]:
    bad = log(11, 0)
    del bad[key]
    return bad


@pytest.mark.parametrize(
    ("logs", "reason"),
    [
        ([log(9, 0)], "outside"),
        ([log(20, 0)], "outside"),
        ([log(10, 0, removed=True)], "removed"),
        ([log(10, 2), log(10, 1)], "out of order"),
        ([log(12, 0), log(11, 0)], "out of block order"),
        ([log(10, 0), log(10, 1, blockHash=H1)], "block hash differs"),
        ([log(10, 0, blockNumber="ten")], "malformed"),
        ([log(10, 0, blockNumber=None)], "malformed"),
        ([log(10, 0, logIndex="0xg")], "malformed"),
        ([log(10, 0, transactionIndex=None)], "malformed"),
        ([log(10, 0, blockHash="0x12")], "blockHash"),
        ([log(10, 0, address="0x12")], "malformed"),
        ([log(10, 0, transactionHash="0x12")], "malformed"),
        ([log(10, 0, data="00")], "malformed"),
        ([log(10, 0, topics="0x")], "malformed"),
        ([log(10, 0, topics=[H1] * 5)], "malformed"),
        ([_without("blockNumber")], "KeyError"),
        ([_without("address")], "KeyError"),
        ([_without("data")], "KeyError"),
        ([_without("topics")], "KeyError"),
        ([_without("transactionHash")], "KeyError"),
        (["not a log"], "malformed"),
        ({"not": "a list"}, "expected a list"),
    ],
)
def test_check_logs_rejects_bad_answers(logs: Any, reason: str) -> None:
    with pytest.raises(BadAnswer, match=reason) as info:
        check_logs(logs, BlockRange(10, 19))
    assert info.value.retryable


@pytest.mark.parametrize(("logs", "kind"), [
    ([log(10, 0), log(10, 1), log(10, 1)], "copies of one log"),
    ([log(10, 0), log(10, 1), log(10, 1, transactionHash="0x" + "77" * 32)], "two different logs"),
])
def test_logs_sharing_a_log_index_name_their_block_and_are_not_asked_again(
        logs: Any, kind: str) -> None:
    with pytest.raises(DuplicateLogIndex, match=f"block 10: logs 1 and 2 of the answer share "
                                                f"logIndex 1 \\({kind}, transactions") as info:
        check_logs(logs, BlockRange(10, 19))
    err = info.value
    assert (err.block, err.log_index, err.reason) == (10, 1, "log_index")
    assert not err.retryable  # the block is read from its receipts instead


def test_check_batch_answer_maps_ids_in_any_order() -> None:
    replies = check_batch_answer([{"id": 2, "result": "b"}, {"id": 1, "result": "a"}], [1, 2])
    assert replies[1]["result"] == "a" and replies[2]["result"] == "b"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ([{"id": 1, "result": "a"}], "lacks 1 of 2"),
        ([{"id": 1, "result": "a"}, {"id": 1, "result": "a"}], "two replies"),
        ([{"id": 1, "result": "a"}, {"id": 3, "result": "c"}], "unexpected"),
        ({"id": 1, "result": "a"}, "expected a batch"),
        ([None, {"id": 2}], "unexpected"),
    ],
)
def test_check_batch_answer_rejects_incomplete(answer: Any, reason: str) -> None:
    with pytest.raises(BadAnswer, match=reason) as info:
        check_batch_answer(answer, [1, 2])
    assert info.value.retryable


def _answer(n: int, sep: bytes = b",") -> bytes:
    logs = [
        {"address": "0x" + "ab" * 20, "topics": ["0x" + f"{i:064x}"], "data": "0x" + "00" * 64,
         "blockNumber": hex(i // 10), "logIndex": hex(i % 10)}
        for i in range(n)
    ]
    body = sep.join(orjson.dumps(x) for x in logs)
    return b'{"jsonrpc":"2.0","id":7,"result":[' + body + b"]}"


@pytest.mark.parametrize("n", [0, 1, 3, 40_000])
def test_loads_of_a_large_answer_equals_orjson(n, monkeypatch):
    monkeypatch.setattr(wire, "LARGE_ANSWER", 0)
    monkeypatch.setattr(wire, "_SLICE", 1000)
    raw = _answer(n)
    assert wire.loads(raw) == orjson.loads(raw)


def test_loads_falls_back_when_a_cut_lands_inside_a_string(monkeypatch):
    monkeypatch.setattr(wire, "LARGE_ANSWER", 0)
    monkeypatch.setattr(wire, "_SLICE", 10)
    raw = b'{"jsonrpc":"2.0","id":1,"result":[{"a":"x},{y"},{"a":"z"},{"a":"w},{"}]}'
    assert wire.loads(raw) == orjson.loads(raw)


def test_loads_keeps_non_list_results_and_errors(monkeypatch):
    monkeypatch.setattr(wire, "LARGE_ANSWER", 0)
    for raw in (b'{"jsonrpc":"2.0","id":1,"result":"0x10"}',
                b'{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"x [1]"}}',
                b'[{"jsonrpc":"2.0","id":1,"result":[]}]'):
        assert wire.loads(raw) == orjson.loads(raw)


def test_loads_raises_on_truncated_large_answer(monkeypatch):
    monkeypatch.setattr(wire, "LARGE_ANSWER", 0)
    monkeypatch.setattr(wire, "_SLICE", 1000)
    raw = _answer(1000)[:-5000]
    with pytest.raises(orjson.JSONDecodeError):
        wire.loads(raw)
