"""RPC errors and the provider error catalogue (pure).

Whether to retry is a property of an error's type (``retryable``); what to do next follows from
the type too: ``RangeTooLarge`` means "ask again for a smaller range" (never after a rate
limit), ``RateLimited`` means "wait ``retry_after`` then ask again", the failover kinds move
the next attempt to another endpoint. Provider messages are matched by a catalogue kept as
data (``CATALOGUE``): one entry per known message, first match wins.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal

from indexer.types import BlockRange


class RpcError(Exception):
    """A failed JSON-RPC request. ``str()`` reads "METHOD WHAT on endpoint LABEL: DETAIL".

    ``endpoint`` is always an endpoint label (index and host), never a URL: URLs may hold keys.
    """

    retryable: ClassVar[bool] = False
    failover: ClassVar[bool] = False  # the next attempt should prefer another endpoint
    outcome: ClassVar[str] = "error"  # value of the ``outcome`` metric label

    def __init__(
        self,
        detail: str,
        *,
        endpoint: str | None = None,
        method: str | None = None,
        what: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.endpoint = endpoint
        self.method = method
        self.what = what  # summary of the params, e.g. a block range
        self.attempts = 1

    def __str__(self) -> str:
        head = " ".join(p for p in (self.method, self.what) if p)
        if self.endpoint:
            head = f"{head} on endpoint {self.endpoint}" if head else f"endpoint {self.endpoint}"
        tail = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"{head}: {self.detail}{tail}" if head else f"{self.detail}{tail}"


class RangeTooLarge(RpcError):
    """The node refuses the block range (too many blocks or results): split it and ask again."""

    retryable = True
    outcome = "range_too_large"

    def __init__(self, detail: str, *, hint: BlockRange | None = None, **kw: Any) -> None:
        super().__init__(detail, **kw)
        self.hint = hint  # a prefix of the requested range the node suggests, or None


class AnswerTooLarge(RpcError):
    """An eth_getLogs answer over the client's size cap: nothing of it is kept; the caller
    asks again for fewer blocks. Not retried by the client: the size is the caller's choice."""

    retryable = True
    outcome = "range_too_large"


class RateLimited(RpcError):
    retryable = True
    failover = True
    outcome = "rate_limited"

    def __init__(self, detail: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(detail, **kw)
        self.retry_after = retry_after  # seconds, from the Retry-After header


class NodeBehind(RpcError):
    """The node does not have the block yet (or serves a stale view): retry elsewhere/later."""

    retryable = True
    failover = True
    outcome = "node_behind"


class RpcTimeout(RpcError):
    retryable = True
    failover = True
    outcome = "timeout"


class RpcTransportError(RpcError):
    """Connection refused/reset, HTTP 5xx, a truncated or non-JSON body."""

    retryable = True
    failover = True


class RpcServerError(RpcError):
    """A JSON-RPC error the catalogue does not know (often a transient internal error)."""

    retryable = True
    failover = True


class BadAnswer(RpcError):
    """The answer is well-formed JSON but wrong: out of range, missing fields, missing ids."""

    retryable = True
    failover = True


class MethodUnsupported(RpcError):
    retryable = False


class RpcFatal(RpcError):
    """Retrying cannot help: invalid params, authentication, a request no node will serve."""

    retryable = False


HintKind = Literal["none", "range", "size"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One known provider error. Every criterion that is set must match."""

    kind: type[RpcError]
    pattern: re.Pattern[str] | None = None
    code: int | None = None  # JSON-RPC error code
    status: int | None = None  # HTTP status
    hint: HintKind = "none"  # "range": "[0x.., 0x..]" in the text; "size": group ``size``
    source: str = ""  # where the message comes from, for readers


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


CATALOGUE: tuple[Entry, ...] = (
    # Range too large. Before the rate limits: Infura uses -32005 for both.
    Entry(RangeTooLarge, _re(r"query returned more than \d+ results"), hint="range",
          source="Infura -32005 'Try with this block range [0x.., 0x..]'"),
    Entry(RangeTooLarge, _re(r"log response size exceeded"), hint="range",
          source="Alchemy, optionally 'this block range should work: [0x.., 0x..]'"),
    Entry(RangeTooLarge, _re(r"limited to a (?P<size>[\d,]+) (?:blocks? )?range"), hint="size",
          source="QuickNode -32614"),
    Entry(RangeTooLarge, _re(r"exceed(?:s|ed)? maximum block range:? (?P<size>\d+)"),
          hint="size", source="Erigon, BSC, Nethermind"),
    Entry(RangeTooLarge, _re(r"ranges over (?P<size>\d+) blocks are not supported"),
          hint="size", source="Cloudflare"),
    Entry(RangeTooLarge, _re(r"requested too many blocks from \d+ to \d+, maximum is set to "
                             r"(?P<size>\d+)"), hint="size", source="Base, Optimism nodes"),
    Entry(RangeTooLarge, _re(r"block range (?:is )?too (?:wide|large)|block range limit"),
          source="Ankr, Avalanche, generic"),
    Entry(RangeTooLarge, _re(r"response size (?:exceeded|is larger|should not)"),
          source="Chainstack, generic"),
    Entry(RangeTooLarge, _re(r"query exceeds max results|too many (?:logs|results|blocks)"),
          source="BlastAPI, generic"),
    Entry(RangeTooLarge, status=413, source="QuickNode HTTP 413"),
    # Rate limits.
    Entry(RateLimited, status=429, source="HTTP 429"),
    Entry(RateLimited, code=429, source="Alchemy code 429"),
    Entry(RateLimited, _re(r"rate limit|too many requests|limit exceeded|compute units"
                           r"|request rate exceeded|exceeded .*capacity"),
          source="Infura -32005, Alchemy, generic"),
    Entry(RateLimited, code=-32005, source="Infura -32005 without a known message"),
    # The node lags behind the block asked for.
    Entry(NodeBehind, _re(r"header not found|unknown block|block not found"
                          r"|after last accepted block"),
          source="geth, Avalanche, generic"),
    # Method and authentication problems.
    Entry(MethodUnsupported, code=-32601, source="JSON-RPC method not found"),
    Entry(MethodUnsupported, _re(r"method .*(?:not found|not supported|not available"
                                 r"|does not exist)|not supported"), source="generic"),
    Entry(RpcFatal, status=401, source="HTTP 401"),
    Entry(RpcFatal, status=403, source="HTTP 403"),
    Entry(RpcFatal, _re(r"invalid (?:api key|project id)|unauthorized"), source="generic"),
    Entry(RpcFatal, code=-32602, source="invalid params that are not a range problem"),
    Entry(RpcFatal, code=-32600, source="invalid request"),
    Entry(RpcTransportError, code=-32700, source="parse error: the body was damaged"),
)

_HEX_PAIR = re.compile(r"\[\s*(0x[0-9a-f]+)\s*,\s*(0x[0-9a-f]+)\s*\]", re.IGNORECASE)


def clamp_hint(hint: BlockRange | None, requested: BlockRange | None) -> BlockRange | None:
    """The hint clamped into ``requested`` if it is then a proper prefix of it, else None."""
    if hint is None or requested is None:
        return None
    start, end = max(hint.start, requested.start), min(hint.end, requested.end)
    if start != requested.start or end < start or end >= requested.end:
        return None
    return BlockRange(start, end)


def _hint(
    entry: Entry, match: re.Match[str] | None, text: str, requested: BlockRange | None
) -> BlockRange | None:
    if requested is None:
        return None
    if entry.hint == "range":
        pair = _HEX_PAIR.search(text)
        if pair is None:
            return None
        lo, hi = int(pair.group(1), 16), int(pair.group(2), 16)
        return clamp_hint(BlockRange(lo, hi), requested) if lo <= hi else None
    if entry.hint == "size" and match is not None:
        size = int(match.group("size").replace(",", ""))
        if size < 1:
            return None
        return clamp_hint(BlockRange(requested.start, requested.start + size - 1), requested)
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
    if status is not None and status >= 500:
        return RpcTransportError(f"HTTP {status}: {text}".rstrip(": "))
    if status is not None and status != 200:
        return RpcFatal(f"HTTP {status}: {text}".rstrip(": "))
    if error is not None:
        return RpcServerError(text)
    return RpcTransportError(text or "empty or malformed answer")


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
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(error, dict):
        text = str(error.get("message", ""))
        data = error.get("data")
        if data:
            text = f"{text} {data}"
        if code is not None:
            text = f"{text} (code {code})"
    else:
        text = (body_text or "")[:300]
    for entry in CATALOGUE:
        found = _matches(entry, http_status, code, text)
        if found is False:
            continue
        match = found if isinstance(found, re.Match) else None
        detail = text or f"HTTP {http_status}"
        if entry.kind is RangeTooLarge:
            return RangeTooLarge(detail, hint=_hint(entry, match, text, requested))
        if entry.kind is RateLimited:
            after = parse_retry_after(_header(headers, "Retry-After"))
            return RateLimited(detail, retry_after=after)
        return entry.kind(detail)
    return _fallback(http_status, error if isinstance(error, dict) else None, text)
