"""An independent reference decoder: what the event tables must hold for a block range.

It shares only the public naming contract with the indexer (`indexer.naming`); fetching
(web3 `eth_getLogs`) and decoding (eth-abi) are separate code paths, so integration tests compare
two implementations. Rows are tuples in the representation asyncpg returns when reading the
tables back: chain_id, block_number, block_time (aware UTC datetime), tx_hash (bytes), tx_index,
log_index, address (bytes), then one value per event parameter:

- address -> 20 bytes; bytes / bytesN -> bytes; bool -> bool; string -> str (each invalid
  UTF-8 sequence and each NUL becomes U+FFFD, everywhere strings appear)
- (u)int that fits bigint -> int; uint64 and wider, int72 and wider -> decimal.Decimal (numeric)
- arrays and tuples -> the parsed jsonb value: lists; tuples as dicts keyed by component names
  when every component is named, else lists; inside JSON, ints are ints, addresses and bytes
  lower-case "0x..." hex
- indexed string / bytes / arrays / tuples -> the 32-byte topic (their hash) as bytes

A log that does not fit its event (topic count, static data layout, dirty padding, out-of-range
ints) gives no row (the indexer records a decode failure instead). Anonymous events: a log of the
contract matching none of its topic0s is tried against its anonymous events, first fit wins.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from eth_abi import decode, encode
from eth_abi.grammar import parse as parse_abi_type
from eth_utils import keccak, to_checksum_address
from eth_utils.abi import collapse_if_tuple

from indexer.naming import column_names, table_name
from tests.support.contracts import connect
from tests.support.rpc import JsonRpc

Row = tuple[Any, ...]
FIXED = ("chain_id", "block_number", "block_time", "tx_hash", "tx_index", "log_index", "address")
_ARRAY = re.compile(r"^(.*)\[(\d*)\]$")
_INT = re.compile(r"^(u?)int(\d*)$")
_STRING = re.compile(r"\bstring\b")


def is_dynamic_type(abi_type: str) -> bool:
    return bool(parse_abi_type(abi_type).is_dynamic)


@dataclass(frozen=True)
class Source:
    """One contract of a chain file: its table prefix, ABI, emitters and selected events."""

    contract: str
    abi: Sequence[Mapping[str, Any]]
    addresses: Sequence[str] | None  # None: any emitter (e.g. all factory children)
    events: Sequence[str] | None = None  # names or full signatures; None: every event


@dataclass(frozen=True)
class EventTable:
    table: str
    columns: tuple[str, ...]
    abi: Mapping[str, Any]
    topic0: bytes  # keccak of the signature (also for anonymous events, which never log it)
    signature: str

    @property
    def anonymous(self) -> bool:
        return bool(self.abi.get("anonymous"))


def _signature(event: Mapping[str, Any]) -> str:
    return f"{event['name']}({','.join(collapse_if_tuple(dict(i)) for i in event['inputs'])})"


def event_tables(source: Source) -> list[EventTable]:
    """The event tables of a source in ABI order. Overloads (one name, several distinct
    signatures, anonymous ones included) get the topic0 suffix; a repeated identical signature
    is one table."""
    events = [e for e in source.abi if e.get("type") == "event"]
    signatures: dict[str, set[str]] = {}
    for e in events:
        signatures.setdefault(e["name"], set()).add(_signature(e))
    wanted = set(source.events) if source.events is not None else None
    out: dict[str, EventTable] = {}
    for event in events:
        sig = _signature(event)
        if sig in out or (wanted is not None and not {event["name"], sig} & wanted):
            continue
        topic0 = keccak(text=sig)
        overload = topic0 if len(signatures[event["name"]]) > 1 else None
        cols = column_names([i.get("name", "") for i in event["inputs"]])
        table = table_name(source.contract, event["name"], overload)
        out[sig] = EventTable(table, (*FIXED, *cols), event, topic0, sig)
    return list(out.values())


# ----------------------------------------------------------------------------- value mapping


def text_value(raw: bytes) -> str:
    """Solidity string bytes as the text column holds them: each invalid UTF-8 sequence and each
    NUL (which Postgres text and jsonb cannot hold) becomes U+FFFD."""
    return raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


def _is_hashed_when_indexed(abi_type: str) -> bool:
    return abi_type in ("string", "bytes") or abi_type.endswith("]") or abi_type.startswith("tuple")


def _codec_type(param: Mapping[str, Any]) -> str:
    """The eth-abi type to decode with: strings as bytes (same encoding), so text rules are ours."""
    return _STRING.sub("bytes", collapse_if_tuple(dict(param)))


def to_json(param: Mapping[str, Any], value: Any) -> Any:
    """A decoded value as the indexer's jsonb holds it (after json.loads)."""
    abi_type = param["type"]
    array = _ARRAY.match(abi_type)
    if array:
        inner = {**param, "type": array.group(1)}
        return [to_json(inner, v) for v in value]
    if abi_type == "tuple":
        comps = param["components"]
        items = [to_json(c, v) for c, v in zip(comps, value, strict=True)]
        names = [c.get("name") for c in comps]
        if all(names) and len(set(names)) == len(names):
            return {c["name"]: item for c, item in zip(comps, items, strict=True)}
        return items
    if abi_type == "address":
        return str(value).lower()
    if abi_type == "string":
        return text_value(value)
    if abi_type.startswith("bytes"):
        return "0x" + bytes(value).hex()
    return value  # bool, int


def to_column(param: Mapping[str, Any], value: Any) -> Any:
    """A decoded value as asyncpg returns its column."""
    abi_type = param["type"]
    if abi_type.endswith("]") or abi_type == "tuple":
        return to_json(param, value)
    if abi_type == "address":
        return bytes.fromhex(str(value)[2:])
    if abi_type == "string":
        return text_value(value)
    if abi_type.startswith("bytes"):
        return bytes(value)
    m = _INT.match(abi_type)
    if m:
        bits = int(m.group(2) or 256)
        fits_bigint = bits < 64 if m.group(1) else bits <= 64
        return int(value) if fits_bigint else Decimal(value)
    return value  # bool


def _canonical(types: list[str], values: tuple[Any, ...], raw: bytes) -> bool:
    """Static layouts must be exactly their canonical encoding (length, clean padding, ints in
    range); dynamic layouts are left to eth-abi's own checks."""
    if any(is_dynamic_type(t) for t in types):
        return True
    return encode(types, list(values)) == raw


def decode_log(event: EventTable, log: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Parameter values of one log, or None when its shape does not fit the event (topic count,
    data layout, dirty padding: e.g. an ERC721 Transfer has ERC20's topic0 and one more topic)."""
    inputs = event.abi["inputs"]
    indexed = [i for i in inputs if i.get("indexed")]
    plain = [i for i in inputs if not i.get("indexed")]
    topics = [bytes(t) for t in log["topics"]]
    skip = 0 if event.anonymous else 1
    if len(topics) != skip + len(indexed):
        return None
    data = bytes(log["data"])
    types = [_codec_type(i) for i in plain]
    try:
        decoded = decode(types, data)
    except Exception:  # any eth-abi decoding error means "not this event's shape"
        return None
    if not _canonical(types, decoded, data):
        return None
    plain_values = iter(decoded)
    topic_values = iter(topics[skip:])
    out = []
    for param in inputs:
        if not param.get("indexed"):
            out.append(to_column(param, next(plain_values)))
            continue
        topic = next(topic_values)
        if _is_hashed_when_indexed(param["type"]):
            out.append(topic)
            continue
        try:
            (value,) = decode([param["type"]], topic)
        except Exception:  # dirty padding or out-of-range value in a topic
            return None
        if encode([param["type"]], [value]) != topic:
            return None
        out.append(to_column(param, value))
    return tuple(out)


# ----------------------------------------------------------------------------- expected rows


@dataclass
class _Route:
    by_topic0: dict[bytes, list[EventTable]]
    anonymous: list[EventTable]


def _route_log(route: _Route, log: Mapping[str, Any]) -> tuple[EventTable, tuple[Any, ...]] | None:
    topics = log["topics"]
    named = route.by_topic0.get(bytes(topics[0])) if topics else None
    if named:
        for et in named:
            values = decode_log(et, log)
            if values is not None:
                return et, values
        return None
    for et in route.anonymous:  # first anonymous event that decodes wins
        values = decode_log(et, log)
        if values is not None:
            return et, values
    return None


def _fetch(
    w3: Any, start: int, end: int, addresses: list[str] | None, topic0s: list[bytes] | None
) -> list[Any]:
    flt: dict[str, Any] = {"fromBlock": start, "toBlock": end}
    if addresses is not None:
        flt["address"] = [to_checksum_address(a) for a in addresses]
    if topic0s is not None:
        flt["topics"] = [topic0s]
    return list(w3.eth.get_logs(flt))


def expected_rows(
    rpc_url: str,
    sources: Iterable[Source],
    from_block: int,
    to_block: int,
    *,
    chunk: int = 2000,
) -> dict[str, list[Row]]:
    """Every table's rows for [from_block, to_block], ordered by (chain_id, block_number,
    log_index); tables with no rows are present with an empty list.

    Per source: logs of its addresses (any emitter when None) with one of its events' topic0;
    a source with selected anonymous events and known addresses also gets every other log of
    those addresses, tried against the anonymous events in ABI order.
    """
    w3 = connect(rpc_url)
    chain_id = w3.eth.chain_id
    out: dict[str, list[Row]] = {}
    found: list[tuple[EventTable, Any, tuple[Any, ...]]] = []
    for source in sources:
        tables = event_tables(source)
        for et in tables:
            out.setdefault(et.table, [])
        route = _Route({}, [et for et in tables if et.anonymous and source.addresses is not None])
        for et in tables:
            if not et.anonymous:
                route.by_topic0.setdefault(et.topic0, []).append(et)
        addresses = None if source.addresses is None else list(source.addresses)
        if addresses == []:
            continue
        topic0s = None if route.anonymous else list(route.by_topic0)
        if topic0s == []:
            continue
        for start in range(from_block, to_block + 1, chunk):
            for log in _fetch(w3, start, min(start + chunk - 1, to_block), addresses, topic0s):
                hit = _route_log(route, log)
                if hit is not None:
                    found.append((hit[0], log, hit[1]))
    times = block_times(rpc_url, sorted({log["blockNumber"] for _, log, _ in found}))
    for et, log, values in found:
        out[et.table].append(
            (
                chain_id,
                log["blockNumber"],
                times[log["blockNumber"]],
                bytes(log["transactionHash"]),
                log["transactionIndex"],
                log["logIndex"],
                bytes.fromhex(log["address"][2:]),
                *values,
            )
        )
    for rows in out.values():
        rows.sort(key=lambda r: (r[0], r[1], r[5]))
    return out


def block_times(rpc_url: str, numbers: Sequence[int], batch: int = 200) -> dict[int, datetime]:
    times: dict[int, datetime] = {}
    with JsonRpc(rpc_url) as rpc:
        for i in range(0, len(numbers), batch):
            part = numbers[i : i + batch]
            blocks = rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in part])
            for n, block in zip(part, blocks, strict=True):
                times[n] = datetime.fromtimestamp(int(block["timestamp"], 16), tz=UTC)
    return times


def addresses_from(rows: Iterable[Row], table_columns: Sequence[str], column: str) -> list[str]:
    """Checksummed addresses from one bytea column of rows (e.g. PairCreated.pair)."""
    i = list(table_columns).index(column)
    return [to_checksum_address(r[i]) for r in rows]


# ----------------------------------------------------------------------------- reading back


async def read_tables(
    database_url: str, schema: str, tables: Iterable[str]
) -> dict[str, list[Row]]:
    """Rows of each table ordered by (chain_id, block_number, log_index), jsonb parsed."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        out: dict[str, list[Row]] = {}
        for table in tables:
            stmt = await conn.prepare(
                f'SELECT * FROM "{schema}"."{table}" ORDER BY chain_id, block_number, log_index'
            )
            is_json = [a.type.name in ("json", "jsonb") for a in stmt.get_attributes()]
            out[table] = [
                tuple(
                    json.loads(v) if j and v is not None else v
                    for v, j in zip(rec, is_json, strict=True)
                )
                for rec in await stmt.fetch()
            ]
        return out
    finally:
        await conn.close()


def _key(row: Row) -> tuple[int, int, int]:
    return (row[0], row[1], row[5])


def _table_diff(table: str, expected: list[Row], actual: list[Row], limit: int) -> list[str]:
    exp = {_key(r): r for r in expected}
    act = {_key(r): r for r in actual}
    missing = [k for k in exp if k not in act]
    extra = [k for k in act if k not in exp]
    changed = [k for k in exp if k in act and exp[k] != act[k]]
    dupes = len(actual) - len(act)
    if not (missing or extra or changed or dupes):
        return []
    lines = [
        f"{table}: expected {len(expected)} rows, got {len(actual)}"
        f" ({len(missing)} missing, {len(extra)} extra, {len(changed)} different, {dupes} duplicate keys)"
    ]
    lines += [f"  missing {exp[k]!r}" for k in missing[:limit]]
    lines += [f"  extra   {act[k]!r}" for k in extra[:limit]]
    for k in changed[:limit]:
        cols = [i for i, (a, b) in enumerate(zip(exp[k], act[k], strict=False)) if a != b]
        if len(exp[k]) != len(act[k]):
            cols.append(-1)
        lines.append(
            f"  differs at key {k}, column indexes {cols}: expected {exp[k]!r}, got {act[k]!r}"
        )
    return lines


def assert_tables_equal(
    expected: Mapping[str, list[Row]], actual: Mapping[str, list[Row]], *, limit: int = 5
) -> None:
    """Compare per table by (chain_id, block_number, log_index); raises with a readable diff."""
    lines: list[str] = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            lines.append(f"{table}: table missing (expected {len(expected[table])} rows)")
        elif table not in expected:
            lines.append(f"{table}: unexpected table ({len(actual[table])} rows)")
        else:
            lines += _table_diff(table, expected[table], actual[table], limit)
    if lines:
        raise AssertionError("tables differ:\n" + "\n".join(lines))
