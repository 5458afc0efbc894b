"""What the client learns about each endpoint (pure: every method takes the time ``now``).

- ``Limiter``: requests per second (cut to 70% on a rate limit that names no wait, at most once
  a second; +10% per good answer, never above the configured rate; unlimited until the first rate limit when none
  is configured) and batch size (halved on a rate-limited batch, +1 per good batch up to the
  configured size).
- ``Breaker``: a circuit breaker. Opens after ``OPEN_AFTER`` consecutive failures of the kinds
  that say "this endpoint is unwell" (transport, timeout, 5xx, bad answers); while open, no
  request goes there; after the cool-down (1 s doubling to 30 s) requests go again, the first
  success closes it and a failure opens it for a longer cool-down.
- ``Health``: a score in [0, 1] from the error rate and latency, both moving averages whose
  weight fades with time, so an endpoint that was avoided recovers its score and is tried again.
- ``RangeLimit``: the eth_getLogs block count the endpoint accepts. Unknown at first (no cap);
  a refusal caps it at the hinted size or half the refused one; a stated maximum ("limited to
  10,000 blocks") is a hard cap never exceeded again. The cap grows by a quarter after every
  ``GROW_AFTER`` full-size answers that were small, but not up to a size it refused (or one block
  past a hinted range), until
  ``FORGET_AFTER`` such answers in a row (the refusal may have been about a dense stretch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MIN_RATE = 2.0  # requests/s an adapted limit never goes below
RATE_CUT = 0.7
RATE_GROWTH = 1.1
OPEN_AFTER = 5
COOL_DOWN = 1.0
COOL_DOWN_MAX = 30.0
HEALTH_ALPHA = 0.2
HEALTH_TAU = 10.0  # seconds for old observations to fade to 1/e
LATENCY_REF = 0.05  # seconds: latency differences below this hardly matter
GROW_AFTER = 2
GROW_BELOW_LOGS = 2_000  # an answer with fewer logs than this is "small"
FORGET_AFTER = 64


@dataclass(slots=True)
class Limiter:
    ceiling: float | None  # configured requests/s; None: unlimited until a rate limit is met
    batch_max: int
    rate: float | None = None
    batch: int = 0
    tokens: float = 0.0
    stamp: float = 0.0
    last_cut: float = -math.inf
    window_start: float = 0.0
    window_count: int = 0
    last_rps: float = 0.0

    def __post_init__(self) -> None:
        self.rate = self.ceiling
        self.batch = self.batch_max
        self.tokens = max(1.0, self.rate or 1.0)

    def take(self, now: float) -> float:
        """Take one request's token; the seconds to wait before sending it."""
        if now - self.window_start >= 1.0:
            elapsed = now - self.window_start
            self.last_rps = self.window_count / elapsed if elapsed < 2.0 else 0.0
            self.window_start, self.window_count = now, 0
        self.window_count += 1
        if self.rate is None:
            return 0.0
        capacity = max(1.0, self.rate)
        self.tokens = min(capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return -self.tokens / self.rate if self.tokens < 0 else 0.0

    def wait(self, now: float) -> float:
        """Seconds before a token is free, without taking it."""
        if self.rate is None:
            return 0.0
        tokens = min(max(1.0, self.rate), self.tokens + (now - self.stamp) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def on_rate_limited(self, now: float, batch: bool, slow_down: bool = True) -> None:
        if batch:
            self.batch = max(1, self.batch // 2)
        if not slow_down or now - self.last_cut < 1.0:
            return  # one cut per second however many requests were in flight
        self.last_cut = now
        seen = max(self.last_rps, self.window_count / max(now - self.window_start, 1.0))
        base = self.rate if self.rate is not None else max(seen, 2 * MIN_RATE)
        self.rate = max(MIN_RATE, base * RATE_CUT)
        self.tokens = min(self.tokens, 0.0)
        self.stamp = now

    def on_ok(self, batch: bool) -> None:
        if batch and self.batch < self.batch_max:
            self.batch += 1
        if self.rate is not None:
            grown = self.rate * RATE_GROWTH
            self.rate = min(self.ceiling, grown) if self.ceiling is not None else grown


@dataclass(slots=True)
class Breaker:
    failures: int = 0
    open_until: float = 0.0
    cool_down: float = COOL_DOWN
    opened: bool = False  # open or half-open (tripped and not yet closed by a success)

    def allows(self, now: float) -> bool:
        return not self.opened or now >= self.open_until

    def on_success(self) -> bool:
        """Record a success; True if this closed a tripped breaker."""
        self.failures = 0
        was = self.opened
        self.opened, self.cool_down = False, COOL_DOWN
        return was

    def on_failure(self, now: float) -> bool:
        """Record a failure; True if this (re)opened the breaker."""
        self.failures += 1
        if self.opened and now >= self.open_until:  # the half-open trial failed
            self.cool_down = min(COOL_DOWN_MAX, self.cool_down * 2)
            self.open_until = now + self.cool_down
            return True
        if not self.opened and self.failures >= OPEN_AFTER:
            self.opened = True
            self.open_until = now + self.cool_down
            return True
        return False


@dataclass(slots=True)
class Health:
    errors: float = 0.0  # moving error rate
    latency: float = 0.0  # moving latency of good answers, seconds
    stamp: float = 0.0

    def _fade(self, now: float) -> float:
        dt = max(0.0, now - self.stamp)
        return math.exp(-dt / HEALTH_TAU)

    def observe(self, now: float, ok: bool, seconds: float) -> None:
        self.errors *= self._fade(now)
        self.stamp = now
        self.errors += HEALTH_ALPHA * ((0.0 if ok else 1.0) - self.errors)
        if ok:
            self.latency = seconds if self.latency == 0.0 else (
                self.latency + HEALTH_ALPHA * (seconds - self.latency))

    def score(self, now: float, best_latency: float) -> float:
        errors = self.errors * self._fade(now)
        speed = (best_latency + LATENCY_REF) / (self.latency + LATENCY_REF)
        return (1.0 - errors) * (0.5 + 0.5 * min(1.0, speed))


@dataclass(slots=True)
class RangeLimit:
    cap: int | None = None  # blocks per eth_getLogs; None: no limit met yet
    hard: int | None = None  # a maximum the endpoint stated
    refused: int | None = None  # smallest size refused since the last FORGET_AFTER
    streak: int = 0
    since_refusal: int = 0
    last: int = 0  # size of the last good request (for the gauge when no cap is known)

    def on_refused(self, size: int, hinted: int | None, stated: int | None) -> None:
        if stated is not None:
            self.hard = min(stated, self.hard or stated)
        new = hinted if hinted is not None else max(1, size // 2)
        if self.hard is not None:
            new = min(new, self.hard)
        self.cap = min(new, self.cap if self.cap is not None else new)
        # A hinted range is the largest that works here: one block more would be refused.
        bad = min(size, hinted + 1) if hinted is not None else size
        self.refused = min(bad, self.refused if self.refused is not None else bad)
        self.streak = self.since_refusal = 0

    def on_ok(self, size: int, logs: int) -> None:
        self.last = size
        if self.cap is None or size < self.cap:
            return
        if logs >= GROW_BELOW_LOGS:
            self.streak = 0
            return
        self.streak += 1
        self.since_refusal += 1
        if self.refused is not None and self.since_refusal >= FORGET_AFTER:
            self.refused = None
        if self.streak < GROW_AFTER:
            return
        self.streak = 0
        new = self.cap + max(1, self.cap // 4)
        if self.refused is not None:
            new = min(new, self.refused - 1)
        if self.hard is not None:
            new = min(new, self.hard)
        self.cap = max(self.cap, new)

    @property
    def size(self) -> int:
        """For the gauge: the cap, else the last size that worked."""
        return self.cap if self.cap is not None else self.last


@dataclass(slots=True)
class EndpointState:
    limiter: Limiter
    breaker: Breaker = field(default_factory=Breaker)
    health: Health = field(default_factory=Health)
    ranges: RangeLimit = field(default_factory=RangeLimit)
    down_until: float = 0.0  # a rate limit or a recent failure: prefer others until then

    def available(self, now: float) -> bool:
        return self.breaker.allows(now) and self.down_until <= now

    def available_at(self) -> float:
        return max(self.down_until, self.breaker.open_until if self.breaker.opened else 0.0)
