"""Binary numeric (pure): the layout of known values, and every value back as it went in."""

from __future__ import annotations

import random
import struct
from decimal import Decimal

import pytest

from indexer.sink.numeric import decode, encode


def layout(*fields: int) -> bytes:
    n = fields[0]
    return struct.pack(f"!hhHh{n}H", *fields)


@pytest.mark.parametrize(("value", "wire"), [
    (0, layout(0, -1, 0, 0)),
    (1, layout(1, 0, 0, 0, 1)),
    (9999, layout(1, 0, 0, 0, 9999)),
    (10000, layout(2, 1, 0, 0, 1, 0)),
    (123456789, layout(3, 2, 0, 0, 1, 2345, 6789)),
    (-42, layout(1, 0, 0x4000, 0, 42)),
    (Decimal("1.5"), layout(2, 0, 0, 1, 1, 5000)),
    (Decimal("-0.0001"), layout(1, -1, 0x4000, 4, 1)),
    (Decimal("1E+8"), layout(3, 2, 0, 0, 1, 0, 0)),
    (Decimal("NaN"), layout(0, 0, 0xC000, 0)),
])
def test_known_layouts(value, wire):
    assert encode(value) == wire


def test_ints_of_every_width_come_back():
    rng = random.Random(5)
    values = [0, 1, -1, 2**63, 2**256 - 1, -(2**255), 10**77, 10**8, 10**8 - 1]
    values += [rng.getrandbits(rng.randrange(1, 257)) * rng.choice((1, -1)) for _ in range(3000)]
    for v in values:
        got = decode(encode(v))
        assert got == v and got.as_tuple().exponent == 0, v


@pytest.mark.parametrize("text", ["0", "0.00", "1.50", "-123.456789", "0.0001", "1E+30", "-7E-9",
                                  "12345678901234567890123456789012345678.1234", "NaN",
                                  "Infinity", "-Infinity"])
def test_decimals_come_back_with_their_scale(text):
    value = Decimal(text)
    got = decode(encode(value))
    if value.is_nan():
        assert got.is_nan()
        return
    assert got == value
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int):
        assert got.as_tuple().exponent == min(0, exponent)


def test_a_bool_is_refused():
    with pytest.raises(TypeError):
        encode(True)
