"""The filter of an eth_getLogs request as the answer checks read it (pure): the addresses and
topic0s asked for, lower-case, with their bytes for the logsBloom test; whether a log matches
it; and the two halves of its address list, for a block holding more matching logs than a
provider serves in one answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LogFilter:
    """``addresses``/``topic0s`` None: no filter on that field. ``asked``: the addresses in
    the order of the request (what ``halves`` splits)."""

    params: dict[str, Any]
    addresses: frozenset[str] | None
    topic0s: frozenset[str] | None
    address_bytes: tuple[bytes, ...] | None
    topic_bytes: tuple[bytes, ...] | None
    asked: tuple[str, ...] | None


def log_filter(addresses: Sequence[str] | None, topic0s: Sequence[str] | None) -> LogFilter:
    params: dict[str, Any] = {}
    if addresses is not None:
        params["address"] = list(addresses)
    if topic0s is not None:
        params["topics"] = [list(topic0s)]
    addrs = None if addresses is None else frozenset(a.lower() for a in addresses)
    topics = None if topic0s is None else frozenset(t.lower() for t in topic0s)
    return LogFilter(
        params, addrs, topics,
        None if addrs is None else tuple(bytes.fromhex(a[2:]) for a in addrs),
        None if topics is None else tuple(bytes.fromhex(t[2:]) for t in topics),
        None if addresses is None else tuple(addresses),
    )


def halves(flt: LogFilter) -> tuple[LogFilter, LogFilter] | None:
    """The filter with the first and with the second half of its address list (same topics);
    None when it has fewer than two addresses. Every log the filter matches is matched by
    exactly one half."""
    if flt.asked is None or len(flt.asked) < 2:
        return None
    topics = list(flt.topic0s) if flt.topic0s is not None else None
    cut = len(flt.asked) // 2
    return log_filter(flt.asked[:cut], topics), log_filter(flt.asked[cut:], topics)


def matches(lg: Any, flt: LogFilter) -> bool:
    """Whether ``lg`` (a log object as a node sends it) is one the filter asks for."""
    if not isinstance(lg, dict):
        return False
    addr, topics = str(lg.get("address", "")).lower(), lg.get("topics") or []
    if flt.addresses is not None and addr not in flt.addresses:
        return False
    return flt.topic0s is None or bool(topics) and str(topics[0]).lower() in flt.topic0s
