"""JSON-RPC access to a chain: the client, its errors and the checks on every answer."""

from indexer.rpc.classify import classify
from indexer.rpc.client import LogsAnswer, RpcClient, endpoint_label
from indexer.rpc.errors import (
    BadAnswer,
    MethodUnsupported,
    NodeBehind,
    RangeTooLarge,
    RateLimited,
    RpcError,
    RpcFatal,
    RpcServerError,
    RpcTimeout,
    RpcTransportError,
)

__all__ = [
    "BadAnswer",
    "LogsAnswer",
    "MethodUnsupported",
    "NodeBehind",
    "RangeTooLarge",
    "RateLimited",
    "RpcClient",
    "RpcError",
    "RpcFatal",
    "RpcServerError",
    "RpcTimeout",
    "RpcTransportError",
    "classify",
    "endpoint_label",
]
