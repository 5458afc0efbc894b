"""The RPC client against a small JSON-RPC node served by aiohttp inside the test."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from indexer import metrics
from indexer.config import RpcEndpoint
from indexer.rpc import (
    MethodUnsupported,
    RpcClient,
    RpcFatal,
    RpcTransportError,
    endpoint_label,
)
from indexer.types import BlockRange

ADDR_A = "0x" + "aa" * 20
ADDR_B = "0x" + "bb" * 20
TOPIC_X = "0x" + "01" * 32
TOPIC_Y = "0x" + "02" * 32
HEAD = 999


def make_logs() -> list[dict[str, Any]]:
    """Block b holds b % 4 logs, alternating addresses and topic0s."""
    logs = []
    for b in range(HEAD + 1):
        for li in range(b % 4):
            logs.append({
                "address": ADDR_A if li % 2 == 0 else ADDR_B,
                "topics": [TOPIC_X if (b + li) % 3 else TOPIC_Y, "0x" + f"{b:064x}"],
                "data": "0x" + f"{li:064x}", "blockNumber": hex(b),
                "blockHash": "0x" + f"{b + 1:064x}", "transactionHash": "0x" + f"{b:064x}",
                "transactionIndex": hex(li), "logIndex": hex(li), "removed": False,
            })
    return logs


ALL_LOGS = make_logs()


class FakeNode:
    """A JSON-RPC node. ``faults`` are consumed one per HTTP request, before answering."""

    def __init__(self, *, max_range: int | None = None, style: str = "infura") -> None:
        self.max_range = max_range
        self.style = style
        self.bloom: str | None = None  # logsBloom of every header, when set
        self.faults: list[str] = []
        self.calls: list[tuple[str, list[Any]]] = []
        self.requests = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    def url(self, path: str = "/v3/SECRETKEY?apikey=SECRET2") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get_logs_calls(self) -> list[BlockRange]:
        return [BlockRange(int(p[0]["fromBlock"], 16), int(p[0]["toBlock"], 16))
                for m, p in self.calls if m == "eth_getLogs"]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        fault = self.faults.pop(0) if self.faults else None
        if fault == "429":
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "1"})
        if fault == "500":
            return web.Response(status=500, text="upstream failed")
        if fault == "403":
            return web.Response(status=403, text=f"Forbidden for {request.path_qs}")
        if fault == "sleep":
            await asyncio.sleep(1.0)
        doc = orjson.loads(await request.read())
        if isinstance(doc, list):
            replies: Any = [self.reply(call, fault) for call in doc]
            if fault == "drop":
                replies = replies[1:]
        else:
            replies = self.reply(doc, fault)
        body = orjson.dumps(replies)
        if fault == "truncated":
            body = body[: len(body) // 2]
        return web.Response(body=body, content_type="application/json")

    def reply(self, call: dict[str, Any], fault: str | None) -> dict[str, Any]:
        method, params = call["method"], call["params"]
        self.calls.append((method, params))
        try:
            result = self.answer(method, params, fault)
        except LookupError as e:
            code, message = e.args
            return {"jsonrpc": "2.0", "id": call["id"], "error": {"code": code, "message": message}}
        return {"jsonrpc": "2.0", "id": call["id"], "result": result}

    def answer(self, method: str, params: list[Any], fault: str | None) -> Any:
        if method == "eth_chainId":
            return "0xa86a"
        if method == "eth_blockNumber":
            return hex(HEAD)
        if method == "eth_getBlockByNumber":
            n = HEAD if params[0] in ("latest", "finalized", "safe") else int(params[0], 16)
            if n > HEAD or fault == "null":
                return None
            header = {"number": hex(n), "hash": "0x" + f"{n + 1:064x}",
                      "parentHash": "0x" + f"{n:064x}", "timestamp": hex(1_700_000_000 + 2 * n),
                      # one transaction per block; this node serves no receipts
                      "transactions": ["0x" + f"{n + 7:064x}"]}
            if self.bloom is not None:
                header["logsBloom"] = self.bloom
            return header
        if method == "eth_getLogs":
            return self.logs(params[0], fault)
        if method == "eth_badParams":
            raise LookupError(-32602, "invalid argument 0: hex string without 0x prefix")
        raise LookupError(-32601, f"the method {method} does not exist/is not available")

    def logs(self, flt: dict[str, Any], fault: str | None) -> list[dict[str, Any]]:
        lo, hi = int(flt["fromBlock"], 16), int(flt["toBlock"], 16)
        if self.max_range is not None and hi - lo + 1 > self.max_range:
            if self.style == "infura":
                raise LookupError(-32005, "query returned more than 10000 results. Try with this "
                                  f"block range [{hex(lo)}, {hex(lo + self.max_range - 1)}].")
            raise LookupError(-32602, "Log response size exceeded. You can make eth_getLogs "
                              "requests with up to a 2K block range and no limit on the response "
                              "size, or you can receive unlimited logs within a 10K block range")
        found = [
            log for log in ALL_LOGS
            if lo <= int(log["blockNumber"], 16) <= hi
            and ("address" not in flt or log["address"] in flt["address"])
            and ("topics" not in flt or log["topics"][0] in flt["topics"][0])
        ]
        if fault == "outside":
            found = [{**ALL_LOGS[0], "blockNumber": hex(hi + 1)}]
        if fault == "droptip":
            found = [log for log in found if int(log["blockNumber"], 16) != hi]
        if fault == "badhash":
            found = [{**log, "blockHash": "0x" + "ee" * 32} for log in found]
        if fault == "foreign" and found:
            found = [{**found[0], "address": "0x" + "cc" * 20}, *found[1:]]
        return found

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def node() -> AsyncIterator[FakeNode]:
    fake = FakeNode()
    await fake.start()
    yield fake
    await fake.stop()


def client(*urls: str, chain: str = "test", **kw: Any) -> RpcClient:
    opts: dict[str, Any] = {"timeout": 5.0, "max_retries": 4, "backoff_base": 0.01,
                            "backoff_max": 0.05, **kw}
    return RpcClient([RpcEndpoint(u) for u in urls], chain=chain, **opts)


def expected(lo: int, hi: int, addresses: list[str] | None = None,
             topic0s: list[str] | None = None) -> list[dict[str, Any]]:
    return [log for log in ALL_LOGS if lo <= int(log["blockNumber"], 16) <= hi
            and (addresses is None or log["address"] in addresses)
            and (topic0s is None or log["topics"][0] in topic0s)]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample(chain: str, endpoint: str, method: str, outcome: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "indexer_rpc_requests_total",
        {"chain": chain, "endpoint": endpoint, "method": method, "outcome": outcome})
    return value or 0.0


def test_endpoint_label_keeps_host_and_index_only() -> None:
    assert endpoint_label("https://user:pw@api.avax.network/ext/bc/C/rpc?key=1", 0) == (
        "0:api.avax.network")
    assert endpoint_label("https://a1b2c3d4e5f6a7b8c9d0.quiknode.pro/KEY/", 2) == (
        "2:***.quiknode.pro")  # a key in the host name
    assert endpoint_label("https://eth-mainnet.g.alchemy.com/v2/KEY", 1) == (
        "1:eth-mainnet.g.alchemy.com")
    assert endpoint_label("http://127.0.0.1:8545", 3) == "3:127.0.0.1"
    assert endpoint_label("not a url", 1) == "1:unknown"


async def test_get_logs_returns_every_log_in_order(node: FakeNode) -> None:
    async with client(node.url()) as rpc:
        assert await rpc.get_logs(BlockRange(0, HEAD), None, None) == ALL_LOGS
        logs = await rpc.get_logs(BlockRange(100, 300), [ADDR_B], [TOPIC_X])
    assert logs == expected(100, 300, [ADDR_B], [TOPIC_X]) and logs
    last_get_logs = [p for m, p in node.calls if m == "eth_getLogs"][-1]
    assert last_get_logs[0] == {"address": [ADDR_B], "topics": [[TOPIC_X]],
                                    "fromBlock": "0x64", "toBlock": "0x12c"}


async def test_get_logs_splits_by_the_infura_hint(node: FakeNode) -> None:
    node.max_range = 100
    async with client(node.url(), chain="infura") as rpc:
        assert await rpc.get_logs(BlockRange(0, HEAD), None, None) == ALL_LOGS
    assert len(node.get_logs_calls()) == 11  # one refusal, then ten hint-sized parts
    assert sample("infura", "0:127.0.0.1", "eth_getLogs", "range_too_large") == 1


async def test_get_logs_follows_a_small_hint_piece_by_piece(node: FakeNode) -> None:
    node.max_range = 50  # 20 hint-sized parts: more than the client spreads out at once
    async with client(node.url()) as rpc:
        assert await rpc.get_logs(BlockRange(0, HEAD), None, None) == ALL_LOGS
    calls = node.get_logs_calls()
    assert sorted(r for r in calls if len(r) == 50) == list(BlockRange(0, HEAD).chunks(50))
    assert len(calls) == 20 + 1  # one refusal, then parts of the size the endpoint accepts


async def test_get_logs_halves_without_a_hint(node: FakeNode) -> None:
    node.max_range, node.style = 100, "alchemy"
    async with client(node.url()) as rpc:
        assert await rpc.get_logs(BlockRange(5, 804), [ADDR_A], None) == expected(5, 804, [ADDR_A])
    answered = [r for r in node.get_logs_calls() if len(r) <= 100]
    assert sum(len(r) for r in answered) == 800


async def test_rate_limit_waits_retry_after_and_never_splits(node: FakeNode) -> None:
    node.faults = ["429"]
    async with client(node.url(), chain="limited") as rpc:
        started = time.monotonic()
        assert await rpc.get_logs(BlockRange(0, 499), None, None) == expected(0, 499)
    assert time.monotonic() - started >= 0.9
    assert node.get_logs_calls() == [BlockRange(0, 499)]  # the 429 was answered before parsing
    assert sample("limited", "0:127.0.0.1", "eth_getLogs", "rate_limited") == 1


@pytest.mark.parametrize("fault", ["500", "truncated", "sleep", "outside"])
async def test_transient_fault_is_retried(node: FakeNode, fault: str) -> None:
    node.faults = [fault]
    async with client(node.url(), chain=f"fault_{fault}", timeout=0.3) as rpc:
        assert await rpc.get_logs(BlockRange(0, 99), None, None) == expected(0, 99)
    outcome = "timeout" if fault == "sleep" else "error"
    assert sample(f"fault_{fault}", "0:127.0.0.1", "eth_getLogs", outcome) == 1
    assert sample(f"fault_{fault}", "0:127.0.0.1", "eth_getLogs", "ok") == 1


async def test_dead_first_endpoint_fails_over(node: FakeNode) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/v3/SECRETKEY?apikey=SECRET2"
    async with client(dead, node.url(), chain="failover") as rpc:
        for _ in range(3):
            assert await rpc.get_logs(BlockRange(0, 199), None, None) == expected(0, 199)
    assert 1 <= sample("failover", "0:127.0.0.1", "eth_getLogs", "error") <= 3
    assert sample("failover", "1:127.0.0.1", "eth_getLogs", "ok") == 3


async def test_retries_run_out_with_context_and_no_secret(node: FakeNode) -> None:
    node.faults = ["500"] * 10
    dead = f"http://user:SECRET3@127.0.0.1:{closed_port()}/v3/SECRETKEY?apikey=SECRET2"
    async with client(node.url(), dead, chain="secret", max_retries=3) as rpc:
        with pytest.raises(RpcTransportError) as info:
            await rpc.get_logs(BlockRange(1000, 1999), None, None)
    err = info.value
    assert err.attempts == 4 and err.method == "eth_getLogs"
    assert str(err).startswith("eth_getLogs 1000-1999 on endpoint ")
    assert "SECRET" not in str(err) and "v3" not in str(err)
    for family in metrics.REGISTRY.collect():
        for s in family.samples:
            assert not any("SECRET" in v for v in s.labels.values())


async def test_error_body_echoing_the_url_is_scrubbed(node: FakeNode) -> None:
    node.faults = ["403"]
    async with client(node.url()) as rpc:
        with pytest.raises(RpcFatal) as info:
            await rpc.block_number()
    assert node.requests == 1 and "SECRET" not in str(info.value)


async def test_non_retryable_errors_raise_at_once(node: FakeNode) -> None:
    async with client(node.url()) as rpc:
        with pytest.raises(RpcFatal, match="eth_badParams"):
            await rpc.call("eth_badParams", ["1"])
        with pytest.raises(MethodUnsupported):
            await rpc.call("trace_block", ["0x1"])
    assert len(node.calls) == 2


async def test_chain_id_head_and_headers(node: FakeNode) -> None:
    async with client(node.url()) as rpc:
        assert await rpc.chain_id() == 43114
        assert await rpc.block_number() == HEAD
        latest = await rpc.get_header("latest")
        assert latest is not None and latest.number == HEAD
        assert await rpc.get_header(HEAD + 1) is None
        header = await rpc.get_header(7)
    assert header is not None and header.parent_hash == bytes.fromhex(f"{7:064x}")


async def test_get_headers_batches_in_chunks(node: FakeNode) -> None:
    async with RpcClient([RpcEndpoint(node.url(), max_batch_size=40)], chain="batch") as rpc:
        headers = await rpc.get_headers(range(100, 200))
    assert sorted(headers) == list(range(100, 200))
    assert all(h.number == n and h.timestamp == 1_700_000_000 + 2 * n for n, h in headers.items())
    assert node.requests == 3
    assert sample("batch", "0:127.0.0.1", "eth_getBlockByNumber", "ok") == 3


@pytest.mark.parametrize(("fault", "outcome"), [("drop", "error"), ("null", "node_behind")])
async def test_incomplete_batch_is_retried(node: FakeNode, fault: str, outcome: str) -> None:
    node.faults = [fault]
    async with client(node.url(), chain=f"batch_{fault}") as rpc:
        headers = await rpc.get_headers([5, 6, 7])
    assert sorted(headers) == [5, 6, 7] and node.requests == 2
    assert sample(f"batch_{fault}", "0:127.0.0.1", "eth_getBlockByNumber", outcome) == 1


async def test_batch_keeps_call_order(node: FakeNode) -> None:
    calls = [("eth_blockNumber", []), ("eth_chainId", []), ("eth_getBlockByNumber", ["0x3", False])]
    async with client(node.url(), chain="mixed") as rpc:
        results = await rpc.batch(calls)
    assert results[0] == hex(HEAD) and results[1] == "0xa86a" and results[2]["number"] == "0x3"
    assert sample("mixed", "0:127.0.0.1", "batch", "ok") == 1


async def test_requests_per_second_limit(node: FakeNode) -> None:
    async with RpcClient([RpcEndpoint(node.url(), max_requests_per_second=10)],
                         chain="rps") as rpc:
        started = time.monotonic()
        await asyncio.gather(*(rpc.block_number() for _ in range(15)))
    assert time.monotonic() - started >= 0.4


def rejected(chain: str, reason: str) -> float:
    total = 0.0
    for family in metrics.REGISTRY.collect():
        for s in family.samples:
            if (s.name == "indexer_rpc_answers_rejected_total" and s.labels["chain"] == chain
                    and s.labels["reason"] == reason):
                total += s.value
    return total


async def test_the_range_an_endpoint_accepts_is_learned(node: FakeNode) -> None:
    node.max_range = 100
    async with client(node.url(), chain="learn") as rpc:
        assert await rpc.get_logs(BlockRange(0, 499), None, None) == expected(0, 499)
        refusals = sample("learn", "0:127.0.0.1", "eth_getLogs", "range_too_large")
        assert await rpc.get_logs(BlockRange(500, 999), None, None) == expected(500, 999)
    assert refusals == 1
    assert sample("learn", "0:127.0.0.1", "eth_getLogs", "range_too_large") == 1  # no new one
    assert metrics.REGISTRY.get_sample_value(
        "indexer_rpc_range_size_blocks", {"chain": "learn", "endpoint": "0:127.0.0.1"}) >= 100


async def test_logs_of_to_block_missing_while_its_bloom_says_maybe_are_asked_again(
        node: FakeNode) -> None:
    node.bloom = "0x" + "ff" * 256
    async with client(node.url(), chain="bloom") as rpc:
        await rpc.get_header("latest")  # far below the head: only toBlock's bloom is read
        node.faults = ["droptip"]
        assert await rpc.get_logs(BlockRange(0, 99), None, None) == expected(0, 99)
    assert rejected("bloom", "bloom") == 1
    assert sample("bloom", "0:127.0.0.1", "eth_getLogs", "node_behind") == 1


async def test_a_bloom_false_positive_is_accepted_after_a_few_asks(node: FakeNode) -> None:
    node.bloom = "0x" + "ff" * 256
    async with client(node.url(), chain="falsepos") as rpc:
        # Block 100 holds no log (100 % 4 == 0) although its bloom says "maybe".
        assert await rpc.get_logs(BlockRange(97, 100), None, None) == expected(97, 100)
    assert rejected("falsepos", "bloom") == 2


async def test_an_all_zero_bloom_with_no_logs_is_accepted_at_once(node: FakeNode) -> None:
    node.bloom = "0x" + "00" * 256
    async with client(node.url(), chain="zerobloom") as rpc:
        assert await rpc.get_logs(BlockRange(97, 100), None, None) == expected(97, 100)
    assert rejected("zerobloom", "bloom") == 0


@pytest.mark.parametrize(("fault", "reason"), [("badhash", "block_hash"), ("foreign", "filter"),
                                                ("outside", "range")])
async def test_answers_failing_a_check_are_asked_again(
        node: FakeNode, fault: str, reason: str) -> None:
    node.faults = [fault]
    chain = f"check_{fault}"
    async with client(node.url(), chain=chain) as rpc:
        answer = await rpc.get_logs_checked(BlockRange(0, 99), [ADDR_A, ADDR_B], None)
    assert answer.logs == expected(0, 99)
    assert rejected(chain, reason) == 1
    blocks = {int(log["blockNumber"], 16) for log in answer.logs}
    assert blocks <= set(answer.headers) and 99 in answer.headers
    assert all(answer.headers[b].timestamp == 1_700_000_000 + 2 * b for b in blocks)


async def test_failover_moves_back_to_the_first_endpoint_once_it_recovers() -> None:
    first, second = FakeNode(), FakeNode()
    await first.start()
    await second.start()
    try:
        first.faults = ["500"] * 5  # five failures in a row trip its breaker
        async with client(first.url(), second.url(), chain="back", max_retries=8) as rpc:
            deadline = time.monotonic() + 5
            while first.faults and time.monotonic() < deadline:
                assert await rpc.block_number() == HEAD
                await asyncio.sleep(0.01)
            assert metrics.REGISTRY.get_sample_value(
                "indexer_rpc_endpoint_up", {"chain": "back", "endpoint": "0:127.0.0.1"}) == 0
            served = second.requests
            await asyncio.sleep(1.1)  # the breaker's cool-down
            for _ in range(5):
                assert await rpc.block_number() == HEAD
        assert second.requests == served  # all went back to the first
        assert sample("back", "0:127.0.0.1", "eth_blockNumber", "ok") == 5
        assert sample("back", "1:127.0.0.1", "eth_blockNumber", "ok") >= 5
        assert metrics.REGISTRY.get_sample_value(
            "indexer_rpc_failovers_total", {"chain": "back", "endpoint": "0:127.0.0.1"}) >= 1
        assert metrics.REGISTRY.get_sample_value(
            "indexer_rpc_endpoint_up", {"chain": "back", "endpoint": "0:127.0.0.1"}) == 1
    finally:
        await first.stop()
        await second.stop()


async def test_a_rate_limited_endpoint_passes_requests_to_the_next(node: FakeNode) -> None:
    other = FakeNode()
    await other.start()
    try:
        node.faults = ["429"]  # Retry-After: 1
        async with client(node.url(), other.url(), chain="spill") as rpc:
            started = time.monotonic()
            assert await rpc.get_logs(BlockRange(0, 499), None, None) == expected(0, 499)
        assert time.monotonic() - started < 0.9  # did not wait for the first
        assert other.get_logs_calls() == [BlockRange(0, 499)]  # never split for a rate limit
    finally:
        await other.stop()
