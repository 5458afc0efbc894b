"""A chain in memory, served through the ``ChainSource`` seam: blocks with linked hashes, ERC-20
Transfer logs of one token, and ways to make it misbehave (refuse, fail, reorg, sync)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from indexer.abi import keccak256
from indexer.config import ChainConfig, ContractConfig, RpcEndpoint
from indexer.rpc.logs import LogsAnswer
from indexer.types import BlockHeader, BlockRange, RawLog

TOKEN = "0x" + "ab" * 20
TRANSFER = "0x" + keccak256(b"Transfer(address,address,uint256)").hex()
TOKEN_SOURCE = f"Token:{TOKEN}:{TRANSFER}"  # the one source of the chain file: its key
ERC20_ABI: tuple[dict[str, Any], ...] = ({
    "type": "event", "name": "Transfer", "anonymous": False, "inputs": [
        {"name": "from", "type": "address", "indexed": True},
        {"name": "to", "type": "address", "indexed": True},
        {"name": "value", "type": "uint256", "indexed": False},
    ],
},)


def chain_config(*, finality_depth: int = 0, start_block: int = 0, partition_blocks: int = 1_000,
                 get_logs_max_range: int = 2_000,
                 max_reorg_depth: int | None = None) -> ChainConfig:
    """A chain file with one ERC-20 token (``TOKEN``), as the loader would hand it on."""
    from pathlib import Path

    token = ContractConfig(name="Token", abi_path=Path("erc20.json"), abi=ERC20_ABI,
                           addresses=(TOKEN,), start_block=start_block, events=None)
    return ChainConfig(name="fake", chain_id=7, rpc=(RpcEndpoint("http://fake"),),
                       block_time=1.0, finality_depth=finality_depth, start_block=start_block,
                       get_logs_max_range=get_logs_max_range, partition_blocks=partition_blocks,
                       contracts=(token,), source=Path("fake.yaml"),
                       max_reorg_depth=max_reorg_depth)


def _word(n: int) -> str:
    return "0x" + f"{n:064x}"


class FakeChain:
    """``logs_per_block`` Transfers in every block of ``[1, head]``; block hashes depend on the
    branch, so a ``reorg`` changes every block from a height up."""

    def __init__(self, head: int, logs_per_block: int = 2) -> None:
        self.head = head
        self.logs_per_block = logs_per_block
        self.branch: dict[int, int] = {}  # block -> branch number (0 unless reorged)
        self.dense: dict[int, int] = {}  # block -> logs, where not ``logs_per_block``
        self.syncing_answer = False
        self.chain_id_answer = 7
        self.calls: list[BlockRange] = []  # every eth_getLogs range asked
        self.in_flight = 0
        self.most_in_flight = 0
        # Failure injection: called with the range before each answer; may raise or wait.
        self.before_logs: Callable[[BlockRange], Any] | None = None

    # -- the chain ----------------------------------------------------------------------------

    def block_hash(self, n: int) -> bytes:
        return hashlib.sha256(f"{n}:{self.branch.get(n, 0)}".encode()).digest()

    def header(self, n: int) -> BlockHeader:
        parent = self.block_hash(n - 1) if n > 0 else b"\x00" * 32
        return BlockHeader(n, self.block_hash(n), parent, 1_700_000_000 + n)

    def reorg(self, from_block: int, new_head: int | None = None) -> None:
        """Replace every block from ``from_block`` up with another branch."""
        self.head = new_head if new_head is not None else self.head
        for n in range(from_block, self.head + 1):
            self.branch[n] = self.branch.get(n, 0) + 1

    def logs_of(self, n: int) -> list[RawLog]:
        if n < 1:
            return []
        bh = "0x" + self.block_hash(n).hex()
        return [RawLog(
            address=TOKEN, topics=[TRANSFER, _word(n), _word(i + 1 + self.branch.get(n, 0))],
            data=_word(self._value(n, i)), blockNumber=hex(n), blockHash=bh,
            transactionHash="0x" + hashlib.sha256(f"tx{n}:{i}".encode()).hexdigest(),
            transactionIndex=hex(i), logIndex=hex(i), removed=False,
        ) for i in range(self.logs_in(n))]

    def _value(self, n: int, i: int) -> int:
        return 1000 * n + i + 1_000_000 * self.branch.get(n, 0)

    def logs_in(self, n: int) -> int:
        return self.dense.get(n, self.logs_per_block)

    def rows_expected(self, upto: int, start: int = 1) -> list[tuple[int, int, int]]:
        """(block, log index, value) of every Transfer in ``[start, upto]`` (values differ
        between branches)."""
        return [(n, i, self._value(n, i)) for n in range(max(1, start), upto + 1)
                for i in range(self.logs_in(n))]

    # -- ChainSource ---------------------------------------------------------------------------

    async def chain_id(self) -> int:
        return self.chain_id_answer

    async def get_header(self, tag_or_number: int | str) -> BlockHeader | None:
        n = self.head if tag_or_number == "latest" else int(tag_or_number)
        return self.header(n) if 0 <= n <= self.head else None

    async def get_headers(self, numbers: Sequence[int]) -> dict[int, BlockHeader]:
        missing = [n for n in numbers if n > self.head]
        if missing:
            raise AssertionError(f"asked for blocks {missing} above the head {self.head}")
        return {n: self.header(n) for n in numbers}

    async def get_logs_checked(
        self, rng: BlockRange, addresses: Sequence[str] | None, topic0s: Sequence[str] | None,
        *, tip: BlockHeader | None = None,
    ) -> LogsAnswer:
        self.calls.append(rng)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.before_logs is not None:
                result = self.before_logs(rng)
                if asyncio.iscoroutine(result):
                    await result
            await asyncio.sleep(0)
            logs = [lg for n in range(rng.start, rng.end + 1) for lg in self.logs_of(n)]
            held = {int(lg["blockNumber"], 16) for lg in logs} | {rng.end}
            return LogsAnswer(logs, {n: self.header(n) for n in held})
        finally:
            self.in_flight -= 1

    async def syncing(self) -> bool:
        return self.syncing_answer
