"""The chain file's values (public contract 2), as the loader hands them on: frozen, valid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_GET_LOGS_MAX_RANGE = 2000
DEFAULT_PARTITION_BLOCKS = 1_000_000
# The deepest reorg the live tail repairs on its own: max_reorg_depth, else this many finality
# depths, and at least MIN_REORG_DEPTH_CAP blocks (a chain taken as final, finality_depth 0,
# still repairs what a local chain's reorgs replace). Deeper: it stops and asks the operator.
REORG_DEPTH_CAP_FINALITIES = 10
MIN_REORG_DEPTH_CAP = 256


class ConfigError(ValueError):
    """A chain file is invalid. ``str()`` is the message shown to users, one line per problem."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[str, ...] = tuple(problems) or tuple(message.splitlines())


@dataclass(frozen=True, slots=True)
class RpcEndpoint:
    url: str
    max_requests_per_second: float | None = None
    max_batch_size: int | None = None


@dataclass(frozen=True, slots=True)
class FactorySpec:
    contract: str  # name of the factory contract in the same chain file
    event: str  # event of the factory that announces a child
    parameter: str  # address parameter of that event holding the child


@dataclass(frozen=True, slots=True)
class ContractConfig:
    name: str
    abi_path: Path
    abi: tuple[dict[str, Any], ...]  # every entry of the ABI (events, functions, ...), as JSON
    addresses: tuple[str, ...]  # lower-case 0x-hex; empty for factory children
    start_block: int
    events: tuple[str, ...] | None  # names or canonical signatures; None: every event of the ABI
    factory: FactorySpec | None = None


@dataclass(frozen=True, slots=True)
class VerifyConfig:
    """Continuous verification while indexing (the ``verify:`` section)."""

    sample: float = 0.0  # share of committed ranges checked against the chain again
    repair: bool = False  # a range found to differ is re-indexed
    proof: bool = False  # the logs compared are proven against the blocks' receiptsRoot


@dataclass(frozen=True, slots=True)
class ChainConfig:
    name: str
    chain_id: int
    rpc: tuple[RpcEndpoint, ...]
    block_time: float  # seconds
    finality_depth: int
    start_block: int
    get_logs_max_range: int
    partition_blocks: int
    contracts: tuple[ContractConfig, ...]
    source: Path  # the chain file this was loaded from
    poll_interval: float | None = None  # head polling of the live tail; None: derived
    ws_url: str | None = None  # websocket endpoint for eth_subscribe newHeads (optional)
    verify: VerifyConfig = VerifyConfig()
    max_reorg_depth: int | None = None  # None: derived (``reorg_depth_cap``)

    @property
    def reorg_depth_cap(self) -> int:
        """Blocks a repair may delete on its own (the file's ``max_reorg_depth``, else
        10 x finality_depth, at least 256)."""
        if self.max_reorg_depth is not None:
            return self.max_reorg_depth
        return max(REORG_DEPTH_CAP_FINALITIES * self.finality_depth, MIN_REORG_DEPTH_CAP)

    @property
    def live_poll_interval(self) -> float:
        """How often the live tail asks for the head: the file's ``poll_interval``, else a
        tenth of the block time, at most 1 s and at least 20 ms."""
        if self.poll_interval is not None:
            return self.poll_interval
        return max(0.02, min(1.0, self.block_time / 10))
