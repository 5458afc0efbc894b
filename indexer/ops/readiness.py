"""What ``/status`` says of a running chain (``ChainStatus``, one typed value) and the
readiness rule ``/readyz`` applies to it (pure).

Readiness: a chain is ready when its lag in seconds (the head block's time minus the watermark
block's, measured by the head watch), beyond what its finality depth explains, is under
``max(2 minutes, 30 x block time)``. Until the lag is measured the chain is not ready, so that
every series dashboards and alerts read (``indexer_lag_seconds`` among them) exists once it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MIN_LAG_THRESHOLD = 120.0  # seconds
LAG_THRESHOLD_BLOCKS = 30  # block times


@dataclass(frozen=True, slots=True)
class LiveStatus:
    leader: bool  # this process follows the head
    tip: int | None  # the live tail's highest block
    websocket: bool | None  # newHeads arriving (None: no ws_url)


@dataclass(frozen=True, slots=True)
class EventStatus:
    """How far one event of one contract is (over its addresses or factory children)."""

    contract: str
    event: str
    state: str  # done, backfilling
    percent: float
    eta_seconds: float | None


@dataclass(frozen=True, slots=True)
class ChainStatus:
    chain: str
    chain_id: int
    block_time: float
    finality_depth: int
    head: int  # 0 while not known
    safe: int
    indexed: int  # the watermark
    lag_blocks: int | None
    lag_seconds: int | None
    backlog_ranges: int
    workers: int  # alive, as seen by this process
    last_commit: float | None  # unix time
    live: LiveStatus | None = None  # None: no live tail in this run (--once, --until)
    events: tuple[EventStatus, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The object ``/status`` shows, with the readiness verdict."""
        ready, reason = readiness(self)
        return {**asdict(self), "ready": ready, "reason": reason,
                "lag_threshold_seconds": lag_threshold(self.block_time)}


def lag_threshold(block_time: float) -> float:
    """Seconds of lag (beyond the finality window) a chain may have and still be ready."""
    return max(MIN_LAG_THRESHOLD, LAG_THRESHOLD_BLOCKS * block_time)


def excess_lag_seconds(s: ChainStatus) -> float | None:
    """Lag beyond the finality window, in seconds; None while it is not measured."""
    if not s.head or s.lag_blocks is None or s.lag_seconds is None:
        return None
    return max(0.0, s.lag_seconds - s.finality_depth * s.block_time)


def readiness(s: ChainStatus) -> tuple[bool, str]:
    """(ready, reason) of one chain's status."""
    lag = excess_lag_seconds(s)
    if not s.head or s.lag_blocks is None:
        return False, f"{s.chain}: chain head not known yet"
    if lag is None:
        return False, f"{s.chain}: lag in seconds not measured yet"
    limit = lag_threshold(s.block_time)
    if lag > limit:
        return False, (f"{s.chain}: lag {lag:.0f} s beyond the finality window "
                       f"({s.lag_blocks} blocks behind the head) is over {limit:.0f} s")
    return True, ""
