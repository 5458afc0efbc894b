"""Fetch and decode units: one checked eth_getLogs over a range for a set of units, block
times, decoding into COPY records, and the children the factory events announce. Nothing here
writes; the result is a value the caller commits.

Invariant for factory children: a child unit over ``[a, b]`` runs only once the factory's own
source is done through ``b``, so every child created up to ``b`` is in ``children`` when it is
fetched; a child's logs before the block that created it are dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from indexer import faults, metrics
from indexer.chain.catalog import Catalog, Children, Filter
from indexer.chain.source import ChainSource
from indexer.decode import DecodeResult
from indexer.plan import Unit
from indexer.sink.api import Child
from indexer.types import BlockHeader, RawLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Fetched:
    """The decoded rows of a unit, ready to commit."""

    unit: Unit
    rows: dict[str, list[tuple]]
    children: list[Child]  # discovered in these rows
    logs: int
    failures: int  # logs that did not decode (counted and logged)
    fetch_seconds: float = 0.0
    decode_seconds: float = 0.0
    # Canonical headers the logs were checked against: every block holding a log, and the last
    # block of the range (none when nothing was fetched).
    headers: Mapping[int, BlockHeader] = field(default_factory=dict)


class Fetcher:
    """The fetch path of one chain: ``catalog`` says what to ask ``source`` for."""

    def __init__(self, catalog: Catalog, source: ChainSource) -> None:
        self.catalog = catalog
        self.source = source
        self._failures: dict[str, int] = {}  # table -> logs that did not decode, so far

    async def unit(self, unit: Unit, children: Children) -> Fetched:
        """Fetch, check and decode one unit."""
        result = await self.together([unit], children)
        return Fetched(unit, result.rows, result.children, result.logs, result.failures,
                       result.fetch_seconds, result.decode_seconds, result.headers)

    async def together(self, units: Sequence[Unit], children: Children,
                       tip: BlockHeader | None = None) -> Fetched:
        """Units of one same range (one for the backfill; the main sources and the children
        for the live tail's new blocks) with a single eth_getLogs; one result for all their
        sources. ``tip``: the header of the range's last block, when just read."""
        rng = units[0].range
        flt = self.catalog.filter_for(units, children)
        if not flt.routes:
            return Fetched(_merged(units), {}, [], 0, 0)
        t0 = time.perf_counter()
        answer = await self.source.get_logs_checked(rng, flt.addresses, flt.topics, tip=tip)
        return await self._decoded(units, children, flt, answer.logs, answer.headers, t0)

    async def decode_logs(self, units: Sequence[Unit], children: Children,
                          logs: list[RawLog]) -> Fetched:
        """The rows of units of one same range from logs obtained otherwise than by
        ``together`` (proven against their blocks' receipts, say): every log of the range that
        the units' eth_getLogs filter selects, in (blockNumber, logIndex) order. They are
        routed, cut to the children's creation, timed and decoded as fetched ones are."""
        flt = self.catalog.filter_for(units, children)
        if not flt.routes:
            return Fetched(_merged(units), {}, [], 0, 0)
        return await self._decoded(units, children, flt, logs, {}, time.perf_counter())

    async def _decoded(self, units: Sequence[Unit], children: Children, flt: Filter,
                       logs: list[RawLog], headers: Mapping[int, BlockHeader],
                       t0: float) -> Fetched:
        rng = units[0].range
        child_sources = tuple(s for u in units if u.factory is not None for s in u.sources)
        if child_sources:
            logs = _after_creation(logs, Unit(rng, child_sources), children)
        times = await self._block_times(logs, headers)
        await faults.point("after_fetch")
        t1 = time.perf_counter()
        result = self.catalog.decoder.decode(logs, flt.routes, times, flt.only)
        found = self.catalog.discover(result)
        await faults.point("after_decode")
        if result.failures:
            self._report(result)
        return Fetched(_merged(units), result.rows, found, len(logs), len(result.failures),
                       t1 - t0, time.perf_counter() - t1, headers)

    async def _block_times(self, logs: Sequence[RawLog],
                           headers: Mapping[int, BlockHeader]) -> dict[int, datetime]:
        """Block number -> block time for every block holding one of ``logs``: from
        ``headers`` (the canonical headers the logs' blockHash was checked against), else from
        the logs' ``blockTimestamp`` (a field the node sends unchecked), else from headers
        fetched here."""
        times: dict[int, datetime] = {}
        missing: set[int] = set()
        last = None
        for lg in logs:
            bn = lg["blockNumber"]
            if bn == last:
                continue
            last = bn
            n = int(bn, 16)
            if n in times:
                continue
            if n in headers:
                times[n] = datetime.fromtimestamp(headers[n].timestamp, UTC)
            elif (ts := _quantity(lg.get("blockTimestamp"))) is not None:
                times[n] = datetime.fromtimestamp(ts, UTC)
            else:
                missing.add(n)
        if missing:
            fetched = await self.source.get_headers(sorted(missing))
            for n, h in fetched.items():
                times[n] = datetime.fromtimestamp(h.timestamp, UTC)
        return times

    def _report(self, result: DecodeResult) -> None:
        """Count every failure; log the first few of each table, then one line per 1000."""
        chain = self.catalog.chain.name
        for f in result.failures:
            metrics.DECODE_FAILURES.labels(chain=chain, table=f.table).inc()
            n = self._failures.get(f.table, 0) + 1
            self._failures[f.table] = n
            if n <= 5 or n % 1000 == 0:
                log.warning(
                    "%s: log %s:%s (tx %s) does not decode as %s: %s (%d such logs so far)",
                    chain, f.block_number, f.log_index, f.tx_hash, f.table, f.reason, n,
                )


def _quantity(value: object) -> int | None:
    """A hex quantity as an int; None when it is missing or not one."""
    if not isinstance(value, str) or not value.startswith("0x"):
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def _merged(units: Sequence[Unit]) -> Unit:
    """One unit over the units' range with all their sources."""
    return Unit(units[0].range, tuple(sorted({s for u in units for s in u.sources})))


def _after_creation(logs: list[RawLog], unit: Unit, children: Children) -> list[RawLog]:
    """``logs`` without those of children emitted before the block that created them."""
    created: dict[str, int] = {}
    for name in unit.sources:
        for addr, block in children.get(name, {}).items():
            if unit.range.start <= block:
                created[addr] = min(block, created.get(addr, block))
    if not created:
        return logs
    return [
        lg for lg in logs
        if int(lg["blockNumber"], 16) >= created.get(lg["address"].lower(), 0)
    ]
