"""Raw logs -> rows per event table (pure, batched).

A row holds the fixed columns (chain_id, block_number, block_time, tx_hash, tx_index, log_index,
address) then one value per event parameter, typed as asyncpg's binary COPY wants them:
bytea -> ``bytes``, boolean -> ``bool``, bigint and numeric -> ``int``, text -> ``str``,
jsonb -> JSON text (``str``), timestamptz -> aware ``datetime``.

Value conventions (part of the table contract):

- an indexed string, bytes, array or tuple is its 32-byte topic (keccak256 of the value);
- text that is not valid UTF-8 is stored with U+FFFD for each bad sequence, and NUL characters
  (which Postgres text and jsonb cannot hold) are stored as U+FFFD; the log never fails for it;
- jsonb values (arrays and tuples): integers are exact JSON numbers (never strings or floats),
  addresses are lower-case ``"0x..."`` strings, bytes and bytesN are lower-case ``"0x..."`` hex,
  bools are ``true``/``false``, strings are JSON strings, arrays are JSON arrays, and a tuple is
  a JSON object keyed by its component names as written in the ABI when every component is
  named (and the names are distinct), else a JSON array.

Decoding is strict: a log whose (address, topic0) matches a selected event but whose topics or
data do not fit it (topic count, data length of a static layout, out-of-range offsets, integers
wider than their type, bools other than 0/1, addresses or bytesN with dirty padding) becomes a
:class:`DecodeFailure`, never an exception and never a silent drop. Logs of addresses or topic0s
that are not selected are skipped silently. An anonymous event has no topic0: a log matching no
topic0 of its contract is tried against the contract's anonymous events whose topic count and
data size fit, first match wins, and is skipped silently when none decodes.

Static layouts are decoded by a function generated per event that slices the hex strings of the
log; top-level ``bytes``/``string`` are read the same way; arrays and tuples go through eth_abi.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError

from indexer.abi import AbiType, EventSpec
from indexer.types import RawLog

Values = tuple[Any, ...]
DecodeFn = Callable[[list[str], str], Values]


class _Bad(ValueError):
    """A log does not fit its event; the message is the failure reason."""


_ERRORS = (_Bad, ValueError, IndexError, TypeError, DecodingError, OverflowError)


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    table: str
    block_number: int
    log_index: int
    tx_hash: str
    reason: str


@dataclass(slots=True)
class DecodeResult:
    rows: dict[str, list[tuple[Any, ...]]]  # table -> records in EventSpec column order
    failures: list[DecodeFailure]

    def count(self) -> int:
        return sum(len(r) for r in self.rows.values())


def text_value(raw: bytes) -> str:
    """Bytes of a Solidity string -> Postgres-safe text (bad UTF-8 and NUL -> U+FFFD)."""
    s = raw.decode("utf-8", "replace")
    return s.replace("\x00", "\ufffd") if "\x00" in s else s


def _json_scalar(node: AbiType) -> Callable[[Any], str]:
    kind = node.kind
    if kind in ("uint", "int"):
        return str
    if kind == "bool":
        return lambda v: "true" if v else "false"
    if kind == "address":
        return lambda v: '"' + v.lower() + '"'
    if kind == "string":
        return lambda v: orjson.dumps(text_value(v)).decode()
    return lambda v: '"0x' + v.hex() + '"'


def json_encoder(node: AbiType) -> Callable[[Any], str]:
    """A function turning eth_abi's value of ``node`` (codec types) into JSON text."""
    if node.kind == "array":
        assert node.item is not None
        item = json_encoder(node.item)
        return lambda v: "[" + ",".join(map(item, v)) + "]"
    if node.kind == "tuple":
        parts = [json_encoder(c) for c in node.components]
        names = node.names
        if all(names) and len(set(names)) == len(names):
            keys = [orjson.dumps(n).decode() + ":" for n in names]
            pairs = list(zip(keys, parts, strict=True))
            return lambda v: (
                "{" + ",".join(k + f(x) for (k, f), x in zip(pairs, v, strict=True)) + "}"
            )
        return lambda v: "[" + ",".join(f(x) for f, x in zip(parts, v, strict=True)) + "]"
    return _json_scalar(node)


def _from_codec(node: AbiType) -> Callable[[Any], Any] | None:
    """Conversion of eth_abi's value to the row value; None when it is already right."""
    kind = node.kind
    if kind == "address":
        return lambda v: bytes.fromhex(v[2:])
    if kind == "string":
        return text_value
    if kind in ("array", "tuple"):
        return json_encoder(node)
    return None


def _dyn_bytes(data: str, pos: int, head_end: int) -> bytes:
    """The ``bytes`` whose offset word starts at hex position ``pos`` of ``data``."""
    off = int(data[pos : pos + 64], 16)
    nbytes = (len(data) - 2) >> 1
    if off < head_end or off + 32 > nbytes:
        raise _Bad(f"offset {off} outside data of {nbytes} bytes")
    start = 2 + 2 * off
    length = int(data[start : start + 64], 16)
    padded = (length + 31) & ~31
    if off + 32 + padded > nbytes:
        raise _Bad(f"length {length} at offset {off} runs past data of {nbytes} bytes")
    start += 64
    end = start + 2 * length
    if data[end : start + 2 * padded].strip("0"):
        raise _Bad(f"nonzero padding after {length} bytes at offset {off}")
    return bytes.fromhex(data[start:end])


_Z = "0" * 64


def _scalar_code(node: AbiType, word: str, label: str) -> list[str]:
    """Statements setting ``v`` from the 64-hex-digit expression ``word``."""
    kind, size = node.kind, node.size
    if kind == "uint":
        out = [f"v = _int({word}, 16)"]
        if size < 256:
            out.append(f"if v >> {size}: raise _Bad({label + ' exceeds ' + str(size) + ' bits'!r})")
        return out
    if kind == "int":
        out = [f"v = _int({word}, 16)", f"if v >> 255: v -= {1 << 256}"]
        if size < 256:
            lo, hi = -(1 << (size - 1)), 1 << (size - 1)
            out.append(f"if not {lo} <= v < {hi}: raise _Bad({label + ' out of range'!r})")
        return out
    if kind == "address":
        return [
            f"w = {word}",
            f"if w[:24] != {_Z[:24]!r}: raise _Bad({label + ' has dirty high bytes'!r})",
            "v = _fromhex(w[24:])",
        ]
    if kind == "bool":
        return [
            f"w = {word}",
            f"if w == {_Z[:63] + '1'!r}: v = True",
            f"elif w == {_Z!r}: v = False",
            f"else: raise _Bad({label + ' is not 0 or 1'!r})",
        ]
    if kind == "bytesN" and size < 32:
        return [
            f"w = {word}",
            f"if w[{2 * size}:] != {_Z[2 * size :]!r}: raise _Bad({label + ' has dirty padding'!r})",
            f"v = _fromhex(w[:{2 * size}])",
        ]
    return [f"v = _fromhex({word})"]


def compile_decoder(spec: EventSpec) -> DecodeFn:
    """A function (topics, data) -> parameter values of ``spec``; raises on a log that misfits."""
    ns: dict[str, Any] = {
        "_int": int,
        "_fromhex": bytes.fromhex,
        "_Bad": _Bad,
        "_dyn": _dyn_bytes,
        "_text": text_value,
        "_abi_decode": abi_decode,
    }
    ntopics = spec.topic_count
    lines = [
        f"if len(topics) != {ntopics}: raise _Bad(f'expected {ntopics} topics, got {{len(topics)}}')"
    ]
    data_params = [p for p in spec.params if not p.indexed]
    head_words = sum(p.parsed.words for p in data_params)
    dynamic = any(p.parsed.dynamic for p in data_params)
    sliced = all(p.parsed.scalar for p in data_params)
    expect = 2 + 64 * head_words
    if dynamic:
        lines.append(
            f"if len(data) < {expect} or len(data) & 1: "
            f"raise _Bad(f'data of {{(len(data) - 2) / 2:g}} bytes, head needs {head_words * 32}')"
        )
    else:
        lines.append(
            f"if len(data) != {expect}: "
            f"raise _Bad(f'data of {{(len(data) - 2) / 2:g}} bytes, expected {head_words * 32}')"
        )
    if data_params and not sliced:
        ns["_types"] = [p.parsed.codec for p in data_params]
        lines.append("d = _abi_decode(_types, _fromhex(data[2:]))")
    topic = 0 if spec.anonymous else 1
    word = di = 0
    names = []
    for i, p in enumerate(spec.params):
        node, label = p.parsed, f"{p.column} ({p.abi_type})"
        if p.indexed:
            lines.append(
                f"t = topics[{topic}]\nif len(t) != 66: raise _Bad('topic {topic} is not 32 bytes')"
            )
            if node.scalar and not node.dynamic:
                lines += _scalar_code(node, "t[2:]", label)
            else:
                lines.append("v = _fromhex(t[2:])")
            topic += 1
        elif not sliced:
            conv = _from_codec(node)
            if conv is None:
                lines.append(f"v = d[{di}]")
            else:
                ns[f"_c{i}"] = conv
                lines.append(f"v = _c{i}(d[{di}])")
            di += 1
        else:
            pos = 2 + 64 * word
            if node.dynamic:
                lines.append(f"v = _dyn(data, {pos}, {head_words * 32})")
                if node.kind == "string":
                    lines.append("v = _text(v)")
            else:
                lines += _scalar_code(node, f"data[{pos}:{pos + 64}]", label)
            word += node.words
        lines.append(f"p{i} = v")
        names.append(f"p{i}")
    ret = "(" + "".join(n + ", " for n in names) + ")"
    body = "\n".join("    " + ln for chunk in lines for ln in chunk.split("\n"))
    src = f"def decode(topics, data):\n{body}\n    return {ret}\n"
    exec(compile(src, f"<decoder {spec.signature}>", "exec"), ns)
    fn: DecodeFn = ns["decode"]
    return fn


@dataclass(frozen=True, slots=True)
class _Compiled:
    spec: EventSpec
    fn: DecodeFn
    ntopics: int
    min_data: int  # hex characters including 0x
    exact: bool  # static layout: data length must equal min_data


def _compiled(spec: EventSpec) -> _Compiled:
    data_params = [p for p in spec.params if not p.indexed]
    words = sum(p.parsed.words for p in data_params)
    exact = not any(p.parsed.dynamic for p in data_params)
    return _Compiled(spec, compile_decoder(spec), spec.topic_count, 2 + 64 * words, exact)


_Entry = tuple[str, DecodeFn, list[tuple[Any, ...]]]


@dataclass(slots=True)
class _Route:
    address: bytes
    by_topic0: dict[str, tuple[_Entry, ...]]
    anonymous: tuple[tuple[_Compiled, list[tuple[Any, ...]]], ...]


class Decoder:
    """Decodes batches of raw logs of one chain into rows for the selected events."""

    def __init__(self, chain_id: int, specs: Mapping[str, Sequence[EventSpec]]):
        self.chain_id = chain_id
        self._specs: dict[str, tuple[_Compiled, ...]] = {
            contract: tuple(_compiled(s) for s in group) for contract, group in specs.items()
        }

    def _route(
        self, address: str, names: tuple[str, ...], rows: dict[str, list[tuple[Any, ...]]]
    ) -> _Route:
        by_topic0: dict[str, list[_Entry]] = {}
        anonymous = []
        for contract in names:
            if contract not in self._specs:
                raise ValueError(f"address {address} mapped to unknown contract {contract!r}")
            for c in self._specs[contract]:
                out = rows.setdefault(c.spec.table, [])
                if c.spec.anonymous:
                    anonymous.append((c, out))
                else:
                    key = "0x" + c.spec.topic0.hex()
                    by_topic0.setdefault(key, []).append((c.spec.table, c.fn, out))
        return _Route(
            bytes.fromhex(address[2:]),
            {k: tuple(v) for k, v in by_topic0.items()},
            tuple(anonymous),
        )

    def decode(
        self,
        logs: Sequence[RawLog],
        contract_of: Mapping[str, tuple[str, ...]],
        block_times: Mapping[int, datetime],
    ) -> DecodeResult:
        rows: dict[str, list[tuple[Any, ...]]] = {}
        failures: list[DecodeFailure] = []
        routes: dict[str, _Route | None] = {}
        chain_id = self.chain_id
        fromhex = bytes.fromhex
        last_block = last_tx = ""
        block = 0
        block_time: datetime | None = None
        tx_hash = b""
        for log in logs:
            address = log["address"]
            try:
                route = routes[address]
            except KeyError:
                names = contract_of.get(address) or contract_of.get(address.lower())
                route = routes[address] = self._route(address, names, rows) if names else None
            if route is None:
                continue
            topics = log["topics"]
            entries = route.by_topic0.get(topics[0]) if topics else None
            if entries is None and topics and topics[0] != topics[0].lower():
                entries = route.by_topic0.get(topics[0].lower())
            if entries is None and not route.anonymous:
                continue
            block_hex = log["blockNumber"]
            if block_hex != last_block:
                last_block = block_hex
                block = int(block_hex, 16)
                block_time = block_times.get(block)
                if block_time is None:
                    raise KeyError(f"no block time for block {block}")
            tx_hex = log["transactionHash"]
            if tx_hex != last_tx:
                last_tx = tx_hex
                tx_hash = fromhex(tx_hex[2:])
            head = (
                chain_id,
                block,
                block_time,
                tx_hash,
                int(log["transactionIndex"], 16),
                int(log["logIndex"], 16),
                route.address,
            )
            data = log["data"]
            if entries is None:
                _decode_anonymous(route, head, topics, data)
                continue
            for table, fn, out in entries:
                try:
                    out.append(head + fn(topics, data))
                except _ERRORS as exc:
                    failures.append(_failure(table, fn, head, last_tx, exc))
        return DecodeResult({t: r for t, r in rows.items() if r}, failures)


def _decode_anonymous(route: _Route, head: Values, topics: list[str], data: str) -> None:
    n, size = len(topics), len(data)
    for c, out in route.anonymous:
        if c.ntopics != n or size < c.min_data or (c.exact and size != c.min_data):
            continue
        try:
            out.append(head + c.fn(topics, data))
        except _ERRORS:
            continue
        return


def _failure(table: str, fn: DecodeFn, head: Values, tx: str, exc: Exception) -> DecodeFailure:
    signature = fn.__code__.co_filename.removeprefix("<decoder ").removesuffix(">")
    reason = f"{signature}: {type(exc).__name__ + ': ' if not isinstance(exc, _Bad) else ''}{exc}"
    return DecodeFailure(table, head[1], head[5], tx, reason)
