"""The request layer under every JSON-RPC call: one call or a batch, retries with back-off and
full jitter, rate limits, circuit breakers and the choice of endpoint.

Endpoints are used in the order of the chain file: the first one that is up and healthy takes
the requests (the next one takes over while the first is rate-limited, tripped or unhealthy, and
gives them back once it recovers). What is learned per endpoint lives in ``endpoint.py``, the
plumbing of one POST in ``transport.py``, the envelope and the answer checks in ``wire.py``.

Every request is recorded in ``indexer_rpc_requests_total`` and
``indexer_rpc_request_duration_seconds``. Endpoint URLs may hold API keys: only endpoint labels
(and text passed through ``Endpoint.scrub``) ever leave this layer, in errors, logs and labels.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from indexer import metrics
from indexer.config import RpcEndpoint
from indexer.retry import backoff
from indexer.rpc import wire
from indexer.rpc.classify import classify
from indexer.rpc.endpoint import COOL_DOWN
from indexer.rpc.errors import (
    AnswerTooLarge,
    BadAnswer,
    RangeTooLarge,
    RateLimited,
    RpcError,
    RpcServerError,
    RpcTimeout,
    RpcTransportError,
)
from indexer.rpc.transport import Endpoint, http_post, method_label, result_of, summary
from indexer.types import BlockRange

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is cut to this
SPLIT_AFTER = 2  # timeouts or unknown errors in a row on one eth_getLogs range: ask for halves
HEALTHY_SHARE = 0.3  # an endpoint scoring below this share of the best one is passed over
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}

Check = Callable[[Any], None]


class Requester:
    """Requests over one chain's endpoints."""

    def __init__(
        self,
        endpoints: Sequence[RpcEndpoint],
        *,
        chain: str,
        timeout: float,
        max_retries: int,
        backoff_base: float,
        backoff_max: float,
        max_answer_bytes: int,
    ) -> None:
        if not endpoints:
            raise ValueError(f"chain {chain}: no RPC endpoint configured")
        self.chain = chain
        self.endpoints = [Endpoint(e, i) for i, e in enumerate(endpoints)]
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        # Memory bound: an eth_getLogs answer over a range of several blocks larger than this
        # is dropped (AnswerTooLarge) rather than parsed; one block is always read whole.
        self.max_answer_bytes = max_answer_bytes
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self.head_seen = 0  # the highest head ("latest") a node answered through this client
        for ep in self.endpoints:
            metrics.RPC_ENDPOINT_UP.labels(chain=chain, endpoint=ep.label).set(1)
            metrics.RPC_ENDPOINT_HEALTH.labels(chain=chain, endpoint=ep.label).set(1)

    @property
    def batch_size(self) -> int:
        return min(e.batch_size for e in self.endpoints)

    @property
    def timeout(self) -> float:
        """Seconds one request may take."""
        return float(self._timeout.total or 0.0)

    def next_id(self) -> int:
        return next(self._ids)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=30, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, headers=_HEADERS)
        return self._session

    # -- one attempt on one endpoint -----------------------------------------------------

    async def post(self, ep: Endpoint, body: bytes, requested: BlockRange | None) -> Any:
        """POST ``body`` to ``ep``; an answer over several blocks is read up to the memory cap."""
        limit = self.max_answer_bytes if requested is not None and len(requested) > 1 else None
        return await http_post(self._open(), ep.url, body, self._timeout, limit, requested)

    async def single(
        self, ep: Endpoint, method: str, params: list[Any], requested: BlockRange | None
    ) -> Any:
        """One call on ``ep``, not retried: its ``result``."""
        rid = self.next_id()
        doc = await self.post(ep, wire.encode(rid, method, params), requested)
        if type(doc) is not dict:
            raise BadAnswer(f"expected a JSON-RPC reply object, got {type(doc).__name__}")
        result = result_of(doc, requested)
        if doc.get("id") != rid:
            raise BadAnswer(f"reply id {doc.get('id')!r:.40} does not match request {rid}")
        return result

    # -- retried calls --------------------------------------------------------------------

    async def call(self, method: str, params: list[Any], *, check: Check | None = None) -> Any:
        """One call, retried (``check`` may refuse a result: the call is then retried)."""
        async def attempt(ep: Endpoint) -> Any:
            result = await self.single(ep, method, params, None)
            if check is not None:
                check(result)
            return result

        return await self.retrying(method, summary(params), attempt)

    async def batch(self, calls: Sequence[tuple[str, list[Any]]],
                    check: Check | None = None) -> list[Any]:
        """A JSON-RPC batch in chunks of the endpoints' batch size; results in call order."""
        if not calls:
            return []
        size = self.batch_size
        chunks = [calls[i:i + size] for i in range(0, len(calls), size)]
        parts = await asyncio.gather(*(self._batch_chunk(c, check) for c in chunks))
        return [result for part in parts for result in part]

    async def _batch_chunk(
        self, calls: Sequence[tuple[str, list[Any]]], check: Check | None
    ) -> list[Any]:
        async def attempt(ep: Endpoint) -> list[Any]:
            ids = [self.next_id() for _ in calls]
            body = wire.encode_batch([(rid, m, p) for rid, (m, p) in zip(ids, calls, strict=True)])
            doc = await self.post(ep, body, None)
            if type(doc) is dict and "error" in doc:  # the whole batch was refused
                raise classify(200, doc["error"], None, None)
            replies = wire.check_batch_answer(doc, ids)
            results = [result_of(replies[rid], None) for rid in ids]
            if check is not None:
                for result in results:
                    check(result)
            return results

        what = f"batch of {len(calls)} from {summary(calls[0][1])}"
        return await self.retrying(method_label(calls), what, attempt, batch=len(calls) > 1)

    async def retrying(
        self, method: str, what: str, attempt: Callable[[Endpoint], Awaitable[Any]], *,
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

    # -- what each outcome teaches ----------------------------------------------------------

    def _failed(self, ep: Endpoint, method: str, err: RpcError, started: float,
                requested: BlockRange | None, batch: bool) -> None:
        now = time.monotonic()
        self._record(ep, method, err.outcome, started)
        st = ep.state
        if err.reason is not None:
            metrics.RPC_ANSWER_REJECTED.labels(
                chain=self.chain, endpoint=ep.label, reason=err.reason).inc()
        if isinstance(err, RangeTooLarge) and requested is not None:
            st.ranges.on_refused(len(requested), len(err.hint) if err.hint else None, err.limit)
            self.gauge_range(ep)
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

    def _succeeded(self, ep: Endpoint, method: str, started: float, batch: bool) -> None:
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

    async def _after_failure(self, ep: Endpoint, err: RpcError, tries: int) -> Endpoint:
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
        return backoff(n, base=self._backoff_base, cap=self._backoff_max)

    def _pick(self, avoid: Endpoint | None) -> Endpoint:
        """The first endpoint in the file's order that is up, healthy and not throttled; else
        the first up and healthy; else the one up soonest. A preferred endpoint whose breaker
        cool-down just ended gets the request as its trial."""
        eps = self.endpoints
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

    def _gauge_health(self, ep: Endpoint, now: float) -> None:
        st = ep.state
        score = 0.0 if not st.breaker.allows(now) else st.health.score(now, st.health.latency)
        metrics.RPC_ENDPOINT_HEALTH.labels(chain=self.chain, endpoint=ep.label).set(score)

    def gauge_range(self, ep: Endpoint) -> None:
        metrics.RPC_RANGE_SIZE.labels(chain=self.chain, endpoint=ep.label).set(
            ep.state.ranges.size)

    def _record(self, ep: Endpoint, method: str, outcome: str, started: float) -> None:
        metrics.RPC_REQUESTS.labels(
            chain=self.chain, endpoint=ep.label, method=method, outcome=outcome).inc()
        metrics.RPC_DURATION.labels(chain=self.chain, endpoint=ep.label, method=method).observe(
            time.perf_counter() - started)
