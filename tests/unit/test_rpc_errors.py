"""The provider error catalogue: recorded messages -> error kind and range hint."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from indexer.rpc.errors import (
    CATALOGUE,
    MethodUnsupported,
    NodeBehind,
    RangeTooLarge,
    RateLimited,
    RpcError,
    RpcFatal,
    RpcServerError,
    RpcTimeout,
    RpcTransportError,
    clamp_hint,
    classify,
    parse_retry_after,
)
from indexer.types import BlockRange

REQ = BlockRange(0x1000, 0x4FFF)  # 4096-20479

# (http status, JSON-RPC code, message, expected kind, expected hint)
RECORDED = [
    (200, -32005, "query returned more than 10000 results. Try with this block range "
     "[0x1000, 0x10FF].", RangeTooLarge, BlockRange(0x1000, 0x10FF)),
    (200, -32005, "query returned more than 10000 results. Try with this block range "
     "[0x1000, 0x10ff].", RangeTooLarge, BlockRange(0x1000, 0x10FF)),
    (200, -32602, "Log response size exceeded. You can make eth_getLogs requests with up to a "
     "2K block range and no limit on the response size, or you can receive unlimited logs "
     "within a 10K block range", RangeTooLarge, None),
    (200, -32602, "Log response size exceeded. this block range should work: [0x1000, 0x17cf]",
     RangeTooLarge, BlockRange(0x1000, 0x17CF)),
    (200, -32614, "eth_getLogs is limited to a 10,000 range", RangeTooLarge,
     BlockRange(0x1000, 0x1000 + 9999)),
    (200, -32000, "eth_getLogs and eth_newFilter are limited to a 10,000 blocks range",
     RangeTooLarge, BlockRange(0x1000, 0x1000 + 9999)),
    (413, None, "Request Entity Too Large", RangeTooLarge, None),
    (200, -32000, "block range is too wide", RangeTooLarge, None),
    (200, -32000, "exceed maximum block range: 2048", RangeTooLarge,
     BlockRange(0x1000, 0x1000 + 2047)),
    (200, -32602, "ranges over 10000 blocks are not supported", RangeTooLarge,
     BlockRange(0x1000, 0x1000 + 9999)),
    (200, -32000, "requested too many blocks from 4096 to 20479, maximum is set to 1000",
     RangeTooLarge, BlockRange(0x1000, 0x1000 + 999)),
    (200, -32000, "response size exceeded", RangeTooLarge, None),
    (200, -32000, "query exceeds max results 20000, retry with the range 4096-5000",
     RangeTooLarge, None),
    (400, -32602, "Log response size exceeded.", RangeTooLarge, None),
    (429, None, "Too Many Requests", RateLimited, None),
    (200, -32005, "limit exceeded", RateLimited, None),
    (200, -32005, "project ID request rate exceeded", RateLimited, None),
    (200, 429, "Your app has exceeded its compute units per second capacity.", RateLimited, None),
    (200, -32016, "rate limit exceeded, please retry later", RateLimited, None),
    (200, -32000, "header not found", NodeBehind, None),
    (200, -32000, "unknown block", NodeBehind, None),
    (200, -32000, "block not found", NodeBehind, None),
    (200, -32000, "requested to block 0x4fff after last accepted block 0x4ff0", NodeBehind, None),
    (200, -32601, "the method eth_getLogs does not exist/is not available", MethodUnsupported,
     None),
    (200, -32000, "method trace_block not supported", MethodUnsupported, None),
    (401, None, "Unauthorized", RpcFatal, None),
    (403, None, "Forbidden", RpcFatal, None),
    (200, -32602, "invalid argument 0: hex string without 0x prefix", RpcFatal, None),
    (502, None, "Bad Gateway", RpcTransportError, None),
    (200, -32603, "internal error", RpcServerError, None),
]


@pytest.mark.parametrize(("status", "code", "message", "kind", "hint"), RECORDED)
def test_classify_recorded_message(
    status: int, code: int | None, message: str, kind: type[RpcError], hint: BlockRange | None
) -> None:
    error = None if code is None else {"code": code, "message": message}
    body = None if code is not None else message
    err = classify(status, error, body, {}, requested=REQ)
    assert type(err) is kind
    assert getattr(err, "hint", None) == hint


def test_every_catalogue_entry_has_a_criterion() -> None:
    for entry in CATALOGUE:
        assert entry.pattern or entry.code is not None or entry.status is not None, entry


def test_error_data_is_matched_too() -> None:
    err = classify(200, {"code": -32000, "message": "failed", "data": "header not found"}, None)
    assert isinstance(err, NodeBehind)


def test_retryable_is_a_property_of_the_type() -> None:
    retryable = (RangeTooLarge, RateLimited, NodeBehind, RpcTimeout, RpcTransportError)
    assert all(kind.retryable for kind in retryable)
    assert not any(kind.retryable for kind in (MethodUnsupported, RpcFatal))


def test_error_text_carries_context() -> None:
    err = NodeBehind("header not found", endpoint="0:host", method="eth_getLogs",
                     what="1000-1999")
    assert str(err) == "eth_getLogs 1000-1999 on endpoint 0:host: header not found"


@pytest.mark.parametrize(
    ("hint", "requested", "expected"),
    [
        (BlockRange(10, 19), BlockRange(10, 99), BlockRange(10, 19)),
        (BlockRange(5, 19), BlockRange(10, 99), BlockRange(10, 19)),  # clamped to the start
        (BlockRange(10, 200), BlockRange(10, 99), None),  # not smaller than the request
        (BlockRange(10, 99), BlockRange(10, 99), None),
        (BlockRange(20, 29), BlockRange(10, 99), None),  # not a prefix
        (BlockRange(0, 5), BlockRange(10, 99), None),  # outside the request
        (BlockRange(10, 10), BlockRange(10, 99), BlockRange(10, 10)),
        (None, BlockRange(10, 99), None),
    ],
)
def test_hint_is_clamped_to_a_proper_prefix(
    hint: BlockRange | None, requested: BlockRange, expected: BlockRange | None
) -> None:
    assert clamp_hint(hint, requested) == expected


def test_hint_outside_request_falls_back_to_halving() -> None:
    msg = "query returned more than 10000 results. Try with this block range [0x0, 0x5]."
    err = classify(200, {"code": -32005, "message": msg}, None, requested=BlockRange(10, 99))
    assert isinstance(err, RangeTooLarge) and err.hint is None


def test_hint_without_requested_range_is_none() -> None:
    msg = "exceed maximum block range: 2048"
    err = classify(200, {"code": -32000, "message": msg}, None)
    assert isinstance(err, RangeTooLarge) and err.hint is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), (" 1.5 ", 1.5), ("-4", 0.0), ("", None), (None, None), ("soon", None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 7, usegmt=True), now=now) == pytest.approx(7.0)
    assert parse_retry_after(formatdate(now - 7, usegmt=True), now=now) == 0.0


def test_rate_limit_reads_retry_after_header_in_any_case() -> None:
    err = classify(429, None, "slow down", {"retry-after": "2"})
    assert isinstance(err, RateLimited) and err.retry_after == 2.0
    err = classify(429, None, "slow down", {"Retry-After": "5"})
    assert isinstance(err, RateLimited) and err.retry_after == 5.0
    err = classify(429, None, "slow down", None)
    assert isinstance(err, RateLimited) and err.retry_after is None
