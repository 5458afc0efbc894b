"""The provider error catalogue: recorded messages -> error kind and range hint."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from indexer.rpc.classify import clamp_hint, classify, match_entry, parse_retry_after
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
     "within a 10K block range", RangeTooLarge, BlockRange(0x1000, 0x1000 + 1999)),
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
     RangeTooLarge, BlockRange(4096, 5000)),
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
    (200, -32602, "BlockOutOfRangeError: block height is 119 but requested was 120", NodeBehind,
     None),
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


# One recorded answer per catalogue entry at least, as providers send them:
# (provider, HTTP status, JSON-RPC error object or None, body text, kind, hint, stated limit)
PROVIDERS: list[tuple[str, int, dict | None, str | None, type[RpcError], BlockRange | None,
                      int | None]] = [
    ("infura -32005", 200, {"code": -32005, "message": "query returned more than 10000 results. "
     "Try with this block range [0x1000, 0x11F3]."}, None, RangeTooLarge,
     BlockRange(0x1000, 0x11F3), None),
    ("infura -32602", 200, {"code": -32602, "message": "query returned more than 10000 results. "
     "Try with this block range [0x1000, 0x1001]."}, None, RangeTooLarge,
     BlockRange(0x1000, 0x1001), None),
    ("alchemy hint", 200, {"code": -32600, "message": "You can make eth_getLogs requests with up "
     "to a 500 block range. Based on your parameters, this block range should work: [0x1000, "
     "0x11f3]"}, None, RangeTooLarge, BlockRange(0x1000, 0x11F3), None),
    ("alchemy free", 200, {"code": -32600, "message": "Under the Free tier plan, you can make "
     "eth_getLogs requests with up to a 10 block range."}, None, RangeTooLarge,
     BlockRange(0x1000, 0x1009), 10),
    ("reth", 200, {"code": -32602, "message": "query exceeds max results 20000, retry with the "
     "range 4096-4200"}, None, RangeTooLarge, BlockRange(4096, 4200), None),
    ("quicknode -32614", 200, {"code": -32614, "message": "eth_getLogs is limited to a 10,000 "
     "range"}, None, RangeTooLarge, BlockRange(0x1000, 0x1000 + 9999), 10_000),
    ("blockpi", 200, {"code": -32000, "message": "eth_getLogs is limited to 1024 block range. "
     "Please check the parameter requirements at https://docs.blockpi.io/"}, None,
     RangeTooLarge, BlockRange(0x1000, 0x1000 + 1023), 1024),
    ("avalanche", 200, {"code": -32000, "message": "requested too many blocks from 4096 to "
     "20479, maximum is set to 2048"}, None, RangeTooLarge, BlockRange(0x1000, 0x1000 + 2047),
     2048),
    ("cloudflare", 200, {"code": -32047, "message": "Max range: 800"}, None, RangeTooLarge,
     BlockRange(0x1000, 0x1000 + 799), 800),
    ("drpc", 200, {"code": 35, "message": "ranges over 10000 blocks are not supported on "
     "freetier"}, None, RangeTooLarge, BlockRange(0x1000, 0x1000 + 9999), 10_000),
    ("publicnode", 200, {"code": -32000, "message": "exceed maximum block range: 50000"}, None,
     RangeTooLarge, None, 50_000),
    ("hyperliquid", 200, {"code": -32000, "message": "query exceeds max block range 1000"}, None,
     RangeTooLarge, BlockRange(0x1000, 0x1000 + 999), 1000),
    ("coinbase", 200, {"code": -32000, "message": "please limit the query to at most 1000 "
     "blocks"}, None, RangeTooLarge, BlockRange(0x1000, 0x1000 + 999), 1000),
    ("thirdweb", 200, {"code": -32602, "message": "Maximum allowed number of requested blocks "
     "is 5000"}, None, RangeTooLarge, BlockRange(0x1000, 0x1000 + 4999), 5000),
    ("moonriver", 200, {"code": -32603, "message": "block range is too wide (maximum 1024)"},
     None, RangeTooLarge, BlockRange(0x1000, 0x1000 + 1023), 1024),
    ("swell", 200, {"code": -32000, "message": "block range greater than 1000 max"}, None,
     RangeTooLarge, BlockRange(0x1000, 0x1000 + 999), 1000),
    ("blast paid", 200, {"code": -32000, "message": "eth_getLogs exceeds the range allowed for "
     "your plan (16384 > 5000)"}, None, RangeTooLarge, BlockRange(0x1000, 0x1000 + 4999), 5000),
    ("harmony", 200, {"code": -32000, "message": "GetLogs query must be smaller than size 1024"},
     None, RangeTooLarge, BlockRange(0x1000, 0x1000 + 1023), 1024),
    ("merkle", 200, {"code": -32000, "message": "eth_getLogs range is too large, max is 1k "
     "blocks"}, None, RangeTooLarge, BlockRange(0x1000, 0x1000 + 999), 1000),
    ("ankr tac", 200, {"code": -32000, "message": "maximum [from, to] blocks distance: 3000"},
     None, RangeTooLarge, BlockRange(0x1000, 0x1000 + 2999), 3000),
    ("nethermind-style", 200, {"code": -32000, "message": "too many blocks requested, max is "
     "2000"}, None, RangeTooLarge, BlockRange(0x1000, 0x1000 + 1999), 2000),
    ("geth-style", 200, {"code": -32000, "message": "query returned more than 10000 results"},
     None, RangeTooLarge, None, None),
    ("alchemy size", 200, {"code": -32602, "message": "Log response size exceeded."}, None,
     RangeTooLarge, None, None),
    ("arbitrum", 200, {"code": -32000, "message": "logs matched by query exceeds limit of 10000"},
     None, RangeTooLarge, None, None),
    ("ankr", 200, {"code": -32600, "message": "block range is too wide"}, None, RangeTooLarge,
     None, None),
    ("base", 200, {"code": -32000, "message": "block range too large"}, None, RangeTooLarge,
     None, None),
    ("infura timeout", 200, {"code": -32000, "message": "query timeout exceeded. Consider "
     "reducing your block range"}, None, RangeTooLarge, None, None),
    ("chainstack", 200, {"code": -32000, "message": "Block range limit exceeded."}, None,
     RangeTooLarge, None, None),
    ("optimism", 200, {"code": -32000, "message": "backend response too large"}, None,
     RangeTooLarge, None, None),
    ("quicknode 413", 413, None, "Request Entity Too Large", RangeTooLarge, None, None),
    ("alchemy 429", 429, {"code": 429, "message": "Your app has exceeded its compute units per "
     "second capacity."}, None, RateLimited, None, None),
    ("alchemy code 429", 200, {"code": 429, "message": "Your app has exceeded its compute units "
     "per second capacity."}, None, RateLimited, None, None),
    ("quicknode -32007", 200, {"code": -32007, "message": "100/second request limit reached - "
     "reduce calls per second or upgrade your account at quicknode.com"}, None, RateLimited,
     None, None),
    ("ankr -32090", 200, {"code": -32090, "message": "Too many requests, reason: call rate limit "
     "exhausted, retry in 10s"}, None, RateLimited, None, None),
    ("infura rate", 200, {"code": -32005, "message": "project ID request rate exceeded",
     "data": {"see": "https://infura.io/docs", "current_rps": 13.3, "allowed_rps": 10.0,
              "backoff_seconds": 30.0}}, None, RateLimited, None, None),
    ("infura -32005 bare", 200, {"code": -32005, "message": "something new"}, None, RateLimited,
     None, None),
    ("geth", 200, {"code": -32000, "message": "header not found"}, None, NodeBehind, None, None),
    ("base 503", 200, {"code": -32011, "message": "no backend is currently healthy to serve "
     "traffic"}, None, RpcTransportError, None, None),
    ("drpc timeout", 200, {"code": 35, "message": "Request timeout on the free tier, please "
     "upgrade your tier to the paid one"}, None, RpcTimeout, None, None),
    ("-32601", 200, {"code": -32601, "message": "the method trace_block does not exist"}, None,
     MethodUnsupported, None, None),
    ("whitelist", 200, {"code": -32000, "message": "method eth_getLogs is not whitelisted"},
     None, MethodUnsupported, None, None),
    ("http 401", 401, None, "invalid project id", RpcFatal, None, None),
    ("http 403", 403, None, "Forbidden", RpcFatal, None, None),
    ("bad key", 200, {"code": -32000, "message": "invalid API key"}, None, RpcFatal, None, None),
    ("-32602", 200, {"code": -32602, "message": "invalid argument 0: hex string has leading "
     "zero digits"}, None, RpcFatal, None, None),
    ("-32600", 200, {"code": -32600, "message": "invalid request"}, None, RpcFatal, None, None),
    ("-32700", 200, {"code": -32700, "message": "parse error"}, None, RpcTransportError, None,
     None),
]


@pytest.mark.parametrize(("provider", "status", "error", "body", "kind", "hint", "limit"),
                         PROVIDERS, ids=[p[0] for p in PROVIDERS])
def test_classify_provider_shape(provider: str, status: int, error: dict | None,
                                 body: str | None, kind: type[RpcError],
                                 hint: BlockRange | None, limit: int | None) -> None:
    err = classify(status, error, body, {}, requested=REQ)
    assert type(err) is kind, provider
    assert getattr(err, "hint", None) == hint
    assert getattr(err, "limit", None) == limit


def test_every_catalogue_entry_has_a_recorded_example() -> None:
    hit = {id(match_entry(s, e, b)) for _, s, e, b, *_ in PROVIDERS + [
        (m, s, None if c is None else {"code": c, "message": m}, m if c is None else None)
        for s, c, m, *_ in RECORDED]}
    missing = [e.provider for e in CATALOGUE if id(e) not in hit]
    assert not missing, missing


def test_retry_after_comes_from_the_header_the_error_data_or_the_message() -> None:
    infura = {"code": -32005, "message": "project ID request rate exceeded",
              "data": {"backoff_seconds": 30.0}}
    err = classify(200, infura, None)
    assert isinstance(err, RateLimited) and err.retry_after == 30.0
    ankr = {"code": -32090, "message": "Too many requests, retry in 10s"}
    err = classify(200, ankr, None)
    assert isinstance(err, RateLimited) and err.retry_after == 10.0
    err = classify(429, None, "slow down, try again in 500ms", {})
    assert isinstance(err, RateLimited) and err.retry_after == 0.5


def test_unknown_errors_are_retried_unless_they_are_plain_client_errors() -> None:
    assert type(classify(200, {"code": -32099, "message": "something odd"}, None)) is RpcServerError
    assert type(classify(400, {"code": -32099, "message": "something odd"}, None)) is RpcServerError
    assert type(classify(408, None, "")) is RpcTimeout
    assert type(classify(418, None, "teapot")) is RpcFatal
