"""The opaque cursor of a page: the key (chain_id, block_number, log_index) of the last row
served and the order it was served in (pure). Pages are keyset pages: the next one starts
strictly after that key, so no row is served twice and none is skipped, whatever is written
meanwhile above it."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from indexer.serve.values import INT64_MAX, INT64_MIN, InputError

_VERSION = "1"
_FORM = re.compile(r"1:([ad]):(-?\d{1,19}):(-?\d{1,19}):(-?\d{1,10})")


@dataclass(frozen=True, slots=True, order=True)
class Position:
    chain_id: int
    block_number: int
    log_index: int


def encode(position: Position, descending: bool) -> str:
    text = (f"{_VERSION}:{'d' if descending else 'a'}:{position.chain_id}:"
            f"{position.block_number}:{position.log_index}")
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def form(cursor: str) -> re.Match[str] | None:
    """The parts of a cursor, None for a string that is not one."""
    if len(cursor) > 200:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return _FORM.fullmatch(text)


def decode(cursor: str, descending: bool) -> Position:
    """The position a cursor names; InputError for anything that is not a cursor of this
    order."""
    m = form(cursor)
    if m is None:
        raise InputError("after: not a cursor (pass the `next` of a page)")
    if (m.group(1) == "d") != descending:
        raise InputError("after: the cursor is of a page in the other order_by; keep the "
                         "order_by of the page it came from")
    chain, block, log_index = (int(m.group(i)) for i in (2, 3, 4))
    if not (all(INT64_MIN <= v <= INT64_MAX for v in (chain, block))
            and -(2**31) <= log_index < 2**31):
        raise InputError("after: not a cursor (out of range)")
    return Position(chain, block, log_index)
