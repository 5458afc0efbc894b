"""Running the real ``indexer`` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


def env_for(database_url: str | None, rpc_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    if rpc_url is not None:
        env["ANVIL_RPC_URL"] = rpc_url
    env.setdefault("INDEXER_METRICS_PORT", "0")
    env.update(extra)
    return env


def indexer(
    args: Sequence[str], env: Mapping[str, str], *, cwd: Path | None = None, timeout: float = 240
) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "indexer", *args],
        env=dict(env),
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


STARTED: list[subprocess.Popen[bytes]] = []  # killed after each test (tests/conftest.py)


def start_indexer(
    args: Sequence[str], env: Mapping[str, str], *, cwd: Path | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexer", *args],
        env=dict(env),
        cwd=cwd or REPO,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    STARTED.append(proc)
    return proc


def kill_started(since: int = 0) -> None:
    """Kill every indexer started after the first ``since`` ones and left running (with its
    worker processes)."""
    while len(STARTED) > since:
        proc = STARTED.pop()
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def stopped_children(parents: Sequence[int], count: int) -> list[int]:
    """The pids of the children of ``parents`` once ``count`` of them are stopped (state T, as
    the fault ``stop`` leaves them), else []."""
    stopped = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                state, ppid = f.read().rsplit(") ", 1)[1].split()[:2]
        except OSError:
            continue
        if int(ppid) in parents and state == "T":
            stopped.append(int(entry))
    return stopped if len(stopped) == count else []


def wait_for(predicate, timeout: float = 60, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


def write_chain(path: Path, base: str = "anvil", **changes: object) -> Path:
    """A copy of a shipped chain file with top-level keys changed; ABI paths made absolute."""
    data = yaml.safe_load((REPO / "chains" / f"{base}.yaml").read_text())
    for c in data.get("contracts", []):
        c["abi"] = str((REPO / "chains" / c["abi"]).resolve())
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
