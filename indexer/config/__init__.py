"""Chain files (public contract 2): the frozen values (``model``), the loader that validates a
file and reports every problem with its key path (``load``), and the parsers of single values
(``values``)."""

from indexer.config.load import load_chain, load_chains, resolve_chain, shipped_chains_dir
from indexer.config.model import (
    DEFAULT_GET_LOGS_MAX_RANGE,
    DEFAULT_PARTITION_BLOCKS,
    ChainConfig,
    ConfigError,
    ContractConfig,
    FactorySpec,
    RpcEndpoint,
    VerifyConfig,
)

__all__ = [
    "DEFAULT_GET_LOGS_MAX_RANGE",
    "DEFAULT_PARTITION_BLOCKS",
    "ChainConfig",
    "ConfigError",
    "ContractConfig",
    "FactorySpec",
    "RpcEndpoint",
    "VerifyConfig",
    "load_chain",
    "load_chains",
    "resolve_chain",
    "shipped_chains_dir",
]
