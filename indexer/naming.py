"""Names that live outside the process: event tables and their columns.

snake_case rule (public contract): an underscore goes between a lower-case letter or digit and
an upper-case letter, and before the last capital of an upper-case run followed by a lower-case
letter; then everything is lower-cased.
"""

from __future__ import annotations

import hashlib
import re

_LOWER_THEN_UPPER = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_RUN_THEN_WORD = re.compile(r"(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_IDENT = re.compile(r"[^a-z0-9_]")

# Postgres truncates identifiers at 63 bytes: longer names are shortened with a hash suffix.
MAX_IDENTIFIER = 63

FIXED_COLUMNS = (
    "chain_id",
    "block_number",
    "block_time",
    "tx_hash",
    "tx_index",
    "log_index",
    "address",
)


def snake_case(name: str) -> str:
    s = _LOWER_THEN_UPPER.sub("_", name)
    s = _RUN_THEN_WORD.sub("_", s)
    return _NOT_IDENT.sub("_", s.lower())


def shorten(name: str, limit: int = MAX_IDENTIFIER) -> str:
    """``name`` if it fits in ``limit`` characters, else a prefix plus 8 hex digits of its hash."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9]}_{digest}"


def table_name(contract: str, event: str, overload_topic0: bytes | None = None) -> str:
    """``<contract>_<event>`` in snake_case; overloads get ``_`` + 8 hex digits of topic0."""
    name = f"{snake_case(contract)}_{snake_case(event)}"
    if overload_topic0 is not None:
        return f"{shorten(name, MAX_IDENTIFIER - 9)}_{overload_topic0.hex()[:8]}"
    return shorten(name, MAX_IDENTIFIER)


def column_names(params: list[str]) -> list[str]:
    """Column names of event parameters, in ABI order, never colliding with fixed columns or
    each other, at most 63 bytes (longer ones cut with a hash of the whole: Postgres would
    truncate them silently, and the table would no longer match its event at the next start)."""
    out: list[str] = []
    for i, raw in enumerate(params):
        name = snake_case(raw) if raw else ""
        if not name:
            name = f"arg{i}"
        elif name in FIXED_COLUMNS:
            name = f"arg_{name}"
        name = shorten(name)
        while name in out or name in FIXED_COLUMNS:
            name = shorten(f"{name}_{i}")
        out.append(name)
    return out
