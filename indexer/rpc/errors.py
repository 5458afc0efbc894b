"""RPC errors and the provider error catalogue (pure data; ``indexer.rpc.classify`` reads an
answer against it).

Whether to retry is a property of an error's type (``retryable``); what to do next follows from
the type too: ``RangeTooLarge`` means "ask again for a smaller range" (never after a rate
limit), ``RateLimited`` means "wait ``retry_after`` then ask again", the failover kinds move
the next attempt to another endpoint. Provider messages are matched by a catalogue kept as
data (``CATALOGUE``): one entry per known message, first match wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
        self.reason: str | None = None  # set when an answer failed a check (see BadAnswer)

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

    def __init__(
        self, detail: str, *, hint: BlockRange | None = None, limit: int | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(detail, **kw)
        self.hint = hint  # a prefix of the requested range the node suggests, or None
        self.limit = limit  # the block count the node says it accepts at most, if it says


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
    """The answer is well-formed JSON but wrong: out of range, missing fields, missing ids.

    ``reason`` names the failed check (the ``reason`` label of
    ``indexer_rpc_answers_rejected_total``, ``metrics.ANSWER_REJECT_REASONS``): "malformed",
    "range", "filter", "block_hash", "bloom", "log_index"."""

    retryable = True
    failover = True

    def __init__(self, detail: str, *, reason: str = "malformed", **kw: Any) -> None:
        super().__init__(detail, **kw)
        self.reason = reason


class DuplicateLogIndex(BadAnswer):
    """Two logs of ``block`` in one answer share a logIndex (``blocks``: every block of the
    answer where some do). Asking the same again does not cure a node that numbers logs so:
    not retried; the caller reads those blocks' logs from their receipts instead
    (``rpc/receipts.py``)."""

    retryable = False

    def __init__(self, detail: str, *, block: int, log_index: int,
                 blocks: tuple[int, ...] = (), **kw: Any) -> None:
        super().__init__(detail, reason="log_index", **kw)
        self.block = block
        self.log_index = log_index
        self.blocks = tuple(sorted({block, *blocks}))


class MethodUnsupported(RpcError):
    retryable = False


class RpcFatal(RpcError):
    """Retrying cannot help: invalid params, authentication, a request no node will serve."""

    retryable = False


HintKind = Literal["none", "range", "decimal", "size"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One known provider error shape. Every criterion that is set must match.

    ``hint`` says how to read a suggested range out of the text: "range" is a hex pair
    ``[0x.., 0x..]``, "decimal" a pair ``4096-5000``, "size" the named group ``size`` (a block
    count; ``2K``/``10k`` read as thousands). Without a hint the range is halved.
    """

    kind: type[RpcError]
    provider: str  # who answers this way (for readers and for the recorded examples)
    pattern: re.Pattern[str] | None = None
    code: int | None = None  # JSON-RPC error code
    status: int | None = None  # HTTP status
    hint: HintKind = "none"


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_N = r"(?P<size>\d[\d,.]*\s*[kK]?)"  # a block count as providers print it: 10,000 or 2K

CATALOGUE: tuple[Entry, ...] = (
    # -- range too large, with a suggested range in the text. First: Infura and Alchemy use
    # codes (-32005, -32600, -32602) that otherwise mean rate limits or bad params.
    Entry(RangeTooLarge, "Infura, zkSync, thirdweb (-32005 or -32602): 'query returned more "
          "than 10000 results. Try with this block range [0x.., 0x..].'",
          _re(r"try with this block range"), hint="range"),
    Entry(RangeTooLarge, "Alchemy: '... this block range should work: [0x.., 0x..]'",
          _re(r"block range should work"), hint="range"),
    Entry(RangeTooLarge, "reth, Hyperliquid: 'query exceeds max results 20000, retry with the "
          "range 4096-5000'", _re(r"retry with the range \d+\s*-\s*\d+"), hint="decimal"),
    Entry(RangeTooLarge, "Alchemy: 'You can make eth_getLogs requests with up to a 2K block "
          "range'; Aurora", _re(rf"up to a {_N} block range"), hint="size"),
    Entry(RangeTooLarge, "QuickNode -32614, 1RPC, Blast: 'eth_getLogs is limited to a 10,000 "
          "range'", _re(rf"limited to a {_N}(?: blocks?)? range"), hint="size"),
    Entry(RangeTooLarge, "BlockPI: 'eth_getLogs is limited to 1024 block range'",
          _re(rf"limited to {_N} blocks?"), hint="size"),
    Entry(RangeTooLarge, "Avalanche public endpoint: 'requested too many blocks from 0 to "
          "20000, maximum is set to 2048'",
          _re(rf"too many blocks from \d+ to \d+, maximum is set to {_N}"), hint="size"),
    Entry(RangeTooLarge, "Cloudflare: 'Max range: 800'", _re(rf"max range: {_N}"),
          hint="size"),
    Entry(RangeTooLarge, "dRPC: 'ranges over 10000 blocks are not supported on freetier'",
          _re(rf"ranges over {_N} blocks"), hint="size"),
    Entry(RangeTooLarge, "publicnode, Erigon, BSC: 'exceed maximum block range: 50000'",
          _re(rf"maximum block range:? {_N}"), hint="size"),
    Entry(RangeTooLarge, "reth, Hyperliquid: 'query exceeds max block range 100000'",
          _re(rf"exceeds max block range {_N}"), hint="size"),
    Entry(RangeTooLarge, "Coinbase (Base): 'please limit the query to at most 1000 blocks'",
          _re(rf"limit the query to at most {_N} blocks"), hint="size"),
    Entry(RangeTooLarge, "thirdweb: 'Maximum allowed number of requested blocks is 1000'",
          _re(rf"maximum allowed number of requested blocks is {_N}"), hint="size"),
    Entry(RangeTooLarge, "Moonbeam/Moonriver: 'block range is too wide (maximum 1024)'",
          _re(rf"too wide \(maximum {_N}\)"), hint="size"),
    Entry(RangeTooLarge, "Swell, Somnia: 'block range greater than 1000 max', 'block range "
          "exceeds 1000'", _re(rf"block range (?:greater than|exceeds) {_N}"), hint="size"),
    Entry(RangeTooLarge, "Blast paid: 'exceeds the range allowed for your plan (5000 > 1000)'",
          _re(rf"range allowed for your plan \(\d+ > {_N}\)"), hint="size"),
    Entry(RangeTooLarge, "Harmony: 'GetLogs query must be smaller than size 1024'",
          _re(rf"query must be smaller than size {_N}"), hint="size"),
    Entry(RangeTooLarge, "Merkle: 'eth_getLogs range is too large, max is 10k blocks'",
          _re(rf"max is {_N} blocks"), hint="size"),
    Entry(RangeTooLarge, "Ankr (TAC): 'maximum [from, to] blocks distance: 10000'",
          _re(rf"blocks distance: {_N}"), hint="size"),
    Entry(RangeTooLarge, "Nethermind-style: 'too many blocks requested, max is 10000'",
          _re(rf"blocks? requested, max(?:imum)? is {_N}"), hint="size"),
    # -- range too large, no suggestion in the text: halve.
    Entry(RangeTooLarge, "geth-style nodes, zkEVM, Infura: 'query returned more than 10000 "
          "results'", _re(r"returned more than \d+ results")),
    Entry(RangeTooLarge, "Alchemy: 'Log response size exceeded.'; generic 'response size "
          "exceeded'", _re(r"response size (?:exceeded|is larger|is too|should not)")),
    Entry(RangeTooLarge, "Arbitrum: 'logs matched by query exceeds limit of 10000'",
          _re(r"exceeds limit of \d+")),
    Entry(RangeTooLarge, "Ankr -32600 'block range is too wide'; Optimism 'Block range is too "
          "large'; Base 'block range too large'; generic",
          _re(r"block range (?:is )?too (?:wide|large|big)|range is too large"
              r"|too large block range|invalid block range")),
    Entry(RangeTooLarge, "Infura, generic: 'query timeout exceeded. Consider reducing your block "
          "range'", _re(r"(?:consider )?reduc(?:e|ing) (?:your |the )?(?:block )?range")),
    Entry(RangeTooLarge, "Chainstack: 'Block range limit exceeded.'",
          _re(r"range limit exceeded")),
    Entry(RangeTooLarge, "Optimism, llamarpc, Ankr, BlastAPI, Nethermind: 'backend response too "
          "large', 'query exceeds max results', 'too many logs'",
          _re(r"response (?:is )?too (?:large|big)|exceeds max results|too many (?:logs|results"
              r"|blocks)|max(?:imum)? (?:number of )?(?:logs|results)")),
    Entry(RangeTooLarge, "QuickNode, nginx in front of nodes: HTTP 413 Request Entity Too Large",
          status=413),
    # -- rate limits.
    Entry(RateLimited, "every provider: HTTP 429 (Alchemy, QuickNode, Chainstack, publicnode, "
          "Avalanche, Arbitrum, Cloudflare)", status=429),
    Entry(RateLimited, "Alchemy: code 429 'Your app has exceeded its compute units per second "
          "capacity'", code=429),
    Entry(RateLimited, "QuickNode -32007 '100/second request limit reached'", code=-32007),
    Entry(RateLimited, "Ankr -32090 'Too many requests, reason: call rate limit exhausted, "
          "retry in 10s'", code=-32090),
    Entry(RateLimited, "Infura -32005 'project ID request rate exceeded'; Base -32016 'over "
          "rate limit'; dRPC, BlockPI, generic",
          _re(r"rate limit|too many requests|limit (?:exceeded|reached)|compute units"
              r"|request rate|exceeded .*capacity|throughput|slow down|capacity exceeded"
              r"|daily request count|quota")),
    Entry(RateLimited, "Infura -32005 without a known message", code=-32005),
    # -- the node lags behind the block asked for, or is briefly unable to serve.
    Entry(NodeBehind, "geth, Erigon, Nethermind, Avalanche, squid-style checks: 'header not "
          "found', 'unknown block', 'after last accepted block', 'cannot query unfinalized data';"
          " anvil -32602 'block height is N but requested was M' (a block gone in a reorg)",
          _re(r"block height is \d+ but requested was \d+"
              r"|header not found|unknown block|block not found|blocks? specified in filter"
              r".*cannot be found|after last accepted block|cannot query unfinalized|block is out "
              r"of range|beyond (?:the )?current head|greater than (?:the )?(?:current|latest) "
              r"(?:head|block)|not yet (?:available|synced)|unfinalized data")),
    Entry(RpcTransportError, "Base and load balancers: 'no backend is currently healthy to serve "
          "traffic'; 'upstream' errors", _re(r"no backend|backend is (?:currently )?unhealthy"
                                             r"|upstream (?:error|timeout|unavailable)")),
    Entry(RpcTimeout, "dRPC code 35 'Request timeout on the free tier'; generic query timeouts",
          _re(r"request timeout|timed? ?out|execution timeout|query timeout")),
    # -- method and authentication problems.
    Entry(MethodUnsupported, "JSON-RPC -32601 method not found", code=-32601),
    Entry(MethodUnsupported, "generic: 'method ... not supported/available/whitelisted'",
          _re(r"method .*(?:not found|not supported|not available|does not exist|not allowed"
              r"|not whitelisted)|unsupported method|not supported")),
    Entry(RpcFatal, "HTTP 401", status=401),
    Entry(RpcFatal, "HTTP 403", status=403),
    Entry(RpcFatal, "generic: bad credentials", _re(r"invalid (?:api key|project id)"
                                                    r"|unauthori[sz]ed|api key")),
    Entry(RpcFatal, "JSON-RPC -32602 invalid params that are not a range problem", code=-32602),
    Entry(RpcFatal, "JSON-RPC -32600 invalid request", code=-32600),
    Entry(RpcTransportError, "JSON-RPC -32700 parse error: the body was damaged", code=-32700),
)
