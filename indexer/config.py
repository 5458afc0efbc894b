"""Chain YAML (public contract 2): schema, ``${VAR}`` expansion and validation.

Every error names the file, the key path and what is wrong; nothing is started before the
whole file is valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A chain file is invalid. ``str()`` is the message shown to users."""


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
    abi: tuple[dict[str, Any], ...]  # event/function entries of the ABI, as JSON objects
    addresses: tuple[str, ...]  # lower-case 0x-hex; empty for factory children
    start_block: int
    events: tuple[str, ...] | None  # None: every event of the ABI
    factory: FactorySpec | None = None


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
    extra: dict[str, Any] = field(default_factory=dict)
