"""The JSON-RPC client of one chain: what the rest of the indexer asks of a node (chain id,
headers, checked logs, any call). The requests, retries and endpoint choice are the request
layer's (``request.py``); eth_getLogs with its range splitting and answer checks is ``logs.py``.

``RpcClient`` is the chain source the backfill and the live tail read through (see
``indexer.chain.source``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from indexer.config import RpcEndpoint
from indexer.rpc import wire
from indexer.rpc.errors import BadAnswer, RpcError
from indexer.rpc.logs import LogsAnswer, LogsReader
from indexer.rpc.request import Check, Requester
from indexer.rpc.transport import check_block, endpoint_label
from indexer.types import BlockHeader, BlockRange, RawLog

__all__ = ["Check", "LogsAnswer", "RpcClient", "endpoint_label"]

DEFAULT_TIMEOUT = 30.0  # seconds for one request


class RpcClient:
    """A JSON-RPC client over one chain's endpoints. Use as ``async with RpcClient(...)``."""

    def __init__(
        self,
        endpoints: Sequence[RpcEndpoint],
        *,
        chain: str,
        timeout: float | None = None,
        max_retries: int = 8,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        max_answer_bytes: int = 64 << 20,
    ) -> None:
        self.chain = chain
        self.requests = Requester(
            endpoints, chain=chain, timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
            max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max,
            max_answer_bytes=max_answer_bytes)
        self._logs = LogsReader(self.requests, self.get_headers)

    @property
    def batch_size(self) -> int:
        return self.requests.batch_size

    @property
    def endpoints(self) -> list[str]:
        """Labels of the endpoints, in order of preference."""
        return [e.label for e in self.requests.endpoints]

    @property
    def max_answer_bytes(self) -> int:
        return self.requests.max_answer_bytes

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.requests.close()

    async def call(self, method: str, params: list[Any]) -> Any:
        """One request, retried; the ``result`` of the answer."""
        return await self.requests.call(method, params)

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """A JSON-RPC batch in chunks of the endpoints' batch size; results in call order."""
        return await self.requests.batch(calls)

    async def chain_id(self) -> int:
        return wire.parse_quantity(await self.requests.call("eth_chainId", []))

    async def block_number(self) -> int:
        return wire.parse_quantity(await self.requests.call("eth_blockNumber", []))

    async def syncing(self) -> bool:
        """Whether the node says it is syncing (an error counts as not syncing)."""
        try:
            return bool(await self.requests.call("eth_syncing", []))
        except RpcError:
            return False

    async def get_header(self, tag_or_number: int | str) -> BlockHeader | None:
        """The header of a block number or tag ("latest", "finalized", "safe"); None if null."""
        ref = hex(tag_or_number) if isinstance(tag_or_number, int) else tag_or_number
        block = await self.requests.call("eth_getBlockByNumber", [ref, False])
        if block is None:
            return None
        header = wire.parse_header(block)
        if ref == "latest":
            self.requests.head_seen = max(self.requests.head_seen, header.number)
        return header

    async def get_headers(self, numbers: Sequence[int]) -> dict[int, BlockHeader]:
        """Headers of the given blocks; a block the node does not have yet is retried."""
        wanted = list(dict.fromkeys(numbers))
        calls = [("eth_getBlockByNumber", [hex(n), False]) for n in wanted]
        results = await self.requests.batch(calls, check_block)
        headers: dict[int, BlockHeader] = {}
        for n, block in zip(wanted, results, strict=True):
            header = wire.parse_header(block)
            if header.number != n:
                raise BadAnswer(f"asked for block {n}, got block {header.number}",
                                method="eth_getBlockByNumber", what=str(n))
            headers[n] = header
        return headers

    async def get_logs(
        self, rng: BlockRange, addresses: Sequence[str] | None, topic0s: Sequence[str] | None
    ) -> list[RawLog]:
        """Every log of ``rng`` in (blockNumber, logIndex) order, splitting refused ranges."""
        return (await self.get_logs_checked(rng, addresses, topic0s)).logs

    async def get_logs_checked(
        self, rng: BlockRange, addresses: Sequence[str] | None, topic0s: Sequence[str] | None,
        *, tip: BlockHeader | None = None,
    ) -> LogsAnswer:
        """``get_logs`` with the canonical headers of the blocks holding logs, every blockHash
        checked against them (see ``logs.py`` for every check). ``tip``: the header of
        ``rng.end`` when the caller has just read it (the live tail's head), used instead of
        asking for it on the first attempt."""
        return await self._logs.checked(rng, addresses, topic0s, tip=tip)
