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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from indexer.abi import EventSpec
from indexer.codegen import DECODE_ERRORS, BadValue, DecodeFn, Values, compile_decoder
from indexer.types import RawLog


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
    known: frozenset[str]  # topic0 of every (non-anonymous) event of the contracts' ABIs


Only = Mapping[tuple[str, str], frozenset[str]]  # (address, contract) -> tables wanted there


class Decoder:
    """Decodes batches of raw logs of one chain into rows for the selected events.

    ``known_topics``: per contract, the topic0 of every event of its ABI, selected or not: a
    log carrying one of them is that event's, never an anonymous event's."""

    def __init__(self, chain_id: int, specs: Mapping[str, Sequence[EventSpec]],
                 known_topics: Mapping[str, frozenset[str]] | None = None):
        self.chain_id = chain_id
        self._specs: dict[str, tuple[_Compiled, ...]] = {
            contract: tuple(_compiled(s) for s in group) for contract, group in specs.items()
        }
        self._known = known_topics or {}

    def _route(
        self, address: str, names: tuple[str, ...], rows: dict[str, list[tuple[Any, ...]]],
        only: Only | None,
    ) -> _Route:
        by_topic0: dict[str, list[_Entry]] = {}
        anonymous = []
        known: set[str] = set()
        for contract in names:
            if contract not in self._specs:
                raise ValueError(f"address {address} mapped to unknown contract {contract!r}")
            wanted = only.get((address, contract)) if only is not None else None
            known |= self._known.get(contract, frozenset())
            for c in self._specs[contract]:
                if wanted is not None and c.spec.table not in wanted:
                    continue
                out = rows.setdefault(c.spec.table, [])
                if c.spec.anonymous:
                    anonymous.append((c, out))
                else:
                    key = "0x" + c.spec.topic0.hex()
                    known.add(key)
                    by_topic0.setdefault(key, []).append((c.spec.table, c.fn, out))
        return _Route(
            bytes.fromhex(address[2:]),
            {k: tuple(v) for k, v in by_topic0.items()},
            tuple(anonymous),
            frozenset(known),
        )

    def decode(
        self,
        logs: Sequence[RawLog],
        contract_of: Mapping[str, tuple[str, ...]],
        block_times: Mapping[int, datetime],
        only: Only | None = None,
    ) -> DecodeResult:
        """Rows of every log routed by ``contract_of`` (lower-case address -> contracts);
        ``only`` narrows an (address, contract) to some of its tables."""
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
                lower = address.lower()
                names = contract_of.get(address) or contract_of.get(lower)
                route = routes[address] = \
                    self._route(lower, names, rows, only) if names else None
            if route is None:
                continue
            topics = log["topics"]
            entries = route.by_topic0.get(topics[0]) if topics else None
            if entries is None and topics and topics[0] != topics[0].lower():
                entries = route.by_topic0.get(topics[0].lower())
            if entries is None and (not route.anonymous or (topics and (
                    topics[0] in route.known or topics[0].lower() in route.known))):
                continue  # not wanted here, or an event left out by ``events:``
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
                except DECODE_ERRORS as exc:
                    failures.append(_failure(table, fn, head, last_tx, exc))
        return DecodeResult({t: r for t, r in rows.items() if r}, failures)


def _decode_anonymous(route: _Route, head: Values, topics: list[str], data: str) -> None:
    n, size = len(topics), len(data)
    for c, out in route.anonymous:
        if c.ntopics != n or size < c.min_data or (c.exact and size != c.min_data):
            continue
        try:
            out.append(head + c.fn(topics, data))
        except DECODE_ERRORS:
            continue
        return


def _failure(table: str, fn: DecodeFn, head: Values, tx: str, exc: Exception) -> DecodeFailure:
    signature = fn.__code__.co_filename.removeprefix("<decoder ").removesuffix(">")
    reason = f"{signature}: {type(exc).__name__ + ': ' if not isinstance(exc, BadValue) else ''}{exc}"
    return DecodeFailure(table, head[1], head[5], tx, reason)
