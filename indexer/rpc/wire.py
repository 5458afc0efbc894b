"""JSON-RPC on the wire (pure): the request envelope, answers -> values, and the checks every
answer passes before use.

Logs stay as the dicts the node sent (``RawLog``); ``check_logs`` validates them in one cheap
pass without building an object per log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from indexer.rpc.errors import BadAnswer, DuplicateLogIndex
from indexer.types import BlockHeader, BlockRange, RawLog


def parse_quantity(value: Any) -> int:
    """A JSON-RPC quantity ("0x1a") as an int."""
    if not isinstance(value, str) or not value.startswith(("0x", "0X")) or len(value) < 3:
        raise BadAnswer(f"expected a hex quantity, got {value!r:.80}")
    try:
        return int(value, 16)
    except ValueError:
        raise BadAnswer(f"expected a hex quantity, got {value!r:.80}") from None


def request(rid: int, method: str, params: Sequence[Any]) -> dict[str, Any]:
    """The JSON-RPC 2.0 envelope of one call: every request the project sends is built here."""
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": list(params)}


def encode(rid: int, method: str, params: Sequence[Any]) -> bytes:
    """One call's envelope as the bytes of a request body."""
    return orjson.dumps(request(rid, method, params))


def encode_batch(calls: Sequence[tuple[int, str, Sequence[Any]]]) -> bytes:
    """A JSON-RPC batch body of (id, method, params) calls, in order."""
    return orjson.dumps([request(rid, m, p) for rid, m, p in calls])


def _hash(obj: dict[str, Any], key: str) -> bytes:
    value = obj.get(key)
    if not isinstance(value, str) or len(value) != 66 or not value.startswith("0x"):
        raise BadAnswer(f"block field {key} is not a 32-byte hex hash: {value!r:.80}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise BadAnswer(f"block field {key} is not hex: {value!r:.80}") from None


def parse_header(obj: Any) -> BlockHeader:
    """A block object of eth_getBlockByNumber as a ``BlockHeader``."""
    if not isinstance(obj, dict):
        raise BadAnswer(f"expected a block object, got {type(obj).__name__}")
    bloom = obj.get("logsBloom")
    logs_bloom: bytes | None = None
    if bloom is not None:
        if not isinstance(bloom, str) or len(bloom) != 514 or not bloom.startswith("0x"):
            raise BadAnswer(f"block field logsBloom is not 256 hex bytes: {bloom!r:.80}")
        try:
            logs_bloom = bytes.fromhex(bloom[2:])
        except ValueError:
            raise BadAnswer("block field logsBloom is not hex") from None
    return BlockHeader(
        number=parse_quantity(obj.get("number")),
        hash=_hash(obj, "hash"),
        parent_hash=_hash(obj, "parentHash"),
        timestamp=parse_quantity(obj.get("timestamp")),
        logs_bloom=logs_bloom,
    )


def _bad_log(i: int, log: Any, why: str, reason: str = "malformed") -> BadAnswer:
    where = log.get("blockNumber") if isinstance(log, dict) else None
    return BadAnswer(f"log {i} (block {where!r:.20}): {why}", reason=reason)


def check_logs(
    logs: list[RawLog],
    rng: BlockRange,
    addresses: frozenset[str] | None = None,
    topic0s: frozenset[str] | None = None,
) -> dict[int, str]:
    """Raise ``BadAnswer`` unless ``logs`` is a valid eth_getLogs answer for ``rng`` and the
    filter (``addresses`` lower-case, ``topic0s``; None: any); return block number -> blockHash
    of every block holding logs.

    Invariants: every log lies in ``rng`` and matches the filter, none is ``removed``, the
    required fields are present and well-formed, logs are strictly increasing by (blockNumber,
    logIndex) and logs of one block share its hash. One pass, no object built per log. Two
    logs of one block with the same logIndex (copies of one log, or a node numbering logs per
    transaction) raise ``DuplicateLogIndex``, naming the block.
    """
    if type(logs) is not list:
        raise BadAnswer(f"expected a list of logs, got {type(logs).__name__}")
    start, end = rng.start, rng.end
    prev_bn, prev_li, prev_bh, prev_text = -1, -1, "", ""
    blocks: dict[int, str] = {}
    i = 0
    try:
        for i, log in enumerate(logs):  # noqa: B007  (i is read on failure)
            text = log["blockNumber"]
            li = int(log["logIndex"], 16)
            bh = log["blockHash"]
            if text != prev_text:  # most logs share their block's: parsed once a block
                bn = int(text, 16)
                prev_text = text
                if bn != prev_bn:
                    _check_new_block(i, log, bn, prev_bn, bh, rng, start, end)
                    blocks[bn] = prev_bh = bh
                    prev_bn, prev_li = bn, -1
            if li <= prev_li:
                raise _out_of_order(logs, i, prev_bn, li, prev_li)
            if bh != prev_bh:
                raise _bad_log(i, log, "block hash differs from the block's other logs")
            prev_li = li
            int(log["transactionIndex"], 16)
            if log.get("removed"):
                raise _bad_log(i, log, "log is marked removed")
            addr, tx, data, topics = (
                log["address"], log["transactionHash"], log["data"], log["topics"]
            )
            # An address asked for is well-formed: its format is checked when any is taken.
            if addresses is not None and addr not in addresses and addr.lower() not in addresses:
                raise _bad_log(i, log, f"address {addr} was not asked for", "filter")
            if addresses is None and (len(addr) != 42 or not addr.startswith("0x")):
                raise _bad_log(i, log, "malformed address")
            if (
                len(tx) != 66 or not tx.startswith("0x") or not data.startswith("0x")
                or type(topics) is not list or len(topics) > 4
            ):
                raise _bad_log(i, log, "malformed transactionHash, data or topics")
            if topic0s is not None and (not topics or topics[0] not in topic0s) and (
                not topics or topics[0].lower() not in topic0s
            ):
                raise _bad_log(i, log, "topic0 was not asked for", "filter")
    except BadAnswer:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _bad_log(i, logs[i], f"missing or malformed field ({type(e).__name__}: {e})") from None
    return blocks


def _out_of_order(logs: list[RawLog], i: int, bn: int, li: int, prev_li: int) -> BadAnswer:
    if li == prev_li:
        return _shared_index(logs, i, bn, li)
    return _bad_log(i, logs[i], "logs out of order")


def _shared_index(logs: list[RawLog], i: int, bn: int, li: int) -> DuplicateLogIndex:
    txs = [str(logs[j].get("transactionHash"))[:66] for j in (i - 1, i)]
    same = "copies of one log" if logs[i - 1] == logs[i] else "two different logs"
    return DuplicateLogIndex(
        f"block {bn}: logs {i - 1} and {i} of the answer share logIndex {li} ({same}, "
        f"transactions {txs[0]} and {txs[1]})", block=bn, log_index=li,
        blocks=_blocks_sharing_an_index(logs[i + 1:]))


def _blocks_sharing_an_index(logs: list[RawLog]) -> tuple[int, ...]:
    """Blocks in which two of ``logs`` share a logIndex (malformed logs are passed over: the
    answers for the other blocks are asked again and checked in full)."""
    seen: set[tuple[int, int]] = set()
    found: set[int] = set()
    for lg in logs:
        try:
            key = (int(lg["blockNumber"], 16), int(lg["logIndex"], 16))
        except (KeyError, TypeError, ValueError):
            continue
        if key in seen:
            found.add(key[0])
        seen.add(key)
    return tuple(sorted(found))


def _check_new_block(
    i: int, log: Any, bn: int, prev_bn: int, bh: Any, rng: BlockRange, start: int, end: int
) -> None:
    if bn < start or bn > end:
        raise _bad_log(i, log, f"block {bn} is outside the requested range {rng}", "range")
    if bn < prev_bn:
        raise _bad_log(i, log, "logs out of block order")
    if len(bh) != 66 or not bh.startswith("0x"):
        raise _bad_log(i, log, "blockHash is not a 32-byte hex hash")


def check_batch_answer(answer: Any, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Map each request id of a batch to its reply; exactly one reply per id, no strangers."""
    if type(answer) is not list:
        raise BadAnswer(f"expected a batch answer (a list), got {type(answer).__name__}")
    wanted = set(ids)
    replies: dict[int, dict[str, Any]] = {}
    for reply in answer:
        rid = reply.get("id") if isinstance(reply, dict) else None
        if rid not in wanted:
            raise BadAnswer(f"batch answer holds an unexpected reply id {rid!r:.40}")
        if rid in replies:
            raise BadAnswer(f"batch answer holds two replies for id {rid}")
        replies[rid] = reply
    if len(replies) != len(wanted):
        missing = sorted(wanted.difference(replies))
        raise BadAnswer(f"batch answer lacks {len(missing)} of {len(wanted)} replies "
                        f"(ids {_ids(missing)})")
    return replies


def _ids(ids: Iterable[int]) -> str:
    shown = list(ids)
    text = ", ".join(map(str, shown[:5]))
    return text + (", ..." if len(shown) > 5 else "")


# orjson parses through an intermediate document of about 12 times the size of the text, so
# one 60 MB eth_getLogs answer would peak near 800 MB. Past this size the ``result`` array is
# parsed in slices of objects instead; the answer is the same.
LARGE_ANSWER = 1 << 20
_SLICE = 512 << 10


def loads(raw: bytes) -> Any:
    """``orjson.loads(raw)``, with bounded memory for a large ``{..., "result": [{...}, ...]}``.

    Slices are cut where one array element ends and the next begins (``},{``); if a cut ever
    falls inside a string, the slice does not parse and the whole text is parsed at once."""
    if len(raw) < LARGE_ANSWER:
        return orjson.loads(raw)
    key = raw.find(b'"result":[')
    close = raw.rfind(b"]")
    batch = raw[:64].lstrip()[:1] == b"["
    if batch:  # a batch whose last reply holds the array: its "]" is the last but one
        close = raw.rfind(b"]", 0, close)
    if key < 0 or close < key:
        return orjson.loads(raw)
    open_ = key + len(b'"result":[')
    try:
        envelope = orjson.loads(raw[:open_] + raw[close:])
        holder = envelope[-1] if batch and type(envelope) is list and envelope else envelope
        if type(holder) is not dict or holder.get("result") != []:
            return orjson.loads(raw)
        items: list[Any] = []
        pos = open_
        while pos < close:
            cut = raw.find(b"},{", pos + _SLICE, close)
            end = close if cut < 0 else cut + 1
            items.extend(orjson.loads(b"[" + raw[pos:end] + b"]"))
            pos = end + 1
    except orjson.JSONDecodeError:
        return orjson.loads(raw)
    holder["result"] = items
    return envelope
