"""The decoder of one event, generated (pure): a function per event that slices the hex
strings of a log (static layouts, top-level ``bytes``/``string``), eth_abi for arrays and
tuples, and the conventions of the values it returns (see ``decode``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from indexer.abi import AbiType, EventSpec

Values = tuple[Any, ...]
DecodeFn = Callable[[list[str], str], Values]


class BadValue(ValueError):
    """A log does not fit its event; the message is the failure reason."""


DECODE_ERRORS = (BadValue, ValueError, IndexError, TypeError, OverflowError)


def _abi_decoder(types: list[str]) -> Callable[[str], tuple[Any, ...]]:
    """eth_abi's decoding of the data (hex) as ``types``; its errors as ``BadValue`` (named by
    their class). eth_abi is imported here, by the first event that needs it (arrays,
    tuples): most chains never do, and it is a tenth of a second to import."""
    from eth_abi import decode
    from eth_abi.exceptions import DecodingError

    def run(data: str) -> tuple[Any, ...]:
        try:
            return decode(types, bytes.fromhex(data[2:]))
        except DecodingError as e:
            raise BadValue(f"{type(e).__name__}: {e}") from None

    return run


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
        raise BadValue(f"offset {off} outside data of {nbytes} bytes")
    start = 2 + 2 * off
    length = int(data[start : start + 64], 16)
    padded = (length + 31) & ~31
    if off + 32 + padded > nbytes:
        raise BadValue(f"length {length} at offset {off} runs past data of {nbytes} bytes")
    start += 64
    end = start + 2 * length
    if data[end : start + 2 * padded].strip("0"):
        raise BadValue(f"nonzero padding after {length} bytes at offset {off}")
    return bytes.fromhex(data[start:end])


_Z = "0" * 64


def _scalar_code(node: AbiType, word: str, label: str) -> list[str]:
    """Statements setting ``v`` from the 64-hex-digit expression ``word``."""
    kind, size = node.kind, node.size
    if kind == "uint":
        out = [f"v = _int({word}, 16)"]
        if size < 256:
            out.append(f"if v >> {size}: raise BadValue({label + ' exceeds ' + str(size) + ' bits'!r})")
        return out
    if kind == "int":
        out = [f"v = _int({word}, 16)", f"if v >> 255: v -= {1 << 256}"]
        if size < 256:
            lo, hi = -(1 << (size - 1)), 1 << (size - 1)
            out.append(f"if not {lo} <= v < {hi}: raise BadValue({label + ' out of range'!r})")
        return out
    if kind == "address":
        return [
            f"w = {word}",
            f"if w[:24] != {_Z[:24]!r}: raise BadValue({label + ' has dirty high bytes'!r})",
            "v = _fromhex(w[24:])",
        ]
    if kind == "bool":
        return [
            f"w = {word}",
            f"if w == {_Z[:63] + '1'!r}: v = True",
            f"elif w == {_Z!r}: v = False",
            f"else: raise BadValue({label + ' is not 0 or 1'!r})",
        ]
    if kind == "bytesN" and size < 32:
        return [
            f"w = {word}",
            f"if w[{2 * size}:] != {_Z[2 * size :]!r}: raise BadValue({label + ' has dirty padding'!r})",
            f"v = _fromhex(w[:{2 * size}])",
        ]
    return [f"v = _fromhex({word})"]


def compile_decoder(spec: EventSpec) -> DecodeFn:
    """A function (topics, data) -> parameter values of ``spec``; raises on a log that misfits."""
    ns: dict[str, Any] = {
        "_int": int,
        "_fromhex": bytes.fromhex,
        "BadValue": BadValue,
        "_dyn": _dyn_bytes,
        "_text": text_value,
    }
    ntopics = spec.topic_count
    lines = [
        f"if len(topics) != {ntopics}: raise BadValue(f'expected {ntopics} topics, got {{len(topics)}}')"
    ]
    data_params = [p for p in spec.params if not p.indexed]
    head_words = sum(p.parsed.words for p in data_params)
    dynamic = any(p.parsed.dynamic for p in data_params)
    sliced = all(p.parsed.scalar for p in data_params)
    expect = 2 + 64 * head_words
    if dynamic:
        lines.append(
            f"if len(data) < {expect} or len(data) & 1: "
            f"raise BadValue(f'data of {{(len(data) - 2) / 2:g}} bytes, head needs {head_words * 32}')"
        )
    else:
        lines.append(
            f"if len(data) != {expect}: "
            f"raise BadValue(f'data of {{(len(data) - 2) / 2:g}} bytes, expected {head_words * 32}')"
        )
    if data_params and not sliced:
        ns["_abi"] = _abi_decoder([p.parsed.codec for p in data_params])
        lines.append("d = _abi(data)")
    topic = 0 if spec.anonymous else 1
    word = di = 0
    names = []
    for i, p in enumerate(spec.params):
        node, label = p.parsed, f"{p.column} ({p.abi_type})"
        if p.indexed:
            lines.append(
                f"t = topics[{topic}]\nif len(t) != 66: raise BadValue('topic {topic} is not 32 bytes')"
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
