"""Micro-benchmark of the log decoder against plain eth_abi.

    python scripts/bench_decode.py [--transfers 200000] [--dynamic 50000] [--repeat 3]

Prints logs/s of Decoder.decode for ERC-20 Transfer logs (static layout) and for logs of an
event with string, bytes and an array of structs (dynamic layout), and the same decoded with
eth_abi alone (topics and data, no row building) for comparison.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

from eth_abi import decode as abi_decode
from eth_abi import encode

from indexer.abi import event_specs
from indexer.decode import Decoder
from indexer.types import RawLog

ADDRESS = "0x" + "c0ffee" * 6 + "c0fe"
ABI = [
    {
        "type": "event",
        "name": "Transfer",
        "anonymous": False,
        "inputs": [
            {"name": "from", "type": "address", "indexed": True},
            {"name": "to", "type": "address", "indexed": True},
            {"name": "value", "type": "uint256", "indexed": False},
        ],
    },
    {
        "type": "event",
        "name": "Posted",
        "anonymous": False,
        "inputs": [
            {"name": "author", "type": "address", "indexed": True},
            {"name": "text", "type": "string", "indexed": False},
            {"name": "blob", "type": "bytes", "indexed": False},
            {
                "name": "items",
                "type": "tuple[]",
                "indexed": False,
                "components": [
                    {"name": "id", "type": "uint256"},
                    {"name": "owner", "type": "address"},
                ],
            },
        ],
    },
]
SPECS = event_specs("Bench", ABI)
TRANSFER, POSTED = SPECS


def _word(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def _log(i: int, topics: list[str], data: str) -> RawLog:
    return {
        "address": ADDRESS,
        "topics": topics,
        "data": data,
        "blockNumber": hex(1_000_000 + i // 200),
        "transactionHash": _word(i // 3 + 7),
        "transactionIndex": hex(i // 3 % 300),
        "logIndex": hex(i % 1000),
    }


def transfer_logs(n: int) -> list[RawLog]:
    t0 = "0x" + TRANSFER.topic0.hex()
    return [_log(i, [t0, _word(i + 1), _word(i * 7 + 3)], _word(i * 10**15)) for i in range(n)]


def dynamic_logs(n: int) -> list[RawLog]:
    t0 = "0x" + POSTED.topic0.hex()
    types = ["string", "bytes", "(uint256,address)[]"]
    out = []
    for i in range(n):
        items = [(i + k, "0x" + f"{k:040x}") for k in range(2)]
        data = encode(types, [f"post number {i}", i.to_bytes(8, "big"), items])
        out.append(_log(i, [t0, _word(i + 1)], "0x" + data.hex()))
    return out


def plain_eth_abi(logs: list[RawLog], types: list[str], indexed: list[str]) -> int:
    n = 0
    for log in logs:
        abi_decode(indexed, b"".join(bytes.fromhex(t[2:]) for t in log["topics"][1:]))
        abi_decode(types, bytes.fromhex(log["data"][2:]))
        n += 1
    return n


def best(fn: Callable[[], int], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=200_000)
    parser.add_argument("--dynamic", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    decoder = Decoder(1, {"Bench": SPECS})
    contract_of = {ADDRESS: ("Bench",)}
    cases = [
        ("Transfer (static)", transfer_logs(args.transfers), ["uint256"], ["address", "address"]),
        (
            "Posted (dynamic)",
            dynamic_logs(args.dynamic),
            [p.parsed.codec for p in POSTED.params[1:]],
            ["address"],
        ),
    ]
    for label, logs, types, indexed in cases:
        blocks = {int(log["blockNumber"], 16) for log in logs}
        times = {b: datetime.fromtimestamp(1_700_000_000 + b, UTC) for b in blocks}
        result = decoder.decode(logs, contract_of, times)
        assert result.count() == len(logs) and not result.failures, result.failures[:3]
        ours = best(
            lambda logs=logs, times=times: decoder.decode(logs, contract_of, times).count(),
            args.repeat,
        )
        plain = best(lambda logs=logs, t=types, ix=indexed: plain_eth_abi(logs, t, ix), args.repeat)
        n = len(logs)
        print(
            f"{label:18} {n:>7} logs  decoder {n / ours:>12,.0f} logs/s ({ours / n * 1e6:.2f} us/log)"
            f"  eth_abi {n / plain:>10,.0f} logs/s  ratio x{plain / ours:.1f}"
        )


if __name__ == "__main__":
    main()
