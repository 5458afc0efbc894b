"""Answers shared by identical queries read at the same frontier (pure).

An answer depends on the query, its variables and the frontier it was cut at (per table and
chain, the block up to which rows are complete), and on nothing else that can change while
that frontier stands, but for an operator's `indexer reindex` or `verify --repair` replacing
rows in place: so an answer is kept for the frontier it was read at and at most ``ttl``
seconds. Only whole answers (200) are kept, as the bytes sent.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

Key = tuple[str, str | None, str]


def key_of(query: str, name: str | None, variables: Any) -> Key | None:
    """The cache key of a request (None when its variables cannot be keyed)."""
    try:
        return query, name, json.dumps(variables, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None


class AnswerCache:
    def __init__(self, ttl: float, size: int = 2048) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[tuple[Key, int], tuple[float, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._entries.clear()

    def get(self, key: Key, version: int, now: float) -> Any:
        entry = self._entries.get((key, version))
        if entry is None or now - entry[0] > self.ttl:
            self.misses += 1
            return None
        self.hits += 1
        return entry[1]

    def put(self, key: Key, version: int, value: Any, now: float) -> None:
        self._entries[(key, version)] = (now, value)
        self._entries.move_to_end((key, version))
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
