"""What one chain file asks to index, as the loops need it (pure): the event specs of every
contract, the sources (one per configured contract), how factories announce their children,
the configured addresses, and the decoder.

A *source* is one configured contract; the blocks each source has committed are recorded in
``indexer.ranges``. The catalogue is frozen: what changes while indexing (the blocks done, the
children discovered) is ``ChainState``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from indexer.abi import EventSpec, event_specs
from indexer.config import ChainConfig
from indexer.decode import Decoder, DecodeResult
from indexer.naming import FIXED_COLUMNS
from indexer.plan import Source, Unit
from indexer.sink.api import Child, EventTable

# Past this many addresses, eth_getLogs filters by topic only and addresses are matched here:
# providers refuse or slow down on long address lists.
MAX_FILTER_ADDRESSES = 1000

Children = Mapping[str, Mapping[str, int]]  # child contract -> address (lower hex) -> block


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
    ``addresses``/``topics`` None: no filter on that field. ``routes``: address -> contracts."""

    addresses: list[str] | None
    topics: list[str] | None
    routes: dict[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Catalog:
    chain: ChainConfig
    specs: Mapping[str, Sequence[EventSpec]]
    sources: tuple[Source, ...]
    discoveries: tuple[Discovery, ...]
    static_addresses: Mapping[str, tuple[str, ...]]  # lower-case address -> contract names
    decoder: Decoder = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoder", Decoder(self.chain.chain_id, self.specs))

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
    def factory_children(self) -> tuple[str, ...]:
        """Names of the sources whose addresses a factory discovers."""
        return tuple(s.name for s in self.sources if s.factory is not None)

    def source(self, name: str) -> Source:
        return next(s for s in self.sources if s.name == name)

    @property
    def first_block(self) -> int:
        """The lowest start block of any source."""
        return min(s.start_block for s in self.sources)

    def filter_for(self, units: Sequence[Unit], children: Children) -> Filter:
        """The eth_getLogs filter over ``units`` of one same range (a child unit asks for the
        children known up to its range's end)."""
        routes: dict[str, tuple[str, ...]] = {}
        topics: set[str] | None = set()
        for u in units:
            for addr, names in self._routes(u, children).items():
                routes[addr] = tuple(dict.fromkeys((*routes.get(addr, ()), *names)))
            specs = [s for name in u.sources for s in self.specs[name]]
            if topics is not None and not any(s.anonymous for s in specs):
                topics |= {"0x" + s.topic0.hex() for s in specs}
            else:
                topics = None
        addresses = None if len(routes) > MAX_FILTER_ADDRESSES else sorted(routes)
        return Filter(addresses, sorted(topics) if topics else None, routes)

    def _routes(self, unit: Unit, children: Children) -> dict[str, tuple[str, ...]]:
        routes: dict[str, tuple[str, ...]] = {}
        if unit.factory is None:
            wanted = set(unit.sources)
            for addr, names in self.static_addresses.items():
                mine = tuple(n for n in names if n in wanted)
                if mine:
                    routes[addr] = mine
            return routes
        for name in unit.sources:
            for addr, block in children.get(name, {}).items():
                if block <= unit.range.end:
                    routes[addr] = (*routes.get(addr, ()), name)
        return routes

    def discover(self, result: DecodeResult) -> list[Child]:
        """The children announced by the factory events among decoded rows."""
        found: list[Child] = []
        for d in self.discoveries:
            for row in result.rows.get(d.table, ()):
                found.append(Child(d.child, row[d.column], d.factory, row[1], row[5], row[3]))
        return found


def build_catalog(chain: ChainConfig) -> Catalog:
    """Specs, sources and discovery rules of a chain file (ABI problems raise AbiError)."""
    specs: dict[str, list[EventSpec]] = {}
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
        specs[c.name] = event_specs(c.name, list(c.abi), selected, source=c.abi_path)
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
    static: dict[str, tuple[str, ...]] = {}
    for c in chain.contracts:
        for a in c.addresses:
            static[a] = (*static.get(a, ()), c.name)
    sources = tuple(
        Source(c.name, c.start_block, c.factory.contract if c.factory else None)
        for c in chain.contracts
    )
    return Catalog(chain, specs, sources, tuple(discoveries), static)
