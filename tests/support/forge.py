"""A node that lies about logs while keeping every block hash (for ``chaos.ChaosProxy``): the
logs of chosen blocks have their data or their last topic rewritten, the same way in every
answer that holds them (eth_getLogs, eth_getBlockReceipts, eth_getTransactionReceipt), so that
what it says is consistent and every blockHash matches the canonical header. Only a check of
the receipts against the header's receiptsRoot can tell.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Rewrite = Literal["data", "topics"]

METHOD_NOT_FOUND = {"code": -32601,
                    "message": "the method eth_getBlockReceipts does not exist/is not available"}


def _flip(word: str) -> str:
    """The hex string with its last digit changed."""
    return word[:-1] + format(int(word[-1], 16) ^ 1, "x") if len(word) > 2 else "0x01"


def rewrite_log(lg: dict[str, Any], how: Rewrite) -> None:
    topics = lg.get("topics") or []
    if how == "topics" and len(topics) > 1:
        lg["topics"] = [*topics[:-1], _flip(topics[-1])]
    else:
        lg["data"] = _flip(lg.get("data") or "0x")


def forge(call: Mapping[str, Any], reply: dict[str, Any], blocks: Mapping[int, Rewrite]) -> int:
    """Rewrite the logs of ``blocks`` in one reply; how many were rewritten."""
    method, result = call.get("method"), reply.get("result")
    if method == "eth_getLogs" and isinstance(result, list):
        logs = result
    elif method == "eth_getBlockReceipts" and isinstance(result, list):
        logs = [lg for rc in result if isinstance(rc, dict) for lg in rc.get("logs") or ()]
    elif method == "eth_getTransactionReceipt" and isinstance(result, dict):
        logs = list(result.get("logs") or ())
    else:
        return 0
    n = 0
    for lg in logs:
        how = blocks.get(int(lg["blockNumber"], 16))
        if how is not None:
            rewrite_log(lg, how)
            n += 1
    return n


def refuse_block_receipts(call: Mapping[str, Any], reply: dict[str, Any]) -> bool:
    """Answer eth_getBlockReceipts as a node that does not serve it."""
    if call.get("method") != "eth_getBlockReceipts":
        return False
    reply.pop("result", None)
    reply["error"] = dict(METHOD_NOT_FOUND)
    return True
