"""Postgres ``numeric`` in its binary wire format, for asyncpg (pure).

Event rows carry every (u)int wider than 63 bits as a Python ``int`` into ``numeric`` columns.
asyncpg's own encoder goes through ``Decimal`` digit tuples, about 2 to 4 microseconds a value
in binary COPY: more than decoding a Transfer log. ``encode`` turns an int into base-10000 digits
with at most one big-integer division per 8 decimal digits (about half the time); other values
(``Decimal``, ``str``, ``float``) take the general path. ``decode`` gives what asyncpg gives, a
``Decimal`` with the column's scale, exactly (no context rounding).

The format (``numeric_send``/``numeric_recv``): int16 ndigits, int16 weight (of the first
base-10000 digit), uint16 sign (0 positive, 0x4000 negative, 0xC000 NaN, 0xD000 +Infinity,
0xF000 -Infinity), int16 dscale (decimal digits after the point), then ndigits uint16 digits,
most significant first.
"""

from __future__ import annotations

import struct
from decimal import Decimal
from typing import Any

POS, NEG, NAN, PINF, NINF = 0x0000, 0x4000, 0xC000, 0xD000, 0xF000
_HEAD = struct.Struct("!hhHh")
_FORMATS: dict[int, struct.Struct] = {}
_E8 = 100_000_000


def _layout(n: int) -> struct.Struct:
    s = _FORMATS.get(n)
    if s is None:
        s = _FORMATS[n] = struct.Struct(f"!hhHh{n}H")
    return s


def _groups(v: int) -> list[int]:
    """The base-10000 digits of ``v`` >= 0, most significant first (none for 0)."""
    d: list[int] = []
    app = d.append
    while v >= _E8:
        v, r = divmod(v, _E8)
        hi, lo = divmod(r, 10000)
        app(lo)
        app(hi)
    if v >= 10000:
        hi, lo = divmod(v, 10000)
        app(lo)
        app(hi)
    elif v:
        app(v)
    d.reverse()
    return d


def encode(value: Any) -> bytes:
    """``value`` (int, Decimal, or what Decimal() takes) as binary numeric."""
    if type(value) is int:
        neg = value < 0
        d = _groups(-value if neg else value)
        n = len(d)
        return _layout(n).pack(n, n - 1, NEG if neg else POS, 0, *d)
    if type(value) is bool:
        raise TypeError("a bool is not a numeric")
    return _encode_decimal(value if isinstance(value, Decimal) else Decimal(
        repr(value) if isinstance(value, float) else value))


def _encode_decimal(value: Decimal) -> bytes:
    if value.is_nan():
        return _HEAD.pack(0, 0, NAN, 0)
    if value.is_infinite():
        return _HEAD.pack(0, 0, NINF if value.is_signed() else PINF, 0)
    sign, digits, exp = value.as_tuple()
    assert isinstance(exp, int)
    units = int("".join(map(str, digits))) if digits else 0
    if exp >= 0:  # an integer: its digits, scale 0
        d = _groups(units * 10 ** exp)
        n = len(d)
        return _layout(n).pack(n, n - 1, NEG if sign and d else POS, 0, *d)
    scale = -exp
    pad = -scale % 4  # the fraction in whole base-10000 digits
    d = _groups(units * 10 ** pad)
    frac = (scale + pad) // 4
    if not d:
        return _HEAD.pack(0, 0, POS, scale)
    weight = len(d) - 1 - frac
    while d and d[-1] == 0:  # trailing zero digits are implied by the weight
        d.pop()
    n = len(d)
    return _layout(n).pack(n, weight, NEG if sign else POS, scale, *d)


def decode(data: bytes) -> Decimal:
    """Binary numeric as the ``Decimal`` asyncpg gives (exponent ``-dscale``), exactly."""
    n, weight, sign, dscale = _HEAD.unpack_from(data)
    if sign == NAN:
        return Decimal("NaN")
    if sign == PINF:
        return Decimal("Infinity")
    if sign == NINF:
        return Decimal("-Infinity")
    units = 0
    for g in struct.unpack_from(f"!{n}H", data, 8):
        units = units * 10000 + g
    exp = 4 * (weight - n + 1)  # the value is units * 10**exp
    if exp < -dscale:
        units //= 10 ** (-dscale - exp)  # digits past the scale are zeros of the last group
    elif exp > -dscale:
        units *= 10 ** (exp + dscale)
    text = f"-{units}" if sign == NEG else str(units)
    return Decimal(f"{text}E-{dscale}") if dscale else Decimal(text)


async def install(conn: Any) -> None:
    """Use these for ``numeric`` on ``conn`` (an asyncpg connection)."""
    await conn.set_type_codec("numeric", schema="pg_catalog", encoder=encode, decoder=decode,
                              format="binary")
