"""The logs bloom membership test against a block bloom produced by anvil (recorded)."""

from __future__ import annotations

import pytest

from indexer.rpc import bloom

# Block 90 of the demo chain after 3 traffic rounds (seed 1): its logsBloom and its logs.
BLOOM = bytes.fromhex(
    "0000000000000000000000008000000000000000000000000000000000000000000000000000000000040000"
    "0000080000400000000000000000000000000001000000000000000000000008000000000000000000400000"
    "0000000000004000010000440200000000000001000008000000000000000400020000100000000000000000"
    "0800000000000000000008000000000000000008000000020000000000000000000000400000000000000000"
    "0010020000000000000002000000000000000042000000200000000800000000000000002000001000000002"
    "000020000000000000000000000000000000000000000000000000000000000000000000"
)
LOGS = [
    ("0xdedc0d7fcdfe17a09d69a34112ee8a1621bd83e0", [
        "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
        "0x000000000000000000000000f39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        "0x000000000000000000000000dedc0d7fcdfe17a09d69a34112ee8a1621bd83e0",
    ]),
    ("0xdedc0d7fcdfe17a09d69a34112ee8a1621bd83e0", [
        "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
        "0x000000000000000000000000dedc0d7fcdfe17a09d69a34112ee8a1621bd83e0",
        "0x0000000000000000000000000000000000000000000000000000000000000000",
    ]),
    ("0x5fbdb2315678afecb367f032d93f642f64180aa3", [
        "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
        "0x000000000000000000000000dedc0d7fcdfe17a09d69a34112ee8a1621bd83e0",
        "0x0000000000000000000000009fe46736679d2d9a65f0992f2272de9f3c7fa6e0",
    ]),
    ("0xcf7ed3acca5a467e9e704c703e8d87f634fb0fc9", [
        "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
        "0x000000000000000000000000dedc0d7fcdfe17a09d69a34112ee8a1621bd83e0",
        "0x0000000000000000000000009fe46736679d2d9a65f0992f2272de9f3c7fa6e0",
    ]),
    ("0xdedc0d7fcdfe17a09d69a34112ee8a1621bd83e0", [
        "0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1",
    ]),
    ("0xdedc0d7fcdfe17a09d69a34112ee8a1621bd83e0", [
        "0xdccd412f0b1252819cb1fd330b93224ca42612892bb3f4f789976e6d81936496",
        "0x0000000000000000000000009fe46736679d2d9a65f0992f2272de9f3c7fa6e0",
        "0x0000000000000000000000009fe46736679d2d9a65f0992f2272de9f3c7fa6e0",
    ]),
    ("0xcf7ed3acca5a467e9e704c703e8d87f634fb0fc9", [
        "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
        "0x0000000000000000000000009fe46736679d2d9a65f0992f2272de9f3c7fa6e0",
        "0x000000000000000000000000f39fd6e51aad88f6f4ce6ab8827279cfffb92266",
    ]),
    ("0x5fbdb2315678afecb367f032d93f642f64180aa3", [
        "0x7fcf532c15f0a6db0bd6d0e038bea71d30d808c7d98cb3bf7268a95bf5081b65",
        "0x0000000000000000000000009fe46736679d2d9a65f0992f2272de9f3c7fa6e0",
    ]),
]


def _b(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text[2:])


def test_every_address_and_topic_of_the_block_is_in_its_bloom() -> None:
    for address, topics in LOGS:
        assert bloom.contains(BLOOM, _b(address))
        for topic in topics:
            assert bloom.contains(BLOOM, _b(topic))


def test_the_bloom_rebuilt_from_the_logs_equals_the_node_s() -> None:
    rebuilt = bytearray(256)
    for address, topics in LOGS:
        bloom.add(rebuilt, _b(address))
        for topic in topics:
            bloom.add(rebuilt, _b(topic))
    assert bytes(rebuilt) == BLOOM


@pytest.mark.parametrize("absent", [
    "0x" + "12" * 20,
    "0x000000000000000000000000000000000000dead",
    "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925",  # Approval
])
def test_items_not_in_the_block_are_absent(absent: str) -> None:
    assert not bloom.contains(BLOOM, _b(absent))


def test_may_match_needs_an_address_and_a_topic0() -> None:
    token = _b(LOGS[0][0])
    transfer = _b(LOGS[0][1][0])
    approval = _b("0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925")
    assert bloom.may_match(BLOOM, [token], [transfer])
    assert bloom.may_match(BLOOM, None, [transfer])
    assert bloom.may_match(BLOOM, [token], None)
    assert not bloom.may_match(BLOOM, [token], [approval])
    assert not bloom.may_match(BLOOM, [_b("0x" + "12" * 20)], None)
    assert not bloom.may_match(bytes(256), None, None)  # an empty block matches nothing
