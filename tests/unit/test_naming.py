"""Names outside the process: tables and columns fit Postgres's 63-byte identifiers and never
collide (pure)."""

from __future__ import annotations

import pytest

from indexer.naming import (
    FIXED_COLUMNS,
    MAX_IDENTIFIER,
    column_names,
    shorten,
    snake_case,
    table_name,
)


@pytest.mark.parametrize(("raw", "snake"), [
    ("UniswapV2Pair", "uniswap_v2_pair"), ("amount0In", "amount0_in"), ("ERC20Token", "erc20_token"),
    ("WETH9", "weth9"), ("already_snake", "already_snake"), ("with-dash", "with_dash"),
])
def test_snake_case(raw: str, snake: str):
    assert snake_case(raw) == snake


def test_a_long_table_name_is_cut_to_63_bytes_with_a_hash_of_the_whole():
    a = table_name("A" * 40 + "Registry", "SomethingHappenedWithAVeryLongName")
    b = table_name("A" * 40 + "Registry", "SomethingHappenedWithAVeryLongNameToo")
    assert len(a) == len(b) == MAX_IDENTIFIER and a != b
    assert a.startswith("a" * 40)


def test_a_long_parameter_name_is_cut_to_63_bytes_and_stays_distinct():
    long = "theAmountOfTokensThatWereTransferredFromTheSenderToTheReceiverInWei"
    cols = column_names([long, long + "Two", "value"])
    assert [len(c) <= MAX_IDENTIFIER for c in cols] == [True, True, True]
    assert len(set(cols)) == 3 and cols[2] == "value"
    assert cols[0] == shorten(snake_case(long))
    assert cols == column_names([long, long + "Two", "value"])  # stable across starts


def test_column_names_never_take_a_fixed_column_or_each_other():
    cols = column_names(["block_number", "", "x", "x", "address"])
    assert not set(cols) & set(FIXED_COLUMNS)
    assert len(set(cols)) == len(cols)
    assert cols[1] == "arg1"


def test_a_suffix_for_uniqueness_keeps_a_long_name_within_63_bytes():
    long = "p" * 70
    cols = column_names([long, long])
    assert len(set(cols)) == 2 and all(len(c) <= MAX_IDENTIFIER for c in cols)
