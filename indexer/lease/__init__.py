"""Who works on which blocks right now: the lease board (``board``: the protocol and the
in-process board; ``redis``; ``http``: the ``--workers`` parent's), a process's claims on it
(``claims``) and single leadership (``leadership``: the live tail's)."""

from indexer.lease.board import (
    DEFAULT_TTL,
    LIVE_GROUP,
    LIVE_TTL,
    Holding,
    Lease,
    LeaseBoard,
    LeaseLost,
    MemoryLeaseBoard,
    pick,
)
from indexer.lease.redis import RedisLeaseBoard

__all__ = [
    "DEFAULT_TTL",
    "LIVE_GROUP",
    "LIVE_TTL",
    "Holding",
    "Lease",
    "LeaseBoard",
    "LeaseLost",
    "MemoryLeaseBoard",
    "RedisLeaseBoard",
    "pick",
]
