"""Reading one chain file's tree: each problem is recorded with its key path instead of
stopping, so that every problem of a file is reported at once."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from indexer.config.values import UNSET, Bad, at_key, describe

_REQUIRED: Any = object()


def shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class Reader:
    """Reads one file's tree, recording each problem with its key path instead of stopping."""

    def __init__(self, source: Path, shown: str) -> None:
        self.source = source
        self.shown = shown
        self.lines: list[str] = []
        self.abis: dict[Path, tuple[dict[str, Any], ...] | Bad] = {}

    def problem(self, at: str, reason: str) -> None:
        self.lines.append(f"{self.shown}: {at}: {reason}" if at else f"{self.shown}: {reason}")

    def mapping(self, node: Any, at: str, allowed: Sequence[str]) -> dict[Any, Any] | None:
        if node is UNSET:
            return None
        if not isinstance(node, dict):
            self.problem(at, f"expected a mapping, got {describe(node)}")
            return None
        for key in node:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(allowed)})"
                self.problem(at_key(at, key), f"unknown key{hint}")
        return node

    def get(self, node: dict[Any, Any], key: str, at: str, parse: Callable[[Any], Any],
            default: Any = _REQUIRED) -> Any:
        """``parse(node[key])``; a missing or null key takes ``default``. None when invalid."""
        value = node.get(key)
        if value is None:
            if default is _REQUIRED:
                self.problem(at_key(at, key), "required key is missing")
                return None
            return default
        if value is UNSET:
            return None
        try:
            return parse(value)
        except Bad as exc:
            self.problem(at_key(at, key), str(exc))
            return None

    def items(self, node: dict[Any, Any], key: str, at: str, what: str) -> list[Any]:
        """The non-empty list ``node[key]``, or [] after reporting why not."""
        value = node.get(key)
        where = at_key(at, key)
        if value is None:
            self.problem(where, "required key is missing")
        elif value is UNSET:
            pass
        elif not isinstance(value, list):
            self.problem(where, f"expected a list of {what}s, got {describe(value)}")
        elif not value:
            self.problem(where, f"must list at least one {what}")
        else:
            return value
        return []
