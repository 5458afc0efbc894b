"""JSON-RPC over aiohttp: batching, retries with backoff and jitter, rate limits, failover,
range splitting and checks on every eth_getLogs answer.

Endpoints are used in the order of the chain file: the first one that is up and healthy takes
the requests (the next one takes over while the first is rate-limited, tripped or unhealthy, and
gives them back once it recovers). What is learned per endpoint lives in ``endpoint.py``.

An eth_getLogs answer is accepted only if every log lies in the range and matches the filter,
the header of ``toBlock`` (asked in the same JSON-RPC batch) exists, the blockHash of every
block holding logs equals the canonical header's hash, and ``toBlock`` holds no log although its
logsBloom says it may, unless its receipts (eth_getBlockReceipts) confirm that no log matches:
blooms have false positives (a node that does not serve receipts: accepted after
``BLOOM_RETRIES`` like answers).

Every request is recorded in ``indexer_rpc_requests_total`` and
``indexer_rpc_request_duration_seconds``. Endpoint URLs may hold API keys (in the path, query,
userinfo or a host label): only ``endpoint_label`` ever leaves this module, in errors, logs and
labels.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from indexer import metrics
from indexer.config import RpcEndpoint
from indexer.rpc import bloom, wire
from indexer.rpc.endpoint import COOL_DOWN, EndpointState, Limiter
from indexer.rpc.errors import (
    AnswerTooLarge,
    BadAnswer,
    MethodUnsupported,
    NodeBehind,
    RangeTooLarge,
    RateLimited,
    RpcError,
    RpcFatal,
    RpcServerError,
    RpcTimeout,
    RpcTransportError,
    classify,
)
from indexer.types import BlockHeader, BlockRange, RawLog

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 100
DEFAULT_TIMEOUT = 30.0  # seconds; INDEXER_RPC_TIMEOUT overrides it
MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is cut to this
LOGS_CONCURRENCY = 16  # eth_getLogs requests in flight per client while splitting ranges
MAX_HINT_PARTS = 16  # split a refused range into hint-sized parts only up to this many
BLOOM_RETRIES = 2  # a bloom that says "maybe" against an empty answer is asked again this often
HASH_RETRIES = 2  # answers whose blockHash differs from the canonical header, asked again
SPLIT_AFTER = 2  # timeouts or unknown errors in a row on one eth_getLogs range: ask for halves
HEALTHY_SHARE = 0.3  # an endpoint scoring below this share of the best one is passed over
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_TOKENISH = re.compile(r"^(?=.*\d)(?=.*[a-z])[a-z0-9_-]{16,}$", re.IGNORECASE)


def _host(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if host is None:
        return None
    # A key may be a host label (https://KEY.provider.example): keep only readable labels.
    return ".".join("***" if _TOKENISH.match(p) else p for p in host.split("."))


def endpoint_label(url: str, index: int) -> str:
    """``"0:api.avax.network"``: index and host only, never path, query or userinfo; a host
    label that looks like a key is shown as ``***``."""
    return f"{index}:{_host(url) or 'unknown'}"


def _secrets_of(url: str) -> tuple[str, ...]:
    parts = urlsplit(url)
    found = [url, parts.path if len(parts.path) > 1 else "", parts.query, parts.password or ""]
    if parts.username:
        found.append(parts.username)
    found += [p for p in parts.path.split("/") if len(p) >= 8]
    found += [p.split("=", 1)[-1] for p in parts.query.split("&") if "=" in p]
    try:
        host = parts.hostname or ""
    except ValueError:
        host = ""
    found += [p for p in host.split(".") if _TOKENISH.match(p)]
    return tuple(sorted({s for s in found if len(s) >= 4}, key=len, reverse=True))


@dataclass(slots=True)
class LogsAnswer:
    """A checked eth_getLogs answer: the logs in (blockNumber, logIndex) order and the
    canonical headers of every block holding one of them (plus the ``toBlock`` of each
    request), whose hashes the logs' blockHash matched."""

    logs: list[RawLog]
    headers: dict[int, BlockHeader]


@dataclass(frozen=True, slots=True)
class _Filter:
    params: dict[str, Any]
    addresses: frozenset[str] | None
    topic0s: frozenset[str] | None
    address_bytes: tuple[bytes, ...] | None
    topic_bytes: tuple[bytes, ...] | None


class _OverCap(Exception):  # noqa: N818  (a signal, not an error)
    """The range is over what the chosen endpoint accepts: split it before asking."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _Endpoint:
    def __init__(self, cfg: RpcEndpoint, index: int) -> None:
        self.url = cfg.url
        self.index = index
        self.label = endpoint_label(cfg.url, index)
        rps = cfg.max_requests_per_second
        self.state = EndpointState(Limiter(rps if rps and rps > 0 else None,
                                           cfg.max_batch_size or DEFAULT_BATCH_SIZE))
        self.batch_logs = (cfg.max_batch_size or DEFAULT_BATCH_SIZE) >= 2
        self.receipts = True  # serves eth_getBlockReceipts (until it says otherwise)
        self.secrets = _secrets_of(cfg.url)

    @property
    def batch_size(self) -> int:
        return self.state.limiter.batch

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
        timeout: float | None = None,
        max_retries: int = 8,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        max_answer_bytes: int = 64 << 20,
    ) -> None:
        if not endpoints:
            raise ValueError(f"chain {chain}: no RPC endpoint configured")
        if timeout is None:
            timeout = float(os.environ.get("INDEXER_RPC_TIMEOUT") or DEFAULT_TIMEOUT)
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
        self._session: aiohttp.ClientSession | None = None
        self._logs_slots = asyncio.Semaphore(LOGS_CONCURRENCY)
        for ep in self._endpoints:
            metrics.RPC_ENDPOINT_UP.labels(chain=chain, endpoint=ep.label).set(1)
            metrics.RPC_ENDPOINT_HEALTH.labels(chain=chain, endpoint=ep.label).set(1)

    @property
    def batch_size(self) -> int:
        return min(e.batch_size for e in self._endpoints)

    @property
    def endpoints(self) -> list[str]:
        """Labels of the endpoints, in order of preference."""
        return [e.label for e in self._endpoints]

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
        return (await self.get_logs_checked(rng, addresses, topic0s)).logs

    async def get_logs_checked(
        self, rng: BlockRange, addresses: Sequence[str] | None, topic0s: Sequence[str] | None,
        *, tip: BlockHeader | None = None,
    ) -> LogsAnswer:
        """``get_logs`` with the canonical headers of the blocks holding logs, every blockHash
        checked against them (see the module docstring for every check). ``tip``: the header
        of ``rng.end`` when the caller has just read it (the live tail's head), used instead of
        asking for it on the first attempt."""
        flt = _filter(addresses, topic0s)
        for attempt in range(HASH_RETRIES + 1):
            parts = await self._logs(rng, flt, tip if attempt == 0 else None)
            logs = parts[0][0] if len(parts) == 1 else [lg for p in parts for lg in p[0]]
            blocks: dict[int, str] = {}
            headers: dict[int, BlockHeader] = {}
            for _, held, tip in parts:
                blocks.update(held)
                headers[tip.number] = tip
            missing = [n for n in blocks if n not in headers]
            if missing:
                headers.update(await self.get_headers(missing))
            wrong = [n for n, h in blocks.items() if _hash_hex(headers[n]) != h.lower()]
            if not wrong:
                return LogsAnswer(logs, headers)
            metrics.RPC_ANSWER_REJECTED.labels(
                chain=self.chain, endpoint="any", reason="block_hash").inc()
            log.warning("%s: eth_getLogs %s: blockHash of block %d differs from the canonical "
                        "header (attempt %d); asking again", self.chain, rng, wrong[0],
                        attempt + 1)
        raise BadAnswer(f"blockHash of block {wrong[0]} differs from the canonical header "
                        f"after {HASH_RETRIES + 1} attempts", method="eth_getLogs",
                        what=str(rng), reason="block_hash")

    # -- eth_getLogs with range splitting ------------------------------------------------

    async def _logs(
        self, rng: BlockRange, flt: _Filter, known: BlockHeader | None = None
    ) -> list[tuple[list[RawLog], dict[int, str], BlockHeader]]:
        """Answers for consecutive parts of ``rng``: (logs, block -> hash, toBlock header)."""
        try:
            async with self._logs_slots:
                return [await self._logs_once(rng, flt, known)]
        except _OverCap as e:
            parts = _parts(rng, e.size)
        except RangeTooLarge as e:
            if len(rng) == 1:
                raise RpcFatal(f"a single block is too large to fetch: {e.detail}",
                               endpoint=e.endpoint, method=e.method, what=e.what) from e
            parts = _split(rng, e.hint)
        answers = await asyncio.gather(
            *(self._logs(p, flt, known if p.end == rng.end else None) for p in parts))
        return [part for answer in answers for part in answer]

    async def _logs_once(
        self, rng: BlockRange, flt: _Filter, known: BlockHeader | None = None
    ) -> tuple[list[RawLog], dict[int, str], BlockHeader]:
        params = [{**flt.params, "fromBlock": hex(rng.start), "toBlock": hex(rng.end)}]
        tip_params = [hex(rng.end), False]
        laggards = [0]  # answers refused on the bloom so far

        async def attempt(ep: _Endpoint) -> tuple[list[RawLog], dict[int, str], BlockHeader]:
            cap = ep.state.ranges.cap
            if cap is not None and len(rng) > cap:
                raise _OverCap(cap)
            if known is not None and known.number == rng.end:
                tip_raw, logs = None, await self._single(ep, "eth_getLogs", params, rng)
            elif ep.batch_logs:
                tip_raw, logs = await self._logs_batch(ep, params, tip_params, rng)
            else:
                tip_raw, logs = await asyncio.gather(
                    self._single(ep, "eth_getBlockByNumber", tip_params, None),
                    self._single(ep, "eth_getLogs", params, rng))
            blocks = wire.check_logs(logs, rng, flt.addresses, flt.topic0s)
            if known is not None and known.number == rng.end:
                tip = known
            else:
                if tip_raw is None:
                    raise NodeBehind(f"the node has no block {rng.end} yet")
                tip = wire.parse_header(tip_raw)
                if tip.number != rng.end:
                    raise BadAnswer(f"asked for block {rng.end}, got block {tip.number}")
            seen = blocks.get(rng.end)
            if seen is not None and seen.lower() != _hash_hex(tip):
                raise BadAnswer(f"blockHash of block {rng.end} differs from its header",
                                reason="block_hash")
            if (
                seen is None and tip.logs_bloom is not None
                and bloom.may_match(tip.logs_bloom, flt.address_bytes, flt.topic_bytes)
                and not await self._confirmed_empty(ep, tip, flt, laggards)
            ):
                err = NodeBehind(f"no log in block {rng.end} although its logsBloom says it "
                                 "may hold one (a lagging node?)")
                err.reason = "bloom"
                raise err
            ep.state.ranges.on_ok(len(rng), len(logs))
            self._gauge_range(ep)
            return logs, blocks, tip

        result: tuple[list[RawLog], dict[int, str], BlockHeader] = await self._retrying(
            "eth_getLogs", str(rng), attempt, requested=rng)
        return result

    async def _confirmed_empty(
        self, ep: _Endpoint, tip: BlockHeader, flt: _Filter, laggards: list[int]
    ) -> bool:
        """Whether ``tip`` truly holds no matching log although its bloom says "maybe" (blooms
        have false positives): its receipts say so. Where eth_getBlockReceipts is not served,
        an empty answer is accepted after BLOOM_RETRIES asks."""
        if ep.receipts:
            try:
                receipts = await self._single(
                    ep, "eth_getBlockReceipts", [hex(tip.number)], None)
            except (MethodUnsupported, RpcFatal):
                ep.receipts = False
            except RpcError:
                return False  # ask again
            else:
                if isinstance(receipts, list):
                    return not any(_matches(lg, flt) for rc in receipts if isinstance(rc, dict)
                                   for lg in rc.get("logs") or ()
                                   if lg.get("blockHash", "").lower() == _hash_hex(tip))
        laggards[0] += 1
        return laggards[0] > BLOOM_RETRIES

    async def _logs_batch(
        self, ep: _Endpoint, params: list[Any], tip_params: list[Any], rng: BlockRange
    ) -> tuple[Any, Any]:
        """eth_getBlockByNumber(toBlock) and eth_getLogs in one batch (the logs last, so a large
        answer is parsed in slices)."""
        ids = (next(self._ids), next(self._ids))
        body = orjson.dumps([
            {"jsonrpc": "2.0", "id": ids[0], "method": "eth_getBlockByNumber",
             "params": tip_params},
            {"jsonrpc": "2.0", "id": ids[1], "method": "eth_getLogs", "params": params},
        ])
        doc = await self._post(ep, body, rng)
        if type(doc) is dict and "error" in doc:  # the whole batch was refused
            err = classify(200, doc["error"], None, None, requested=rng)
            if not err.retryable or isinstance(err, RpcServerError):
                ep.batch_logs = False  # this endpoint takes no batches: ask one by one
                raise RpcServerError(f"batch refused ({err.detail}); asking without batches")
            raise err
        replies = wire.check_batch_answer(doc, ids)
        return _result(replies[ids[0]], None), _result(replies[ids[1]], rng)

    async def _single(
        self, ep: _Endpoint, method: str, params: list[Any], requested: BlockRange | None
    ) -> Any:
        rid = next(self._ids)
        body = orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        doc = await self._post(ep, body, requested)
        if type(doc) is not dict:
            raise BadAnswer(f"expected a JSON-RPC reply object, got {type(doc).__name__}")
        result = _result(doc, requested)
        if doc.get("id") != rid:
            raise BadAnswer(f"reply id {doc.get('id')!r:.40} does not match request {rid}")
        return result

    # -- requests and retries ------------------------------------------------------------

    async def _call(self, method: str, params: list[Any], *, check: Check | None = None) -> Any:
        async def attempt(ep: _Endpoint) -> Any:
            result = await self._single(ep, method, params, None)
            if check is not None:
                check(result)
            return result

        return await self._retrying(method, _summary(params), attempt)

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
        return await self._retrying(_method_label(calls), what, attempt, batch=len(calls) > 1)

    async def _retrying(
        self, method: str, what: str, attempt: Callable[[_Endpoint], Awaitable[Any]], *,
        requested: BlockRange | None = None, batch: bool = False,
    ) -> Any:
        """Run ``attempt`` until it succeeds, a non-retryable error, or the retries run out.

        ``RangeTooLarge`` is raised at once (the caller splits the range), and so is a run of
        ``SPLIT_AFTER`` timeouts or unknown errors on a range of several blocks: some nodes
        time out on ranges they would rather refuse.
        """
        tries = stuck = 0
        ep = self._pick(None)
        while True:
            tries += 1
            delay = ep.state.limiter.take(time.monotonic())
            if delay > 0:
                await asyncio.sleep(delay)
            started = time.perf_counter()
            try:
                result = await attempt(ep)
            except RpcError as e:
                e.endpoint, e.method, e.what, e.attempts = ep.label, method, what, tries
                e.detail = ep.scrub(e.detail)
                self._failed(ep, method, e, started, requested, batch)
                stuck = stuck + 1 if isinstance(e, RpcTimeout | RpcServerError) else 0
                if requested is not None and len(requested) > 1 and stuck >= SPLIT_AFTER:
                    raise RangeTooLarge(f"{e.detail}; asking for fewer blocks", method=method,
                                        what=what, endpoint=ep.label) from e
                if (
                    not e.retryable or isinstance(e, RangeTooLarge | AnswerTooLarge)
                    or tries > self._max_retries
                ):
                    raise
                ep = await self._after_failure(ep, e, tries)
                continue
            self._succeeded(ep, method, started, batch)
            return result

    def _failed(self, ep: _Endpoint, method: str, err: RpcError, started: float,
                requested: BlockRange | None, batch: bool) -> None:
        now = time.monotonic()
        self._record(ep, method, err.outcome, started)
        st = ep.state
        if err.reason is not None:
            metrics.RPC_ANSWER_REJECTED.labels(
                chain=self.chain, endpoint=ep.label, reason=err.reason).inc()
        if isinstance(err, RangeTooLarge) and requested is not None:
            st.ranges.on_refused(len(requested), len(err.hint) if err.hint else None, err.limit)
            self._gauge_range(ep)
            return
        if isinstance(err, RateLimited):  # the range is never shrunk for a rate limit
            # A node that says how long to wait is obeyed (down_until); one that does not
            # gets fewer requests per second.
            st.limiter.on_rate_limited(now, batch, slow_down=err.retry_after is None)
            return
        if isinstance(err, AnswerTooLarge):
            return
        st.health.observe(now, False, time.perf_counter() - started)
        unwell = isinstance(err, RpcTransportError | RpcTimeout | RpcServerError | BadAnswer)
        if unwell and st.breaker.on_failure(now):
            metrics.RPC_ENDPOINT_UP.labels(chain=self.chain, endpoint=ep.label).set(0)
            log.warning("%s: endpoint %s is out for %.0fs after %d failures in a row (last: %s)",
                        self.chain, ep.label, st.breaker.cool_down, st.breaker.failures,
                        err.detail)
        self._gauge_health(ep, now)

    def _succeeded(self, ep: _Endpoint, method: str, started: float, batch: bool) -> None:
        now = time.monotonic()
        self._record(ep, method, "ok", started)
        st = ep.state
        st.limiter.on_ok(batch)
        st.health.observe(now, True, time.perf_counter() - started)
        if st.breaker.on_success():
            st.health.errors = 0.0  # the trial passed: judge it afresh
            metrics.RPC_ENDPOINT_UP.labels(chain=self.chain, endpoint=ep.label).set(1)
            log.warning("%s: endpoint %s answers again", self.chain, ep.label)
        self._gauge_health(ep, now)

    async def _after_failure(self, ep: _Endpoint, err: RpcError, tries: int) -> _Endpoint:
        """Wait as the error asks and pick the endpoint of the next attempt."""
        now = time.monotonic()
        if err.failover:
            # A short step aside; longer outages are the circuit breaker's business.
            penalty = min(COOL_DOWN, self._backoff(max(1, ep.state.breaker.failures)))
            if isinstance(err, RateLimited):
                penalty = min(err.retry_after if err.retry_after is not None
                              else self._backoff(tries), MAX_RETRY_AFTER)
            ep.state.down_until = max(ep.state.down_until, now + penalty)
        nxt = self._pick(ep if err.failover else None)
        if nxt is not ep:
            metrics.RPC_FAILOVERS.labels(chain=self.chain, endpoint=ep.label).inc()
            log.debug("%s: %s failed on endpoint %s, trying %s", self.chain, err.method,
                      ep.label, nxt.label)
        delay = random.uniform(0.0, self._backoff(tries))  # full jitter
        if nxt is not ep and nxt.state.available(now):
            delay = min(delay, self._backoff_base)  # another endpoint is ready: go soon
        await asyncio.sleep(max(delay, nxt.state.available_at() - now))
        return nxt

    def _backoff(self, n: int) -> float:
        return min(self._backoff_max, self._backoff_base * 2 ** min(n - 1, 30))

    def _pick(self, avoid: _Endpoint | None) -> _Endpoint:
        """The first endpoint in the file's order that is up, healthy and not throttled; else
        the first up and healthy; else the one up soonest. A preferred endpoint whose breaker
        cool-down just ended gets the request as its trial."""
        eps = self._endpoints
        if len(eps) == 1:
            return eps[0]
        now = time.monotonic()
        up = [ep for ep in eps if ep is not avoid and ep.state.available(now)]
        if not up:
            return min(eps, key=lambda ep: (ep is avoid, ep.state.available_at()))
        if up[0].state.breaker.opened:  # its cool-down is over: give it a trial
            return up[0]
        best_latency = min((ep.state.health.latency for ep in up if ep.state.health.latency),
                           default=0.0)
        scores = [ep.state.health.score(now, best_latency) for ep in up]
        floor = HEALTHY_SHARE * max(scores)
        healthy = [ep for ep, score in zip(up, scores, strict=True) if score >= floor]
        for ep in healthy:
            if ep.state.limiter.wait(now) <= 0.0:
                return ep
        return healthy[0]

    def _gauge_health(self, ep: _Endpoint, now: float) -> None:
        st = ep.state
        score = 0.0 if not st.breaker.allows(now) else st.health.score(now, st.health.latency)
        metrics.RPC_ENDPOINT_HEALTH.labels(chain=self.chain, endpoint=ep.label).set(score)

    def _gauge_range(self, ep: _Endpoint) -> None:
        metrics.RPC_RANGE_SIZE.labels(chain=self.chain, endpoint=ep.label).set(
            ep.state.ranges.size)

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


def _filter(addresses: Sequence[str] | None, topic0s: Sequence[str] | None) -> _Filter:
    params: dict[str, Any] = {}
    if addresses is not None:
        params["address"] = list(addresses)
    if topic0s is not None:
        params["topics"] = [list(topic0s)]
    addrs = None if addresses is None else frozenset(a.lower() for a in addresses)
    topics = None if topic0s is None else frozenset(t.lower() for t in topic0s)
    return _Filter(
        params, addrs, topics,
        None if addrs is None else tuple(bytes.fromhex(a[2:]) for a in addrs),
        None if topics is None else tuple(bytes.fromhex(t[2:]) for t in topics),
    )


def _matches(lg: Any, flt: _Filter) -> bool:
    if not isinstance(lg, dict):
        return False
    addr, topics = str(lg.get("address", "")).lower(), lg.get("topics") or []
    if flt.addresses is not None and addr not in flt.addresses:
        return False
    return flt.topic0s is None or bool(topics) and str(topics[0]).lower() in flt.topic0s


def _hash_hex(header: BlockHeader) -> str:
    return "0x" + header.hash.hex()


def _parts(rng: BlockRange, size: int) -> list[BlockRange]:
    """``rng`` in pieces of ``size`` blocks; past MAX_HINT_PARTS pieces, in MAX_HINT_PARTS
    pieces that are multiples of ``size`` (each split again when asked)."""
    count = -(-len(rng) // size)
    if count <= MAX_HINT_PARTS:
        return list(rng.chunks(size))
    return list(rng.chunks(size * -(-count // MAX_HINT_PARTS)))


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
