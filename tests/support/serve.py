"""Running the real ``indexer serve`` in a subprocess and asking it things, as a client would."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cli import start_indexer, stop
from tests.support.services import free_port


@dataclass
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str  # http://127.0.0.1:PORT
    log: Path

    def post(self, path: str, body: Any, headers: Mapping[str, str] | None = None,
             timeout: float = 30) -> Reply:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST", headers={
            "Content-Type": "application/json", **(headers or {})})
        return _send(req, timeout)

    def get(self, path: str, headers: Mapping[str, str] | None = None,
            timeout: float = 30) -> Reply:
        return _send(urllib.request.Request(self.url + path, headers=dict(headers or {})),
                     timeout)

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None,
                **headers: str) -> Reply:
        return self.post("/graphql", {"query": query, "variables": variables or {}},
                         headers=headers)

    def data(self, query: str, variables: Mapping[str, Any] | None = None) -> Any:
        """The data of a query that must succeed."""
        got = self.graphql(query, variables)
        assert got.status == 200 and "errors" not in got.body, (got.status, got.body)
        return got.body["data"]

    def sql(self, sql: str, params: Sequence[Any] = ()) -> Reply:
        return self.post("/sql", {"sql": sql, "params": list(params)})

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> int:
        return stop(self.proc)


def _send(req: urllib.request.Request, timeout: float) -> Reply:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status, headers = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as e:
        raw, status, headers = e.read(), e.code, dict(e.headers)
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode(errors="replace")
    return Reply(status, body, headers)


def start_serve(env: Mapping[str, str], log: Path, args: Sequence[str] = (),
                timeout: float = 60) -> Served:
    """``indexer serve`` on a free port, once it answers /readyz."""
    port = free_port()
    proc = start_indexer(["serve", "--port", str(port), "--poll-interval", "0.05", *args],
                         env, log=log)
    served = Served(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"indexer serve exited {proc.returncode}:\n{served.output()}")
        try:
            if served.get("/readyz", timeout=2).status == 200:
                return served
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"indexer serve not ready in {timeout} s:\n{served.output()}")
        time.sleep(0.1)
