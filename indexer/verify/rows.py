"""Stored rows against the rows the chain's logs decode to (pure): what is missing, extra or
changed, block by block.

Values are compared as the table holds them: ``numeric`` as integers, ``jsonb`` as the JSON
value (Postgres keeps its own key order and spacing), everything else as is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

Kind = Literal["missing", "extra", "changed"]


@dataclass(frozen=True, slots=True, order=True)
class Difference:
    """One row of ``table`` that differs: ``missing`` (on the chain, not in the table),
    ``extra`` (in the table, not on the chain) or ``changed`` (both, other values)."""

    table: str
    block: int
    log_index: int
    kind: Kind


def _json(value: Any) -> Any:
    doc = json.loads(value) if isinstance(value, str) else value
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, Decimal | int) and not isinstance(value, bool) \
        else value


def normalisers(types: Sequence[str]) -> list[Callable[[Any], Any] | None]:
    """Per column, how a value is brought to its comparable form (None: as it is)."""
    out: list[Callable[[Any], Any] | None] = []
    for t in types:
        if t == "jsonb":
            out.append(_json)
        elif t.startswith("numeric"):
            out.append(_number)
        else:
            out.append(None)
    return out


def canonical(row: Sequence[Any], norm: Sequence[Callable[[Any], Any] | None]) -> tuple[Any, ...]:
    return tuple(v if f is None or v is None else f(v) for v, f in zip(row, norm, strict=True))


def compare(table: str, types: Sequence[str], chain: Sequence[Sequence[Any]],
            stored: Sequence[Sequence[Any]]) -> list[Difference]:
    """The differences between the rows of the chain and the stored rows of one table (rows
    in column order: block number at 1, log index at 5).

    Rows equal as they are (an int equals the Decimal of the same value) are equal; only the
    others are brought to their comparable forms, so a table that matches costs one tuple
    comparison per row."""
    norm = normalisers(types)
    want: Mapping[tuple[int, int], Sequence[Any]] = {(r[1], r[5]): r for r in chain}
    have: Mapping[tuple[int, int], Sequence[Any]] = {(r[1], r[5]): r for r in stored}
    out: list[Difference] = []
    for key, row in want.items():
        got = have.get(key)
        if got is None:
            out.append(Difference(table, key[0], key[1], "missing"))
        elif tuple(got) != tuple(row) and canonical(got, norm) != canonical(row, norm):
            out.append(Difference(table, key[0], key[1], "changed"))
    out.extend(Difference(table, k[0], k[1], "extra") for k in have if k not in want)
    return sorted(out)


def blocks_of(differences: Sequence[Difference]) -> list[int]:
    return sorted({d.block for d in differences})
