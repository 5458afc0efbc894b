"""Fault points for tests: ``INDEXER_FAULTS="before_commit=kill"`` makes the process act at
that point of the pipeline. Actions: ``kill`` (SIGKILL itself), ``stop`` (SIGSTOP itself, to be
continued by SIGCONT), ``sleep:SECONDS``. A point fires once per process unless the action ends
in ``!`` (``kill!`` etc. fire every time). Unset, a point costs one dictionary lookup.

Points: ``after_fetch`` (logs fetched, not decoded), ``after_decode``, ``before_commit`` (before
the transaction opens), ``after_copy`` (rows copied, transaction not committed).
"""

from __future__ import annotations

import asyncio
import os
import signal

_PLAN: dict[str, str] = {}


def configure(spec: str) -> None:
    """Arm the fault points of ``spec`` (the value of ``INDEXER_FAULTS``)."""
    _PLAN.clear()
    for item in filter(None, spec.split(",")):
        name, _, action = item.partition("=")
        _PLAN[name.strip()] = action.strip()


async def point(name: str) -> None:
    action = _PLAN.get(name)
    if not action:
        return
    if not action.endswith("!"):
        del _PLAN[name]
    action = action.rstrip("!")
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif action.startswith("sleep:"):
        await asyncio.sleep(float(action.split(":", 1)[1]))
    else:
        raise ValueError(f"INDEXER_FAULTS: unknown action {action!r} at {name}")
