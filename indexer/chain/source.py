"""The chain source seam: what the backfill and the live tail read from a node. ``RpcClient``
is the real one (every answer checked before it is returned); unit tests use a fake chain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from indexer.rpc.logs import LogsAnswer
from indexer.types import BlockHeader, BlockRange


class ChainSource(Protocol):
    async def chain_id(self) -> int: ...

    async def get_header(self, tag_or_number: int | str) -> BlockHeader | None:
        """A block number or tag ("latest"); None when the node has no such block."""

    async def get_headers(self, numbers: Sequence[int]) -> dict[int, BlockHeader]:
        """Headers of the given blocks (retried until the node has them)."""

    async def get_logs_checked(
        self, rng: BlockRange, addresses: Sequence[str] | None, topic0s: Sequence[str] | None,
        *, tip: BlockHeader | None = None,
    ) -> LogsAnswer:
        """Every matching log of ``rng`` with the canonical headers they were checked against
        (every block holding a log, and ``rng.end``)."""

    async def syncing(self) -> bool: ...
