"""Fault points for tests: ``INDEXER_FAULTS="before_commit=kill"`` makes the process act at
that point of the pipeline. Actions: ``kill`` (SIGKILL itself), ``stop`` (SIGSTOP itself, to be
continued by SIGCONT), ``sleep:SECONDS``. A point fires once per process unless the action ends
in ``!`` (``kill!`` etc. fire every time). Unset, a point costs one dictionary lookup.

Points: ``after_fetch`` (logs fetched, not decoded), ``after_decode``, ``before_commit`` (before
the transaction opens), ``during_copy`` (half of a table's rows sent in a COPY: the server waits
for the rest; ``sleep`` here blocks the whole process, as a frozen host would), ``after_copy``
(rows copied, transaction not committed).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

_PLAN: dict[str, str] = {}


def configure(spec: str) -> None:
    """Arm the fault points of ``spec`` (the value of ``INDEXER_FAULTS``)."""
    _PLAN.clear()
    for item in filter(None, spec.split(",")):
        name, _, action = item.partition("=")
        _PLAN[name.strip()] = action.strip()


def _take(name: str) -> str | None:
    action = _PLAN.get(name)
    if not action:
        return None
    if not action.endswith("!"):
        del _PLAN[name]
    action = action.rstrip("!")
    if action in ("kill", "stop") or action.startswith("sleep:"):
        return action
    raise ValueError(f"INDEXER_FAULTS: unknown action {action!r} at {name}")


def _act(action: str) -> float:
    """Carry out ``kill`` or ``stop``; the seconds of a ``sleep``."""
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    else:
        return float(action.split(":", 1)[1])
    return 0.0


async def point(name: str) -> None:
    action = _take(name)
    if action is not None and (seconds := _act(action)):
        await asyncio.sleep(seconds)


def records(name: str, rows: Sequence[T]) -> Iterable[T]:
    """``rows`` as they are, or, when ``name`` is armed, rows that act half-way through."""
    if name not in _PLAN or len(rows) < 2:
        return rows
    return _acting(name, rows)


def _acting(name: str, rows: Sequence[T]) -> Iterator[T]:
    half = len(rows) // 2
    yield from rows[:half]
    action = _take(name)
    if action is not None and (seconds := _act(action)):
        time.sleep(seconds)  # the process freezes in the middle of its COPY
    yield from rows[half:]
