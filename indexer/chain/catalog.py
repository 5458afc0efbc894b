"""What one chain file asks to index, as the loops need it (pure): the event specs of every
contract, the sources (one per event of a contract at one address, or at a factory's
children: ``keys``), how factories announce their children, and the decoder.

The blocks each source has committed are recorded in ``indexer.ranges``. The catalogue is
frozen: what changes while indexing (the blocks done, the children discovered) is
``ChainState``'s; an edited chain file gives a new catalogue.

Table names are pinned: once a table exists for a (contract, event signature), that name is
kept (``pinned``), whatever the naming rule would say now (an overload added later, say).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from indexer.abi import (
    AbiError,
    EventSpec,
    abi_events,
    event_signature,
    event_specs,
    keccak256,
)
from indexer.config import ChainConfig
from indexer.decode import Decoder, DecodeResult
from indexer.keys import SourceSpec, contract_sources
from indexer.naming import FIXED_COLUMNS, shorten
from indexer.plan import Source, Unit
from indexer.sink.api import Child, EventTable

# Past this many addresses, eth_getLogs filters by topic only and addresses are matched here:
# providers refuse or slow down on long address lists.
MAX_FILTER_ADDRESSES = 1000

Children = Mapping[str, Mapping[str, int]]  # child contract -> address (lower hex) -> block
Pinned = Mapping[tuple[str, str], str]  # (contract, signature) -> the table it writes to


@dataclass(frozen=True, slots=True)
class Discovery:
    """How a factory event announces a child: rows of ``table`` hold the child's address in
    column ``column``."""

    factory: str
    child: str
    table: str
    column: int


@dataclass(frozen=True, slots=True)
class Filter:
    """What to ask eth_getLogs for over a set of units, and how to route what comes back.
    ``addresses``/``topics`` None: no filter on that field. ``routes``: address -> contracts;
    ``only``: (address, contract) -> the tables wanted there, when not every event of that
    contract is (None: all of them everywhere)."""

    addresses: list[str] | None
    topics: list[str] | None
    routes: dict[str, tuple[str, ...]]
    only: dict[tuple[str, str], frozenset[str]] | None


@dataclass(frozen=True, slots=True)
class Catalog:
    chain: ChainConfig
    specs: Mapping[str, Sequence[EventSpec]]
    keyed: Mapping[str, SourceSpec]  # source key -> what it is
    discoveries: tuple[Discovery, ...]
    known_topics: Mapping[str, frozenset[str]]  # contract -> topic0 of every event of its ABI
    renamed: tuple[tuple[EventSpec, str], ...] = ()  # specs whose rule name was taken: why
    sources: tuple[Source, ...] = field(init=False)
    decoder: Decoder = field(init=False, compare=False)
    _discovery: Mapping[str, tuple[str, ...]] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(
            Source(k, s.start_block, s.factory) for k, s in self.keyed.items()))
        object.__setattr__(self, "decoder", Decoder(self.chain.chain_id, self.specs,
                                                    known_topics=self.known_topics))
        tables: dict[str, set[str]] = {}
        for d in self.discoveries:
            tables.setdefault(d.factory, set()).add(d.table)
        object.__setattr__(self, "_discovery", {
            f: tuple(k for k, s in self.keyed.items() if s.contract == f and s.spec.table in t)
            for f, t in tables.items()})

    @property
    def tables(self) -> list[EventTable]:
        return [
            EventTable(s.table, s.contract, s.name, s.signature, s.columns, s.column_types)
            for specs in self.specs.values()
            for s in specs
        ]

    @property
    def columns(self) -> dict[str, tuple[str, ...]]:
        return {s.table: s.columns for specs in self.specs.values() for s in specs}

    @property
    def first_block(self) -> int:
        """The lowest start block of any source."""
        return min(s.start_block for s in self.sources)

    def keys_of(self, contract: str, event: str | None = None) -> list[str]:
        """The sources of ``contract`` (of its events named ``event``, or of that signature)."""
        return [k for k, s in self.keyed.items() if s.contract == contract
                and (event is None or event in (s.spec.name, s.spec.signature))]

    @property
    def discovery(self) -> Mapping[str, tuple[str, ...]]:
        """Factory -> the sources whose rows announce its children."""
        return self._discovery

    def discovery_keys(self, factory: str) -> tuple[str, ...]:
        """The sources whose rows announce the children of ``factory``."""
        return self._discovery.get(factory, ())

    def filter_for(self, units: Sequence[Unit], children: Children) -> Filter:
        """The eth_getLogs filter over ``units`` of one same range (a child unit asks for the
        children known up to its range's end)."""
        wanted: dict[tuple[str, str], set[str]] = {}  # (address, contract) -> tables
        topics: set[str] | None = set()
        for u in units:
            for key in u.sources:
                src = self.keyed[key]
                if src.factory is None:
                    wanted.setdefault((src.target, src.contract), set()).add(src.spec.table)
                else:
                    for addr, block in children.get(src.contract, {}).items():
                        if block <= u.range.end:
                            wanted.setdefault((addr, src.contract), set()).add(src.spec.table)
                if topics is not None and not src.spec.anonymous:
                    topics.add("0x" + src.spec.topic0.hex())
                else:
                    topics = None
        routes: dict[str, tuple[str, ...]] = {}
        for addr, contract in wanted:
            routes[addr] = (*routes.get(addr, ()), contract)
        every = {c: frozenset(s.table for s in self.specs[c]) for _, c in wanted}
        only = {k: frozenset(t) for k, t in wanted.items() if frozenset(t) != every[k[1]]}
        addresses = None if len(routes) > MAX_FILTER_ADDRESSES else sorted(routes)
        return Filter(addresses, sorted(topics) if topics else None, routes, only or None)

    def scope(self, unit: Unit, children: Children) -> dict[str, list[bytes]]:
        """Per table, the addresses whose rows ``unit`` writes (its static addresses, and the
        children of its factories known up to its end): what re-indexing or checking it
        touches."""
        scope: dict[str, set[bytes]] = {}
        for key in unit.sources:
            src = self.keyed[key]
            table = scope.setdefault(src.spec.table, set())
            if src.address is not None:
                table.add(bytes.fromhex(src.address[2:]))
            else:
                table.update(bytes.fromhex(a[2:]) for a, b in
                             children.get(src.contract, {}).items() if b <= unit.range.end)
        return {t: sorted(a) for t, a in scope.items()}

    @property
    def types(self) -> dict[str, tuple[str, ...]]:
        """Table -> the SQL type of each column."""
        return {s.table: s.column_types for specs in self.specs.values() for s in specs}

    def discover(self, result: DecodeResult) -> list[Child]:
        """The children announced by the factory events among decoded rows."""
        found: list[Child] = []
        for d in self.discoveries:
            for row in result.rows.get(d.table, ()):
                found.append(Child(d.child, row[d.column], d.factory, row[1], row[5], row[3]))
        return found


def build_catalog(chain: ChainConfig, pinned: Pinned | None = None) -> Catalog:
    """Specs, sources and discovery rules of a chain file (ABI problems raise AbiError);
    ``pinned``: the tables already in the database, by (contract, signature)."""
    pinned = pinned or {}
    specs: dict[str, list[EventSpec]] = {}
    renamed: list[tuple[EventSpec, str]] = []
    for c in chain.contracts:
        selected = list(c.events) if c.events is not None else None
        wanted_discovery = [
            ch.factory.event for ch in chain.contracts
            if ch.factory is not None and ch.factory.contract == c.name
        ]
        if selected is not None:
            for ev in wanted_discovery:
                if not any(sel == ev or sel.startswith(ev + "(") for sel in selected):
                    selected.append(ev)
        found = event_specs(c.name, list(c.abi), selected, source=c.abi_path)
        specs[c.name] = [_pin(s, pinned, renamed) for s in found]
    _check_collisions(chain, specs)
    discoveries: list[Discovery] = []
    for c in chain.contracts:
        if c.factory is None:
            continue
        for s in specs[c.factory.contract]:
            if s.name != c.factory.event:
                continue
            names = [p.name for p in s.params]
            if c.factory.parameter in names:
                column = len(FIXED_COLUMNS) + names.index(c.factory.parameter)
                discoveries.append(Discovery(c.factory.contract, c.name, s.table, column))
    keyed = {s.key: s for c in chain.contracts for s in contract_sources(c, specs[c.name])}
    known = {c.name: frozenset("0x" + keccak256(event_signature(e).encode()).hex()
                               for e in abi_events(c.abi) if not e.get("anonymous"))
             for c in chain.contracts}
    return Catalog(chain, specs, keyed, tuple(discoveries), known, tuple(renamed))


def _pin(spec: EventSpec, pinned: Pinned, renamed: list[tuple[EventSpec, str]]) -> EventSpec:
    """The spec writing to the table its (contract, signature) already has; a new one whose
    rule name another signature of the contract holds gets the topic0 suffix instead."""
    table = pinned.get((spec.contract, spec.signature))
    if table is not None:
        return spec if table == spec.table else dataclasses.replace(spec, table=table)
    holder = next((f"{contract}.{sig}" for (contract, sig), t in pinned.items()
                   if t == spec.table), None)
    if holder is None:
        return spec
    table = f"{shorten(spec.table, 63 - 9)}_{spec.topic0.hex()[:8]}"
    renamed.append((dataclasses.replace(spec, table=table),
                    f"{spec.table} holds the rows of {holder}"))
    return dataclasses.replace(spec, table=table)


def _check_collisions(chain: ChainConfig, specs: Mapping[str, Sequence[EventSpec]]) -> None:
    """Two events of the file may not write to one table."""
    seen: dict[str, EventSpec] = {}
    for group in specs.values():
        for s in group:
            other = seen.setdefault(s.table, s)
            if other is not s:
                raise AbiError(
                    f"{chain.source}: {other.contract}.{other.signature} and {s.contract}."
                    f"{s.signature} would both write to table {s.table}; rename one of the "
                    f"contracts")
