"""One chain's configuration turned into what the loop needs, and the work on one unit:
fetch -> check -> decode -> discover children. Writing is the sink's job.

Invariant for factory children: a child unit over ``[a, b]`` runs only once the factory's own
source is done through ``b``, so every child created up to ``b`` is known when it is fetched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from indexer import faults, metrics
from indexer.abi import EventSpec, event_specs
from indexer.config import ChainConfig, ContractConfig
from indexer.decode import Decoder, DecodeResult
from indexer.naming import FIXED_COLUMNS
from indexer.plan import Source, Unit
from indexer.rpc.client import RpcClient
from indexer.sink.postgres import Child, EventTable
from indexer.types import BlockHeader, RawLog

log = logging.getLogger(__name__)

# Past this many addresses, eth_getLogs filters by topic only and addresses are matched here:
# providers refuse or slow down on long address lists.
MAX_FILTER_ADDRESSES = 1000


@dataclass(frozen=True, slots=True)
class Discovery:
    """How a factory event announces a child: rows of ``table`` hold the child's address in
    column ``column``."""

    factory: str
    child: str
    table: str
    column: int


@dataclass(slots=True)
class UnitResult:
    unit: Unit
    rows: dict[str, list[tuple]]
    children: list[Child]
    logs: int
    failures: int
    fetch_seconds: float = 0.0
    decode_seconds: float = 0.0
    # Canonical headers the logs were checked against: every block holding a log, and the last
    # block of the unit (none when nothing was fetched).
    headers: Mapping[int, BlockHeader] = field(default_factory=dict)


@dataclass(slots=True)
class ChainPipeline:
    """Everything derived from one chain file, plus the addresses of discovered children."""

    chain: ChainConfig
    specs: dict[str, list[EventSpec]]
    sources: list[Source]
    discoveries: list[Discovery]
    static_addresses: dict[str, tuple[str, ...]]  # lower-case address -> contract names
    children: dict[str, dict[str, int]] = field(default_factory=dict)  # contract -> addr -> block
    decoder: Decoder = field(init=False)

    def __post_init__(self) -> None:
        self.decoder = Decoder(self.chain.chain_id, self.specs)

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

    def contract(self, name: str) -> ContractConfig:
        return next(c for c in self.chain.contracts if c.name == name)

    # -- fetching one unit ---------------------------------------------------------------------

    def filter_for(self, unit: Unit) -> tuple[list[str] | None, list[str] | None, dict[str, tuple[str, ...]]]:
        """Addresses and topic0s to ask for over ``unit``, and the address -> contracts map the
        decoder routes by. ``None`` means no filter on that field."""
        contract_of: dict[str, tuple[str, ...]] = {}
        if unit.factory is None:
            wanted = set(unit.sources)
            for addr, names in self.static_addresses.items():
                mine = tuple(n for n in names if n in wanted)
                if mine:
                    contract_of[addr] = mine
        else:
            for name in unit.sources:
                for addr, block in self.children.get(name, {}).items():
                    if block <= unit.range.end:
                        contract_of[addr] = (*contract_of.get(addr, ()), name)
        specs = [s for name in unit.sources for s in self.specs[name]]
        topics: list[str] | None = sorted({"0x" + s.topic0.hex() for s in specs})
        if any(s.anonymous for s in specs):
            topics = None
        addresses: list[str] | None = sorted(contract_of)
        if addresses is not None and len(addresses) > MAX_FILTER_ADDRESSES:
            addresses = None
        return addresses, topics, contract_of

    async def process(self, rpc: RpcClient, unit: Unit) -> UnitResult:
        result = await self.process_together(rpc, [unit])
        result.unit = unit
        return result

    async def process_together(self, rpc: RpcClient, units: Sequence[Unit],
                               tip: BlockHeader | None = None) -> UnitResult:
        """Fetch, check, decode and discover children over units of one same range (one for
        the backfill; the main sources and the children for the live tail's new blocks) with a
        single eth_getLogs; one result for all their sources. ``tip``: the header of the
        range's last block, when just read."""
        rng = units[0].range
        contract_of: dict[str, tuple[str, ...]] = {}
        topics: set[str] | None = set()
        unfiltered = False
        for u in units:
            addresses, unit_topics, routes = self.filter_for(u)
            if not contract_of:
                contract_of = routes
            else:
                for addr, names in routes.items():
                    contract_of[addr] = tuple(dict.fromkeys((*contract_of.get(addr, ()), *names)))
            topics = None if topics is None or unit_topics is None else topics | set(unit_topics)
            unfiltered = unfiltered or addresses is None
        unit = Unit(rng, tuple(sorted({s for u in units for s in u.sources})))
        if not contract_of:
            return UnitResult(unit, {}, [], 0, 0)
        addresses = None if unfiltered or len(contract_of) > MAX_FILTER_ADDRESSES \
            else sorted(contract_of)
        t0 = time.perf_counter()
        answer = await rpc.get_logs_checked(rng, addresses, sorted(topics) if topics else None,
                                            tip=tip)
        logs = answer.logs
        children = tuple(s for u in units if u.factory is not None for s in u.sources)
        if children:
            logs = self._after_creation(logs, Unit(rng, children))
        times = await block_times(rpc, logs, answer.headers)
        await faults.point("after_fetch")
        t1 = time.perf_counter()
        result = self.decoder.decode(logs, contract_of, times)
        found = self.discover(result)
        await faults.point("after_decode")
        if result.failures:
            report_failures(self.chain.name, result)
        return UnitResult(unit, result.rows, found, len(logs), len(result.failures), t1 - t0,
                          time.perf_counter() - t1, answer.headers)

    def _after_creation(self, logs: list[RawLog], unit: Unit) -> list[RawLog]:
        created: dict[str, int] = {}
        for name in unit.sources:
            for addr, block in self.children.get(name, {}).items():
                if unit.range.start <= block:
                    created[addr] = min(block, created.get(addr, block))
        if not created:
            return logs
        return [
            lg for lg in logs
            if int(lg["blockNumber"], 16) >= created.get(lg["address"].lower(), 0)
        ]

    def discover(self, result: DecodeResult) -> list[Child]:
        found: list[Child] = []
        for d in self.discoveries:
            for row in result.rows.get(d.table, ()):
                found.append(Child(d.child, row[d.column], d.factory, row[1], row[5], row[3]))
        return found

    def remember(self, children: Sequence[Child]) -> None:
        for c in children:
            known = self.children.setdefault(c.contract, {})
            addr = "0x" + c.address.hex()
            known[addr] = min(c.block_number, known.get(addr, c.block_number))


async def block_times(
    rpc: RpcClient, logs: Sequence[RawLog], headers: Mapping[int, BlockHeader] | None = None
) -> dict[int, datetime]:
    """Block number -> block time for every block holding one of ``logs``: from the logs'
    ``blockTimestamp`` when the node sends it, else from ``headers`` (the checked headers that
    came with the logs), else from headers fetched here."""
    times: dict[int, datetime] = {}
    missing: set[int] = set()
    known = headers or {}
    last = None
    for lg in logs:
        bn = lg["blockNumber"]
        if bn == last:
            continue
        last = bn
        n = int(bn, 16)
        if n in times:
            continue
        ts = lg.get("blockTimestamp")
        if ts is not None:
            times[n] = datetime.fromtimestamp(int(ts, 16), UTC)
        elif n in known:
            times[n] = datetime.fromtimestamp(known[n].timestamp, UTC)
        else:
            missing.add(n)
    if missing:
        fetched = await rpc.get_headers(sorted(missing))
        for n, h in fetched.items():
            times[n] = datetime.fromtimestamp(h.timestamp, UTC)
    return times


_reported: dict[str, int] = {}


def report_failures(chain: str, result: DecodeResult) -> None:
    """Count every failure; log the first few of each table, then one line per 1000."""
    for f in result.failures:
        metrics.DECODE_FAILURES.labels(chain=chain, table=f.table).inc()
        n = _reported.get(f.table, 0) + 1
        _reported[f.table] = n
        if n <= 5 or n % 1000 == 0:
            log.warning(
                "%s: log %s:%s (tx %s) does not decode as %s: %s (%d such logs so far)",
                chain, f.block_number, f.log_index, f.tx_hash, f.table, f.reason, n,
            )


def build_pipeline(chain: ChainConfig) -> ChainPipeline:
    """Pure: specs, sources and discovery rules of a chain file."""
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
    sources = [
        Source(c.name, c.start_block, c.factory.contract if c.factory else None)
        for c in chain.contracts
    ]
    return ChainPipeline(chain, specs, sources, discoveries, static)

