"""What the benchmark scripts share: one timed `indexer run --once` into a fresh database, and
reading its summary."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.services import drop_database, fresh_database  # noqa: E402

EVENTS = re.compile(r"; ([\d,]+) events in")


def timed_run(chain: Path, rpc_url: str, admin_url: str, args: Sequence[str] = (),
              env: Mapping[str, str] | None = None,
              through: Callable[[str], str] | None = None) -> tuple[str, float]:
    """Run ``indexer run --chain CHAIN --once ARGS`` into a fresh database (dropped after);
    its stderr and wall seconds. ``through``: the URL the indexer gets for the database's
    (e.g. a pooler in front of it). Exits with the error when the run fails."""
    url = asyncio.run(fresh_database(admin_url, prefix="bench"))
    full_env = dict(os.environ, DATABASE_URL=through(url) if through else url,
                    ANVIL_RPC_URL=rpc_url, INDEXER_METRICS_PORT="0", **(env or {}))
    cmd = [sys.executable, "-m", "indexer", "run", "--chain", str(chain), "--once", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    asyncio.run(drop_database(admin_url, url))
    if proc.returncode != 0:
        raise SystemExit(f"indexer failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stderr, wall


def events_in(stderr: str) -> int:
    """Events committed, summed over the summaries of every worker."""
    return sum(int(m.replace(",", "")) for m in EVENTS.findall(stderr))
