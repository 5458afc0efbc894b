"""JSON-RPC over aiohttp: batching, retries with backoff and jitter, rate limits, failover.

Every request is recorded in ``indexer_rpc_requests_total`` and
``indexer_rpc_request_duration_seconds``. Endpoint URLs may hold API keys (in the path, query
or userinfo): only ``endpoint_label`` ever leaves this module, in errors, logs and labels.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from indexer import metrics
from indexer.config import RpcEndpoint
from indexer.rpc import wire
from indexer.rpc.errors import (
    AnswerTooLarge,
    BadAnswer,
    NodeBehind,
    RangeTooLarge,
    RateLimited,
    RpcError,
    RpcFatal,
    RpcTimeout,
    RpcTransportError,
    classify,
)
from indexer.types import BlockHeader, BlockRange, RawLog

DEFAULT_BATCH_SIZE = 100
MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is cut to this
LOGS_CONCURRENCY = 16  # eth_getLogs requests in flight per client while splitting ranges
MAX_HINT_PARTS = 16  # split a refused range into hint-sized parts only up to this many
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def endpoint_label(url: str, index: int) -> str:
    """``"0:api.avax.network"``: index and host only, never path, query or userinfo."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    return f"{index}:{host or 'unknown'}"


def _secrets_of(url: str) -> tuple[str, ...]:
    parts = urlsplit(url)
    found = [url, parts.path if len(parts.path) > 1 else "", parts.query, parts.password or ""]
    if parts.username:
        found.append(parts.username)
    return tuple(s for s in found if len(s) >= 4)


class _TokenBucket:
    """Requests per second with a burst of ``max(1, rate)``; waiters queue by taking debt."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    async def acquire(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


class _Endpoint:
    def __init__(self, cfg: RpcEndpoint, index: int) -> None:
        self.url = cfg.url
        self.label = endpoint_label(cfg.url, index)
        self.batch_size = cfg.max_batch_size or DEFAULT_BATCH_SIZE
        rps = cfg.max_requests_per_second
        self.bucket = _TokenBucket(rps) if rps and rps > 0 else None
        self.secrets = _secrets_of(cfg.url)
        self.failures = 0
        self.down_until = 0.0  # monotonic time before which other endpoints are preferred

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def _summary(params: Sequence[Any]) -> str:
    text = orjson.dumps(params).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def _method_label(calls: Sequence[tuple[str, list[Any]]]) -> str:
    first = calls[0][0]
    return first if all(m == first for m, _ in calls) else "batch"


Check = Callable[[Any], None]


class RpcClient:
    """A JSON-RPC client over one chain's endpoints. Use as ``async with RpcClient(...)``."""

    def __init__(
        self,
        endpoints: Sequence[RpcEndpoint],
        *,
        chain: str,
        timeout: float = 30.0,
        max_retries: int = 8,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        max_answer_bytes: int = 64 << 20,
    ) -> None:
        if not endpoints:
            raise ValueError(f"chain {chain}: no RPC endpoint configured")
        self.chain = chain
        self._endpoints = [_Endpoint(e, i) for i, e in enumerate(endpoints)]
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        # Memory bound: an eth_getLogs answer over a range of several blocks larger than this
        # is dropped (AnswerTooLarge) rather than parsed; one block is always read whole.
        self.max_answer_bytes = max_answer_bytes
        self._ids = itertools.count(1)
        self._turn = itertools.count()
        self._session: aiohttp.ClientSession | None = None
        self._logs_slots = asyncio.Semaphore(LOGS_CONCURRENCY)
        self.batch_size = min(e.batch_size for e in self._endpoints)

    async def __aenter__(self) -> RpcClient:
        self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=30, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, headers=_HEADERS)
        return self._session

    # -- public calls --------------------------------------------------------------------

    async def call(self, method: str, params: list[Any]) -> Any:
        """One request, retried; the ``result`` of the answer."""
        return await self._call(method, params)

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """A JSON-RPC batch in chunks of the endpoints' batch size; results in call order."""
        return await self._batch(calls, None)

    async def chain_id(self) -> int:
        return wire.parse_quantity(await self._call("eth_chainId", []))

    async def block_number(self) -> int:
        return wire.parse_quantity(await self._call("eth_blockNumber", []))

    async def get_header(self, tag_or_number: int | str) -> BlockHeader | None:
        """The header of a block number or tag ("latest", "finalized", "safe"); None if null."""
        ref = hex(tag_or_number) if isinstance(tag_or_number, int) else tag_or_number
        block = await self._call("eth_getBlockByNumber", [ref, False])
        return None if block is None else wire.parse_header(block)

    async def get_headers(self, numbers: Sequence[int]) -> dict[int, BlockHeader]:
        """Headers of the given blocks; a block the node does not have yet is retried."""
        wanted = list(dict.fromkeys(numbers))
        calls = [("eth_getBlockByNumber", [hex(n), False]) for n in wanted]
        results = await self._batch(calls, _check_block)
        headers: dict[int, BlockHeader] = {}
        for n, block in zip(wanted, results, strict=True):
            header = wire.parse_header(block)
            if header.number != n:
                raise BadAnswer(f"asked for block {n}, got block {header.number}",
                                method="eth_getBlockByNumber", what=str(n))
            headers[n] = header
        return headers

    async def get_logs(
        self, rng: BlockRange, addresses: Sequence[str] | None, topic0s: Sequence[str] | None
    ) -> list[RawLog]:
        """Every log of ``rng`` in (blockNumber, logIndex) order, splitting refused ranges."""
        flt: dict[str, Any] = {}
        if addresses is not None:
            flt["address"] = list(addresses)
        if topic0s is not None:
            flt["topics"] = [list(topic0s)]
        return await self._logs(rng, flt)

    # -- eth_getLogs with range splitting ------------------------------------------------

    async def _logs(self, rng: BlockRange, flt: dict[str, Any]) -> list[RawLog]:
        params = [{**flt, "fromBlock": hex(rng.start), "toBlock": hex(rng.end)}]
        try:
            async with self._logs_slots:
                logs: list[RawLog] = await self._call(
                    "eth_getLogs", params, requested=rng, what=str(rng),
                    check=lambda answer: wire.check_logs(answer, rng),
                )
                return logs
        except RangeTooLarge as e:
            if len(rng) == 1:
                raise RpcFatal(f"a single block is too large to fetch: {e.detail}",
                               endpoint=e.endpoint, method=e.method, what=e.what) from e
            parts = _split(rng, e.hint)
        answers = await asyncio.gather(*(self._logs(p, flt) for p in parts))
        if len(answers) == 1:
            return answers[0]
        return [log for answer in answers for log in answer]

    # -- requests and retries ------------------------------------------------------------

    async def _call(
        self,
        method: str,
        params: list[Any],
        *,
        requested: BlockRange | None = None,
        what: str | None = None,
        check: Check | None = None,
    ) -> Any:
        async def attempt(ep: _Endpoint) -> Any:
            rid = next(self._ids)
            body = orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
            doc = await self._post(ep, body, requested)
            if type(doc) is not dict:
                raise BadAnswer(f"expected a JSON-RPC reply object, got {type(doc).__name__}")
            result = _result(doc, requested)
            if doc.get("id") != rid:
                raise BadAnswer(f"reply id {doc.get('id')!r:.40} does not match request {rid}")
            if check is not None:
                check(result)
            return result

        return await self._retrying(method, what or _summary(params), attempt)

    async def _batch(self, calls: Sequence[tuple[str, list[Any]]], check: Check | None) -> list[Any]:
        if not calls:
            return []
        size = self.batch_size
        chunks = [calls[i:i + size] for i in range(0, len(calls), size)]
        parts = await asyncio.gather(*(self._batch_chunk(c, check) for c in chunks))
        return [result for part in parts for result in part]

    async def _batch_chunk(
        self, calls: Sequence[tuple[str, list[Any]]], check: Check | None
    ) -> list[Any]:
        async def attempt(ep: _Endpoint) -> list[Any]:
            ids = [next(self._ids) for _ in calls]
            body = orjson.dumps([
                {"jsonrpc": "2.0", "id": rid, "method": m, "params": p}
                for rid, (m, p) in zip(ids, calls, strict=True)
            ])
            doc = await self._post(ep, body, None)
            if type(doc) is dict and "error" in doc:  # the whole batch was refused
                raise classify(200, doc["error"], None, None)
            replies = wire.check_batch_answer(doc, ids)
            results = [_result(replies[rid], None) for rid in ids]
            if check is not None:
                for result in results:
                    check(result)
            return results

        what = f"batch of {len(calls)} from {_summary(calls[0][1])}"
        return await self._retrying(_method_label(calls), what, attempt)

    async def _retrying(
        self, method: str, what: str, attempt: Callable[[_Endpoint], Awaitable[Any]]
    ) -> Any:
        """Run ``attempt`` until it succeeds, a non-retryable error, or the retries run out.

        ``RangeTooLarge`` is raised at once: the caller splits the range.
        """
        tries = 0
        ep = self._pick(None)
        while True:
            tries += 1
            if ep.bucket is not None:
                await ep.bucket.acquire()
            started = time.perf_counter()
            try:
                result = await attempt(ep)
            except RpcError as e:
                self._record(ep, method, e.outcome, started)
                e.endpoint, e.method, e.what, e.attempts = ep.label, method, what, tries
                e.detail = ep.scrub(e.detail)
                if (
                    not e.retryable or isinstance(e, RangeTooLarge | AnswerTooLarge)
                    or tries > self._max_retries
                ):
                    raise
                ep = await self._after_failure(ep, e, tries)
                continue
            self._record(ep, method, "ok", started)
            ep.failures = 0
            return result

    async def _after_failure(self, ep: _Endpoint, err: RpcError, tries: int) -> _Endpoint:
        """Wait as the error asks and pick the endpoint of the next attempt."""
        now = time.monotonic()
        if err.failover:
            ep.failures += 1
            penalty = self._backoff(ep.failures)
            if isinstance(err, RateLimited) and err.retry_after is not None:
                penalty = min(err.retry_after, MAX_RETRY_AFTER)
            ep.down_until = max(ep.down_until, now + penalty)
        nxt = self._pick(ep if err.failover else None)
        delay = random.uniform(0.0, self._backoff(tries))  # full jitter
        await asyncio.sleep(max(delay, nxt.down_until - now))
        return nxt

    def _backoff(self, n: int) -> float:
        return min(self._backoff_max, self._backoff_base * 2 ** min(n - 1, 30))

    def _pick(self, avoid: _Endpoint | None) -> _Endpoint:
        """Round-robin over endpoints that are up; the one up soonest if none is."""
        eps = self._endpoints
        if len(eps) == 1:
            return eps[0]
        now = time.monotonic()
        turn = next(self._turn)
        ordered = [eps[(turn + k) % len(eps)] for k in range(len(eps))]
        for ep in ordered:
            if ep is not avoid and ep.down_until <= now:
                return ep
        return min(ordered, key=lambda ep: (ep is avoid, ep.down_until))

    async def _post(self, ep: _Endpoint, body: bytes, requested: BlockRange | None) -> Any:
        """POST ``body``; the decoded JSON of a 200 answer, else the classified error."""
        session = self._open()
        try:
            async with session.post(ep.url, data=body, timeout=self._timeout) as resp:
                limit = (
                    self.max_answer_bytes if requested is not None and len(requested) > 1
                    else None
                )
                raw = await _read(resp, limit)
                status = resp.status
                headers = resp.headers
        except TimeoutError:
            raise RpcTimeout(f"no answer within {self._timeout.total}s") from None
        except aiohttp.ClientError as e:
            # aiohttp messages may quote the URL: keep only the kind and the OS reason.
            reason = getattr(e, "strerror", None) or getattr(
                getattr(e, "os_error", None), "strerror", None)
            detail = f"{type(e).__name__}: {reason}" if reason else type(e).__name__
            raise RpcTransportError(detail) from None
        if status != 200:
            raise classify(status, _error_of(raw), raw[:300].decode("utf-8", "replace"), headers,
                           requested=requested)
        try:
            return wire.loads(raw)
        except orjson.JSONDecodeError:
            raise RpcTransportError(f"truncated or non-JSON body ({len(raw)} bytes)") from None

    def _record(self, ep: _Endpoint, method: str, outcome: str, started: float) -> None:
        metrics.RPC_REQUESTS.labels(
            chain=self.chain, endpoint=ep.label, method=method, outcome=outcome).inc()
        metrics.RPC_DURATION.labels(chain=self.chain, endpoint=ep.label, method=method).observe(
            time.perf_counter() - started)


def _result(reply: dict[str, Any], requested: BlockRange | None) -> Any:
    if "error" in reply and reply["error"] is not None:
        error = reply["error"]
        raise classify(200, error if isinstance(error, dict) else {"message": str(error)}, None,
                       None, requested=requested)
    if "result" not in reply:
        raise BadAnswer("reply holds neither result nor error")
    return reply["result"]


async def _read(resp: aiohttp.ClientResponse, limit: int | None) -> bytes:
    """The body, or AnswerTooLarge as soon as it grows past ``limit`` bytes."""
    if limit is None or resp.status != 200:
        return await resp.read()
    if resp.content_length is not None and resp.content_length > limit:
        raise AnswerTooLarge(f"answer of {resp.content_length >> 20} MB is over the "
                             f"{limit >> 20} MB cap")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(f"answer over the {limit >> 20} MB cap")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_of(raw: bytes) -> dict[str, Any] | None:
    """The JSON-RPC error object of a non-200 body, if it has one."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    error = doc.get("error") if isinstance(doc, dict) else None
    return error if isinstance(error, dict) else None


def _check_block(block: Any) -> None:
    if block is None:
        raise NodeBehind("the node has no such block yet")


def _split(rng: BlockRange, hint: BlockRange | None) -> list[BlockRange]:
    """Parts of a refused range, in order: hint-sized pieces when few, else halves."""
    if hint is None:
        return list(rng.halves())
    if -(-len(rng) // len(hint)) <= MAX_HINT_PARTS:
        return list(rng.chunks(len(hint)))
    return [hint, BlockRange(hint.end + 1, rng.end)]
