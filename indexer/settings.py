"""Everything the process reads from its environment, read once at the command and passed down.

Names and defaults live here and nowhere else (contract 1). A value that does not parse is a
``SettingsError`` naming the variable, the value and what it should be.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from indexer.lease.board import DEFAULT_TTL as DEFAULT_LEASE_TTL
from indexer.rpc.client import DEFAULT_TIMEOUT as DEFAULT_RPC_TIMEOUT

DEFAULT_SCHEMA = "chaindata"
DEFAULT_METRICS_PORT = 9464
DEFAULT_DB_WAIT = 300.0  # seconds a run waits for an unreachable Postgres before it exits 1
POOLER_MODES = ("auto", "yes", "no")  # INDEXER_DB_POOLER: detect, behind one, direct

# What Postgres accepts as an identifier without surprises (it is quoted everywhere anyway):
# letters, digits, underscores; not starting with a digit; at most 63 bytes.
N = TypeVar("N", int, float)

_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class SettingsError(ValueError):
    """An environment variable holds a value the indexer cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = None  # None: the embedded Postgres under .indexer/
    redis_url: str | None = None  # None: leases in this process (or the --workers parent's)
    lease_url: str | None = None  # the --workers parent's lease board (set for its workers)
    schema: str = DEFAULT_SCHEMA  # where event tables live
    metrics_port: int = DEFAULT_METRICS_PORT  # 0: any free port
    lease_ttl: float = DEFAULT_LEASE_TTL
    worker: str | None = None  # this worker's name; None: HOST:PID
    rpc_timeout: float = DEFAULT_RPC_TIMEOUT
    live_trace: str | None = None  # a file the live tail appends one line per block to
    faults: str = ""  # fault points for tests (see faults.py)
    db_wait: float = DEFAULT_DB_WAIT
    db_pooler: str = "auto"  # behind a transaction pooler (PgBouncer): no prepared statements
    sql_url: str | None = None  # the login `serve` runs /sql statements as; None: derived

    @property
    def tx_timeout(self) -> float:
        """Seconds a writing transaction may take (``Database.bound``): twice the lease TTL, at
        least 10 s. Longer, and a worker's lease is gone anyway; no command holds its locks
        longer than a worker may."""
        return max(10.0, 2 * self.lease_ttl)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        schema = text("INDEXER_SCHEMA") or DEFAULT_SCHEMA
        if not _SCHEMA.fullmatch(schema):
            raise SettingsError(
                f"INDEXER_SCHEMA={schema!r} is not a usable schema name: letters, digits and "
                f"underscores, not starting with a digit, at most 63 characters")
        return cls(
            database_url=text("DATABASE_URL"),
            redis_url=text("REDIS_URL"),
            lease_url=text("INDEXER_LEASE_URL"),
            schema=schema,
            metrics_port=_number(env, "INDEXER_METRICS_PORT", DEFAULT_METRICS_PORT, int, 0, 65535),
            lease_ttl=_number(env, "INDEXER_LEASE_TTL", DEFAULT_LEASE_TTL, float, 1.0, 3600.0),
            worker=text("INDEXER_WORKER"),
            rpc_timeout=_number(env, "INDEXER_RPC_TIMEOUT", DEFAULT_RPC_TIMEOUT, float, 0.1,
                                3600.0),
            live_trace=text("INDEXER_LIVE_TRACE"),
            faults=text("INDEXER_FAULTS") or "",
            db_wait=_number(env, "INDEXER_DB_WAIT", DEFAULT_DB_WAIT, float, 0.0, 86_400.0),
            db_pooler=_choice(env, "INDEXER_DB_POOLER", POOLER_MODES),
            sql_url=text("INDEXER_SQL_URL"),
        )

    def worker_id(self) -> str:
        """This worker's name in leases, range records and status."""
        return self.worker or f"{socket.gethostname()}:{os.getpid()}"


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return choices[0]
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return raw


def _number(env: Mapping[str, str], name: str, default: N, kind: type[N],
                             lo: float, hi: float) -> N:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "whole number" if kind is int else "number"
        raise SettingsError(f"{name}={raw!r} is not a {what}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={raw!r} is out of range ({lo:g} to {hi:g})")
    return value
