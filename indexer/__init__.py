"""Multi-chain EVM event indexer."""

__version__ = "0.1.0"
