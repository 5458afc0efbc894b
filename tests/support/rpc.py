"""A minimal keep-alive JSON-RPC client for driving anvil quickly (single calls and batches).

Deliberately independent of the indexer's own RPC client: the harness must not share code with
what it checks.
"""

from __future__ import annotations

import http.client
import itertools
import json
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit


class RpcError(RuntimeError):
    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(
            f"{method}: {error.get('message')} ({error.get('code')}) {error.get('data', '')}"
        )
        self.method = method
        self.error = error


class JsonRpc:
    """Synchronous JSON-RPC over one persistent HTTP connection (reconnects when dropped)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"only http:// URLs are supported, got {url!r}")
        self.url = url
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._path = parts.path or "/"
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> JsonRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, body: bytes) -> Any:
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout
                )
            try:
                self._conn.request("POST", self._path, body, {"Content-Type": "application/json"})
                resp = self._conn.getresponse()
                data = resp.read()
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
                continue
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status} from {self.url}: {data[:300]!r}")
            return json.loads(data)
        raise AssertionError("unreachable")

    def call(self, method: str, *params: Any) -> Any:
        reply = self._post(
            json.dumps(
                {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
            ).encode()
        )
        if "error" in reply:
            raise RpcError(method, reply["error"])
        return reply["result"]

    def batch(self, calls: Iterable[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Send calls in one HTTP request; results in call order; raises on the first error."""
        requests = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
            for i, (m, p) in enumerate(calls)
        ]
        if not requests:
            return []
        replies = self._post(json.dumps(requests).encode())
        by_id = {r["id"]: r for r in replies}
        out = []
        for req in requests:
            reply = by_id[req["id"]]
            if "error" in reply:
                raise RpcError(req["method"], reply["error"])
            out.append(reply["result"])
        return out
