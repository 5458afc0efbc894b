"""One request to one endpoint, below the retry loop: labels that hide API keys, the per-endpoint
record, the POST itself (a body read up to a cap, HTTP errors classified) and unpacking replies.

Endpoint URLs may hold API keys (in the path, query, userinfo or a host label): only
``endpoint_label`` (and text passed through ``Endpoint.scrub``) ever leaves the client, in
errors, logs and labels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from indexer.config import RpcEndpoint
from indexer.rpc import wire
from indexer.rpc.classify import classify
from indexer.rpc.endpoint import EndpointState, Limiter
from indexer.rpc.errors import (
    AnswerTooLarge,
    BadAnswer,
    NodeBehind,
    RpcTimeout,
    RpcTransportError,
)
from indexer.types import BlockRange

DEFAULT_BATCH_SIZE = 100
_TOKENISH = re.compile(r"^(?=.*\d)(?=.*[a-z])[a-z0-9_-]{16,}$", re.IGNORECASE)


def _host(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if host is None:
        return None
    # A key may be a host label (https://KEY.provider.example): keep only readable labels.
    return ".".join("***" if _TOKENISH.match(p) else p for p in host.split("."))


def endpoint_label(url: str, index: int) -> str:
    """``"0:api.avax.network"``: index and host only, never path, query or userinfo; a host
    label that looks like a key is shown as ``***``."""
    return f"{index}:{_host(url) or 'unknown'}"


def _secrets_of(url: str) -> tuple[str, ...]:
    parts = urlsplit(url)
    found = [url, parts.path if len(parts.path) > 1 else "", parts.query, parts.password or ""]
    if parts.username:
        found.append(parts.username)
    found += [p for p in parts.path.split("/") if len(p) >= 8]
    found += [p.split("=", 1)[-1] for p in parts.query.split("&") if "=" in p]
    try:
        host = parts.hostname or ""
    except ValueError:
        host = ""
    found += [p for p in host.split(".") if _TOKENISH.match(p)]
    return tuple(sorted({s for s in found if len(s) >= 4}, key=len, reverse=True))


class Endpoint:
    """One configured endpoint: its label, what is learned about it and the secrets of its URL."""

    def __init__(self, cfg: RpcEndpoint, index: int) -> None:
        self.url = cfg.url
        self.index = index
        self.label = endpoint_label(cfg.url, index)
        rps = cfg.max_requests_per_second
        self.state = EndpointState(Limiter(rps if rps and rps > 0 else None,
                                           cfg.max_batch_size or DEFAULT_BATCH_SIZE))
        self.batch_logs = (cfg.max_batch_size or DEFAULT_BATCH_SIZE) >= 2
        self.receipts = True  # serves eth_getBlockReceipts (until it says otherwise)
        self.secrets = _secrets_of(cfg.url)

    @property
    def batch_size(self) -> int:
        return self.state.limiter.batch

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def summary(params: Sequence[Any]) -> str:
    text = orjson.dumps(params).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def method_label(calls: Sequence[tuple[str, list[Any]]]) -> str:
    first = calls[0][0]
    return first if all(m == first for m, _ in calls) else "batch"


async def http_post(
    session: aiohttp.ClientSession, url: str, body: bytes, timeout: aiohttp.ClientTimeout,
    limit: int | None, requested: BlockRange | None,
) -> Any:
    """POST ``body``; the decoded JSON of a 200 answer (AnswerTooLarge past ``limit`` bytes),
    else the classified error."""
    try:
        async with session.post(url, data=body, timeout=timeout) as resp:
            raw = await _read(resp, limit)
            status = resp.status
            headers = resp.headers
    except TimeoutError:
        raise RpcTimeout(f"no answer within {timeout.total}s") from None
    except aiohttp.ClientError as e:
        # aiohttp messages may quote the URL: keep only the kind and the OS reason.
        reason = getattr(e, "strerror", None) or getattr(
            getattr(e, "os_error", None), "strerror", None)
        detail = f"{type(e).__name__}: {reason}" if reason else type(e).__name__
        raise RpcTransportError(detail) from None
    if status != 200:
        raise classify(status, _error_of(raw), raw[:300].decode("utf-8", "replace"), headers,
                       requested=requested)
    try:
        return wire.loads(raw)
    except orjson.JSONDecodeError:
        raise RpcTransportError(f"truncated or non-JSON body ({len(raw)} bytes)") from None


def result_of(reply: dict[str, Any], requested: BlockRange | None) -> Any:
    if "error" in reply and reply["error"] is not None:
        error = reply["error"]
        raise classify(200, error if isinstance(error, dict) else {"message": str(error)}, None,
                       None, requested=requested)
    if "result" not in reply:
        raise BadAnswer("reply holds neither result nor error")
    return reply["result"]


async def _read(resp: aiohttp.ClientResponse, limit: int | None) -> bytes:
    """The body, or AnswerTooLarge as soon as it grows past ``limit`` bytes."""
    if limit is None or resp.status != 200:
        return await resp.read()
    if resp.content_length is not None:
        if resp.content_length > limit:
            raise AnswerTooLarge(f"answer of {resp.content_length >> 20} MB is over the "
                                 f"{limit >> 20} MB cap")
        return await resp.read()  # no more than it said (aiohttp stops at the length)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(f"answer over the {limit >> 20} MB cap")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_of(raw: bytes) -> dict[str, Any] | None:
    """The JSON-RPC error object of a non-200 body, if it has one."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    error = doc.get("error") if isinstance(doc, dict) else None
    return error if isinstance(error, dict) else None


def check_block(block: Any) -> None:
    if block is None:
        raise NodeBehind("the node has no such block yet")
