"""What the client learns per endpoint: rate, batch size, circuit breaker, health, range cap
(pure, with a fake clock)."""

from __future__ import annotations

import pytest

from indexer.rpc.endpoint import (
    COOL_DOWN,
    FORGET_AFTER,
    GROW_BELOW_LOGS,
    MIN_RATE,
    OPEN_AFTER,
    Breaker,
    Health,
    Limiter,
    RangeLimit,
)


def test_limiter_spaces_requests_at_the_configured_rate() -> None:
    lim = Limiter(10.0, 50)
    waits = [lim.take(100.0) for _ in range(15)]
    assert waits[:10] == [0.0] * 10  # the burst
    assert waits[10] == pytest.approx(0.1) and waits[14] == pytest.approx(0.5)


def test_rate_limit_cuts_the_rate_once_per_second_and_success_grows_it_back() -> None:
    lim = Limiter(10.0, 50)
    lim.on_rate_limited(100.0, batch=False)
    lim.on_rate_limited(100.1, batch=False)  # the same burst of 429s: one cut
    assert lim.rate == pytest.approx(7.0)
    for _ in range(100):
        lim.on_ok(batch=False)
    assert lim.rate == 10.0  # never above the configured rate


def test_unconfigured_rate_is_unlimited_until_a_rate_limit() -> None:
    lim = Limiter(None, 100)
    assert all(lim.take(5.0 + i * 0.01) == 0.0 for i in range(40))
    lim.on_rate_limited(5.5, batch=True)
    assert lim.rate is not None and lim.rate >= MIN_RATE
    assert lim.batch == 50


def test_rate_never_goes_below_the_floor() -> None:
    lim = Limiter(2.0, 10)
    for t in range(20):
        lim.on_rate_limited(float(t * 2), batch=True)
    assert lim.rate == MIN_RATE and lim.batch == 1


def test_breaker_opens_after_consecutive_failures_and_closes_on_success() -> None:
    br = Breaker()
    for i in range(OPEN_AFTER - 1):
        assert not br.on_failure(10.0 + i)
    assert br.on_failure(20.0)
    assert not br.allows(20.0 + COOL_DOWN / 2)
    assert br.allows(20.0 + COOL_DOWN)  # half-open: requests go again
    assert br.on_failure(21.5)  # the trial failed: open again, longer
    assert br.cool_down == 2 * COOL_DOWN and not br.allows(22.0)
    assert br.allows(21.5 + 2 * COOL_DOWN)
    assert br.on_success() and br.allows(0.0) and br.cool_down == COOL_DOWN


def test_a_success_between_failures_keeps_the_breaker_closed() -> None:
    br = Breaker()
    for i in range(20):
        if i % 3 == 0:
            br.on_success()
        else:
            assert not br.on_failure(float(i))


def test_health_falls_with_errors_and_recovers_with_time() -> None:
    h = Health()
    for t in range(10):
        h.observe(float(t), False, 0.1)
    low = h.score(10.0, 0.01)
    assert low < 0.5
    assert h.score(100.0, 0.01) > 0.9 * h.score(1000.0, 0.01)  # faded
    fast, slow = Health(), Health()
    fast.observe(0.0, True, 0.01)
    slow.observe(0.0, True, 1.0)
    assert fast.score(0.0, 0.01) > slow.score(0.0, 0.01) >= 0.5


def test_range_cap_follows_the_hint_or_halves() -> None:
    r = RangeLimit()
    assert r.cap is None
    r.on_refused(1000, hinted=None, stated=None)
    assert r.cap == 500
    r.on_refused(500, hinted=120, stated=None)
    assert r.cap == 120


def test_range_cap_grows_back_slowly_on_small_answers_but_not_to_a_refused_size() -> None:
    r = RangeLimit()
    r.on_refused(200, hinted=None, stated=None)
    sizes = []
    for _ in range(20):
        r.on_ok(r.cap or 0, logs=10)
        sizes.append(r.cap)
    assert sizes[1] == 125 and max(sizes) == 199  # below the refused 200
    big = RangeLimit(cap=100)
    big.on_ok(100, logs=GROW_BELOW_LOGS)
    big.on_ok(100, logs=GROW_BELOW_LOGS)
    assert big.cap == 100  # large answers do not grow it


def test_a_hinted_range_is_kept_until_the_refusal_is_forgotten() -> None:
    r = RangeLimit()
    r.on_refused(1000, hinted=100, stated=None)
    for _ in range(FORGET_AFTER - 1):
        r.on_ok(r.cap or 0, logs=1)
    assert r.cap == 100


def test_a_refusal_is_forgotten_after_many_small_answers() -> None:
    r = RangeLimit()
    r.on_refused(200, hinted=199, stated=None)
    for _ in range(FORGET_AFTER + 4):
        r.on_ok(r.cap or 0, logs=1)
    assert r.cap is not None and r.cap > 200


def test_a_stated_maximum_is_never_exceeded() -> None:
    r = RangeLimit()
    r.on_refused(5000, hinted=1000, stated=1000)
    for _ in range(FORGET_AFTER * 3):
        r.on_ok(r.cap or 0, logs=0)
    assert r.cap == 1000


def test_smaller_requests_do_not_grow_the_cap() -> None:
    r = RangeLimit(cap=100)
    for _ in range(10):
        r.on_ok(10, logs=0)
    assert r.cap == 100 and r.size == 100
    assert RangeLimit(last=0).size == 0
