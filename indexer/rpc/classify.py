"""What a provider's error answer means (pure): its HTTP status, JSON-RPC code and text matched
against the catalogue (``indexer.rpc.errors.CATALOGUE``, first match wins) into an error of the
right kind, with the range hint and the wait the answer gives.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from indexer.rpc.errors import (
    CATALOGUE,
    Entry,
    RangeTooLarge,
    RateLimited,
    RpcError,
    RpcFatal,
    RpcServerError,
    RpcTimeout,
    RpcTransportError,
)
from indexer.types import BlockRange

_HEX_PAIR = re.compile(r"\[\s*(0x[0-9a-f]+)\s*,\s*(0x[0-9a-f]+)\s*\]", re.IGNORECASE)
_DEC_PAIR = re.compile(r"range (\d+)\s*-\s*(\d+)", re.IGNORECASE)
_RETRY_IN = re.compile(r"(?:retry|try again) (?:in|after) (\d+(?:\.\d+)?)\s*(ms|s|sec|seconds?)?\b",
                       re.IGNORECASE)


def clamp_hint(hint: BlockRange | None, requested: BlockRange | None) -> BlockRange | None:
    """The hint clamped into ``requested`` if it is then a proper prefix of it, else None."""
    if hint is None or requested is None:
        return None
    start, end = max(hint.start, requested.start), min(hint.end, requested.end)
    if start != requested.start or end < start or end >= requested.end:
        return None
    return BlockRange(start, end)


def _size(text: str) -> int:
    """``"10,000"`` -> 10000, ``"2K"`` -> 2000, ``"1.5k"`` -> 1500."""
    text = text.strip().lower()
    thousands = text.endswith("k")
    text = text.rstrip("k").strip()
    if thousands:
        return int(float(text.replace(",", "")) * 1000)
    return int(text.replace(",", "").replace(".", ""))


def _hint(
    entry: Entry, match: re.Match[str] | None, text: str, requested: BlockRange | None
) -> BlockRange | None:
    if requested is None:
        return None
    if entry.hint in ("range", "decimal"):
        pair = (_HEX_PAIR if entry.hint == "range" else _DEC_PAIR).search(text)
        if pair is None:
            return None
        lo, hi = int(pair.group(1), 0), int(pair.group(2), 0)
        return clamp_hint(BlockRange(lo, hi), requested) if lo <= hi else None
    if entry.hint == "size" and match is not None:
        try:
            size = _size(match.group("size"))
        except ValueError:
            return None
        if size < 1:
            return None
        return clamp_hint(BlockRange(requested.start, requested.start + size - 1), requested)
    return None


def _limit(entry: Entry, match: re.Match[str] | None) -> int | None:
    if entry.hint != "size" or match is None:
        return None
    try:
        size = _size(match.group("size"))
    except ValueError:
        return None
    return size if size >= 1 else None


def _retry_after(headers: Mapping[str, str] | None, error: dict[str, Any] | None,
                 text: str) -> float | None:
    """Seconds to wait: the Retry-After header, Infura's ``data.backoff_seconds``, or a
    "retry in 10s" in the message (Ankr); None if none says."""
    after = parse_retry_after(_header(headers, "Retry-After"))
    if after is not None:
        return after
    data = error.get("data") if isinstance(error, dict) else None
    if isinstance(data, dict):
        for key in ("backoff_seconds", "retry_after", "retryAfter"):
            value = data.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return float(value)
    found = _RETRY_IN.search(text)
    if found is not None:
        value = float(found.group(1))
        return value / 1000 if (found.group(2) or "").lower() == "ms" else value
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or HTTP-date); None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lower = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lower), None)


def _matches(entry: Entry, status: int | None, code: Any, text: str) -> re.Match[str] | bool:
    if entry.status is not None and entry.status != status:
        return False
    if entry.code is not None and entry.code != code:
        return False
    if entry.pattern is None:
        return True
    return entry.pattern.search(text) or False


def _fallback(status: int | None, error: dict[str, Any] | None, text: str) -> RpcError:
    """Unknown failures: 5xx and unknown JSON-RPC errors (also under HTTP 400) are retried;
    another 4xx without a JSON-RPC error is fatal."""
    if status is not None and status >= 500:
        return RpcTransportError(f"HTTP {status}: {text}".rstrip(": "))
    if status == 408:
        return RpcTimeout(f"HTTP 408: {text}".rstrip(": "))
    if status == 400 and error is not None:
        return RpcServerError(f"HTTP 400: {text}")
    if status is not None and status != 200:
        return RpcFatal(f"HTTP {status}: {text}".rstrip(": "))
    if error is not None:
        return RpcServerError(text)
    return RpcTransportError(text or "empty or malformed answer")


def _text_of(error: dict[str, Any] | None, body_text: str | None) -> str:
    if not isinstance(error, dict):
        return (body_text or "")[:300]
    text = str(error.get("message", ""))
    data = error.get("data")
    if data:
        text = f"{text} {data}"
    code = error.get("code")
    if code is not None:
        text = f"{text} (code {code})"
    return text


def match_entry(
    http_status: int | None, error: dict[str, Any] | None, body_text: str | None
) -> Entry | None:
    """The catalogue entry a failed answer matches (first wins), or None."""
    code = error.get("code") if isinstance(error, dict) else None
    text = _text_of(error, body_text)
    for entry in CATALOGUE:
        if _matches(entry, http_status, code, text) is not False:
            return entry
    return None


def classify(
    http_status: int | None,
    error: dict[str, Any] | None,
    body_text: str | None,
    headers: Mapping[str, str] | None = None,
    *,
    requested: BlockRange | None = None,
) -> RpcError:
    """The error for a failed answer: an HTTP status, a JSON-RPC ``error`` object, or both.

    ``requested`` is the block range of an eth_getLogs request; range hints are clamped to it.
    """
    error = error if isinstance(error, dict) else None
    code = error.get("code") if error is not None else None
    text = _text_of(error, body_text)
    for entry in CATALOGUE:
        found = _matches(entry, http_status, code, text)
        if found is False:
            continue
        match = found if isinstance(found, re.Match) else None
        detail = text or f"HTTP {http_status}"
        if entry.kind is RangeTooLarge:
            return RangeTooLarge(detail, hint=_hint(entry, match, text, requested),
                                 limit=_limit(entry, match))
        if entry.kind is RateLimited:
            return RateLimited(detail, retry_after=_retry_after(headers, error, text))
        return entry.kind(detail)
    return _fallback(http_status, error, text)
