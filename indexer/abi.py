"""ABI parsing: event signatures, topic0, and the Solidity type -> column mapping (contract 3).

An event's columns are the fixed columns of :data:`indexer.naming.FIXED_COLUMNS` followed by one
column per parameter in ABI order. Column types:

- address, bytesN, bytes -> ``bytea``; bool -> ``boolean``; string -> ``text``;
- intN/uintN whose range fits a signed 64-bit integer -> ``bigint``; uint64 -> ``numeric(20,0)``;
  wider integers -> ``numeric(78,0)``;
- arrays and tuples -> ``jsonb``;
- an indexed reference value (string, bytes, any array or tuple) is stored as its 32-byte topic,
  the keccak256 of its encoding -> ``bytea``.

Fixed-point types (``fixed``/``ufixed``) and the ``function`` type are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from Crypto.Hash import keccak

from indexer.naming import FIXED_COLUMNS, column_names, table_name

FIXED_COLUMN_TYPES = ("bigint", "bigint", "timestamptz", "bytea", "integer", "integer", "bytea")

_ARRAY_DIMS = re.compile(r"\[(\d*)\]")
_JSON_TYPE = re.compile(r"([a-z][a-z0-9]*)((?:\[\d*\])*)")
_SCALAR_TYPE = re.compile(r"(u?int|bytes|u?fixed)(\d*)(?:x(\d+))?|address|bool|string|function")
_WORD = re.compile(r"[a-z0-9]+")
_DIMS = re.compile(r"(?:\[\d*\])*")
_INT_ALIAS = re.compile(r"\b(u?int)(?![0-9])")


class AbiError(ValueError):
    """An ABI file or event is unusable; the message names the file, the event and the fault."""


@dataclass(frozen=True, slots=True)
class AbiType:
    """A parsed Solidity ABI type.

    ``kind`` is one of uint, int, address, bool, bytesN, bytes, string, array, tuple. ``size`` is
    the bit width of an integer, N of bytesN, the length of a fixed array (0: dynamic array).
    ``codec`` is the type string handed to eth_abi: ``string`` is read as ``bytes`` so that text
    that is not valid UTF-8 can be repaired instead of failing the log.
    """

    kind: str
    canonical: str
    codec: str
    dynamic: bool
    words: int  # head size in 32-byte words (1 for every dynamic type)
    size: int = 0
    item: AbiType | None = None
    components: tuple[AbiType, ...] = ()
    names: tuple[str, ...] = ()

    @property
    def scalar(self) -> bool:
        return self.kind not in ("array", "tuple")


def _scalar(kind: str, size: int = 0) -> AbiType:
    canonical = {"bytesN": f"bytes{size}", "uint": f"uint{size}", "int": f"int{size}"}.get(
        kind, kind
    )
    codec = "bytes" if kind == "string" else canonical
    return AbiType(kind, canonical, codec, kind in ("bytes", "string"), 1, size)


def _array(item: AbiType, length: int) -> AbiType:
    suffix = f"[{length}]" if length else "[]"
    dynamic = item.dynamic or not length
    words = 1 if dynamic else item.words * length
    return AbiType(
        "array", item.canonical + suffix, item.codec + suffix, dynamic, words, length, item
    )


def _tuple(components: Sequence[AbiType], names: Sequence[str]) -> AbiType:
    comps = tuple(components)
    dynamic = any(c.dynamic for c in comps)
    words = 1 if dynamic else sum(c.words for c in comps)
    canonical = "(" + ",".join(c.canonical for c in comps) + ")"
    codec = "(" + ",".join(c.codec for c in comps) + ")"
    return AbiType("tuple", canonical, codec, dynamic, words, 0, None, comps, tuple(names))


def _parse_scalar(text: str) -> AbiType:
    m = _SCALAR_TYPE.fullmatch(text)
    if m is None:
        raise AbiError(f"unknown type {text!r}")
    family, digits = m.group(1), m.group(2)
    if family is None:
        if text == "function":
            raise AbiError("type 'function' is not supported")
        return _scalar(text)
    if family in ("fixed", "ufixed"):
        raise AbiError(f"fixed-point type {text!r} is not supported")
    if m.group(3) is not None:
        raise AbiError(f"unknown type {text!r}")
    if family == "bytes":
        if not digits:
            return _scalar("bytes")
        if 1 <= int(digits) <= 32 and digits[0] != "0":
            return _scalar("bytesN", int(digits))
        raise AbiError(f"unknown type {text!r}: bytesN needs 1 <= N <= 32")
    bits = int(digits) if digits else 256
    if bits % 8 or not 8 <= bits <= 256 or (digits and digits[0] == "0"):
        raise AbiError(f"unknown type {text!r}: integer width must be 8..256 in steps of 8")
    return _scalar(family, bits)


def _wrap_arrays(node: AbiType, dims: str) -> AbiType:
    for length in _ARRAY_DIMS.findall(dims):
        if length and int(length) == 0:
            raise AbiError(f"array of length 0 in {node.canonical}{dims}")
        node = _array(node, int(length) if length else 0)
    return node


def parse_type(text: str) -> AbiType:
    """Parse a canonical type string such as ``(uint256,address)[]`` (tuples unnamed)."""
    text = _INT_ALIAS.sub(lambda m: m.group(1) + "256", "".join(text.split()))
    node, rest = _parse_at(text, 0)
    if rest != len(text):
        raise AbiError(f"unknown type {text!r}")
    return node


def _parse_at(text: str, pos: int) -> tuple[AbiType, int]:
    if text.startswith("(", pos):
        comps: list[AbiType] = []
        pos += 1
        if text.startswith(")", pos):
            raise AbiError(f"empty tuple in {text!r}")
        while True:
            comp, pos = _parse_at(text, pos)
            comps.append(comp)
            if text.startswith(",", pos):
                pos += 1
            elif text.startswith(")", pos):
                pos += 1
                break
            else:
                raise AbiError(f"unknown type {text!r}")
        node = _tuple(comps, [""] * len(comps))
    else:
        m = _WORD.match(text, pos)
        if m is None:
            raise AbiError(f"unknown type {text!r}")
        node, pos = _parse_scalar(m.group()), m.end()
    m = _DIMS.match(text, pos)
    assert m is not None
    return _wrap_arrays(node, m.group()), m.end()


def type_from_json(entry: dict[str, Any]) -> AbiType:
    """Parse one ABI input (``type`` plus ``components`` for tuples)."""
    text = entry.get("type")
    m = _JSON_TYPE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise AbiError(f"unknown type {text!r}")
    base, dims = m.groups()
    if base == "tuple":
        comps = entry.get("components")
        if not isinstance(comps, list) or not comps:
            raise AbiError(f"tuple type {text!r} without components")
        node = _tuple([type_from_json(c) for c in comps], [c.get("name") or "" for c in comps])
    else:
        node = _parse_scalar(base)
    return _wrap_arrays(node, dims)


def sql_type(abi_type: str | AbiType, indexed: bool = False) -> str:
    """The Postgres column type of a parameter of ``abi_type`` (contract 3)."""
    node = parse_type(abi_type) if isinstance(abi_type, str) else abi_type
    kind = node.kind
    if indexed and kind in ("bytes", "string", "array", "tuple"):
        return "bytea"
    if kind in ("address", "bytes", "bytesN"):
        return "bytea"
    if kind == "bool":
        return "boolean"
    if kind == "string":
        return "text"
    if kind == "uint":
        return (
            "bigint" if node.size < 64 else "numeric(20,0)" if node.size == 64 else "numeric(78,0)"
        )
    if kind == "int":
        return "bigint" if node.size <= 64 else "numeric(78,0)"
    return "jsonb"


@dataclass(frozen=True, slots=True)
class Param:
    name: str  # as in the ABI, may be ""
    column: str
    abi_type: str  # canonical, tuples expanded
    sql_type: str
    indexed: bool
    parsed: AbiType


@dataclass(frozen=True, slots=True)
class EventSpec:
    contract: str
    name: str
    signature: str
    topic0: bytes
    anonymous: bool
    table: str
    params: tuple[Param, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return FIXED_COLUMNS + tuple(p.column for p in self.params)

    @property
    def column_types(self) -> tuple[str, ...]:
        return FIXED_COLUMN_TYPES + tuple(p.sql_type for p in self.params)

    @property
    def topic_count(self) -> int:
        """Number of topics of a log of this event (topic0 included unless anonymous)."""
        return sum(p.indexed for p in self.params) + (0 if self.anonymous else 1)


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def _signature(entry: dict[str, Any], where: str) -> tuple[str, list[AbiType]]:
    types = []
    for j, inp in enumerate(entry.get("inputs", ())):
        try:
            types.append(type_from_json(inp))
        except AbiError as exc:
            raise AbiError(f"{where}: parameter {j} {inp.get('name') or ''!r}: {exc}") from None
    return entry["name"] + "(" + ",".join(t.canonical for t in types) + ")", types


def _normalise_selector(selector: str) -> str:
    return _INT_ALIAS.sub(lambda m: m.group(1) + "256", "".join(selector.split()))


def event_specs(
    contract: str,
    abi: Sequence[dict[str, Any]],
    events: Sequence[str] | None = None,
    *,
    source: Path | str | None = None,
) -> list[EventSpec]:
    """The EventSpecs of ``abi`` in ABI order: all events, or those ``events`` selects.

    A selector is an event name (every overload of it) or a full signature.
    """
    prefix = f"{source}: " if source is not None else ""
    entries = [e for e in abi if isinstance(e, dict) and e.get("type") == "event"]
    names = [e.get("name", "") for e in entries]
    wanted = _select(prefix, contract, entries, events)
    specs: list[EventSpec] = []
    by_signature: dict[str, dict[str, Any]] = {}
    overloads: dict[str, set[str]] = {}
    for entry in entries:
        sig = event_signature(entry)
        overloads.setdefault(entry["name"], set()).add(sig)
    for index, entry in enumerate(entries):
        if index not in wanted:
            continue
        where = f"{prefix}contract {contract}, event {names[index]}"
        signature, types = _signature(entry, where)
        if signature in by_signature:
            if _indexed(by_signature[signature]) != _indexed(entry):
                raise AbiError(f"{where}: {signature} declared twice with different indexed flags")
            continue
        by_signature[signature] = entry
        specs.append(
            _build(contract, entry, signature, types, len(overloads[entry["name"]]) > 1, where)
        )
    return specs


def event_signature(entry: Mapping[str, Any]) -> str:
    """``Name(type,...)`` of an ABI event entry in canonical types (tuples written out as
    ``(t1,t2)``); a type that does not parse is kept as written."""

    def canon(inp: dict[str, Any]) -> str:
        try:
            return type_from_json(inp).canonical
        except AbiError:
            return str(inp.get("type"))

    return entry["name"] + "(" + ",".join(canon(i) for i in entry.get("inputs", ())) + ")"


def _indexed(entry: dict[str, Any]) -> list[bool]:
    return [bool(i.get("indexed")) for i in entry.get("inputs", ())]


def abi_events(abi: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The event entries of an ABI, in ABI order."""
    return [dict(e) for e in abi if isinstance(e, Mapping) and e.get("type") == "event"]


def find_events(abi: Sequence[Mapping[str, Any]], selector: str) -> list[dict[str, Any]]:
    """The events of ``abi`` a selector names: a name (every overload of it) or a signature
    (``uint`` reads as ``uint256``, spaces are ignored)."""
    norm = _normalise_selector(selector)
    return [e for e in abi_events(abi) if _selects(e, norm)]


def _selects(entry: Mapping[str, Any], normalised: str) -> bool:
    return bool(entry["name"] == normalised or event_signature(entry) == normalised)


def _select(
    prefix: str, contract: str, entries: list[dict[str, Any]], events: Sequence[str] | None
) -> set[int]:
    if events is None:
        return set(range(len(entries)))
    chosen: set[int] = set()
    for selector in events:
        norm = _normalise_selector(selector)
        hits = {i for i, e in enumerate(entries) if _selects(e, norm)}
        if not hits:
            known = ", ".join(dict.fromkeys(event_signature(e) for e in entries)) or "none"
            raise AbiError(
                f"{prefix}contract {contract}: no event {selector!r} in the ABI; events: {known}"
            )
        chosen |= hits
    return chosen


def _build(
    contract: str,
    entry: dict[str, Any],
    signature: str,
    types: list[AbiType],
    overloaded: bool,
    where: str,
) -> EventSpec:
    inputs = entry.get("inputs", [])
    anonymous = bool(entry.get("anonymous"))
    flags = _indexed(entry)
    if sum(flags) > (4 if anonymous else 3):
        raise AbiError(f"{where}: {sum(flags)} indexed parameters, at most {4 if anonymous else 3}")
    topic0 = keccak256(signature.encode())
    columns = column_names([i.get("name") or "" for i in inputs])
    params = tuple(
        Param(
            name=inp.get("name") or "",
            column=column,
            abi_type=node.canonical,
            sql_type=sql_type(node, flag),
            indexed=flag,
            parsed=node,
        )
        for inp, column, node, flag in zip(inputs, columns, types, flags, strict=True)
    )
    return EventSpec(
        contract=contract,
        name=entry["name"],
        signature=signature,
        topic0=topic0,
        anonymous=anonymous,
        table=table_name(contract, entry["name"], topic0 if overloaded else None),
        params=params,
    )
