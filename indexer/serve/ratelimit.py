"""A per-client rate limit (pure): a token bucket per client address, refilled at ``rate``
requests a second up to ``burst``; addresses unseen for a minute are forgotten."""

from __future__ import annotations


class RateLimit:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)
        self._swept = 0.0

    def allow(self, client: str, now: float) -> bool:
        tokens, at = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        ok = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if ok else tokens, now)
        if now - self._swept > 60.0:
            self._swept = now
            self._buckets = {c: v for c, v in self._buckets.items() if now - v[1] < 60.0}
        return ok
