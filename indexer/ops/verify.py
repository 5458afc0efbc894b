"""``indexer verify``: prove the tables equal the chain. Every indexed block of the chain's
sources (one contract's, with ``--contract``) in the range is fetched again, from another
endpoint than the first when the chain has several, decoded with the same specs and compared
with the stored rows, unit by unit (``verify.check``). Each difference is reported (table,
block, log index, missing / extra / changed). With ``--proof`` the chain's logs are those of
the blocks' receipts, proven against each block's receiptsRoot and canonical hash
(``verify.prover``) instead of the eth_getLogs answer; a block that cannot be proven is
reported (block, reason). With ``--repair`` the differing blocks are fetched again (proven
again, with ``--proof``) and their rows replaced exactly once (``sink.replace``, refused after
a reorg repair), then checked again.

Exit 0 when everything checked is equal (after a repair, if asked) and, with ``--proof``, every
block proven; 1 when a difference was found and not repaired or a block was not proven; 2 for
bad input.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from indexer.chain.catalog import Catalog
from indexer.chain.fetch import Fetcher
from indexer.chain.state import ChainState
from indexer.config import ChainConfig, ConfigError
from indexer.ops.attach import attach
from indexer.plan import Unit, next_size, pieces, redo
from indexer.rpc.client import RpcClient
from indexer.sink.database import Database
from indexer.sink.postgres import PostgresSink
from indexer.sink.tables import ensure_event_tables
from indexer.types import BlockRange
from indexer.verify.check import UnitCheck, check_unit
from indexer.verify.proof import ProofFailure
from indexer.verify.prover import Prover
from indexer.verify.repair import repair
from indexer.verify.rows import Difference, blocks_of

CONCURRENCY = 4
TARGET_LOGS = 10_000  # logs per unit the size aims at, as the backfill's
FIRST_SIZE = 16
MAX_SIZE = 100_000


@dataclass(slots=True)
class Report:
    chain: str
    first: int
    last: int
    blocks: int = 0  # blocks checked
    rows: int = 0  # rows of the chain compared
    differences: list[Difference] = field(default_factory=list)
    repaired: list[Difference] = field(default_factory=list)  # found, then set right
    proof: bool = False
    proof_failures: list[ProofFailure] = field(default_factory=list)  # blocks not proven
    proven_blocks: int = 0  # headers hashed and found canonical
    proven_receipts: int = 0  # receipts that rebuilt their block's receiptsRoot

    @property
    def equal(self) -> bool:
        return not self.differences and not self.proof_failures

    @property
    def unproven(self) -> list[ProofFailure]:
        """The blocks not proven, once each (units of one range share their blocks)."""
        return sorted(set(self.proof_failures))

    def add(self, c: UnitCheck) -> None:
        self.blocks += len(c.unit.range)
        self.rows += c.rows
        self.differences += c.differences
        self.proof_failures += c.failures
        self.proven_blocks += c.proven_blocks
        self.proven_receipts += c.proven_receipts

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "chain": self.chain, "from_block": self.first, "to_block": self.last,
            "blocks_checked": self.blocks, "rows_checked": self.rows, "equal": self.equal,
            "differences": [_diff_json(d) for d in self.differences],
            "repaired": [_diff_json(d) for d in self.repaired],
            "proof": self.proof,
        }
        if self.proof:
            doc.update({"blocks_proven": self.proven_blocks,
                        "receipts_proven": self.proven_receipts,
                        "proof_failures": [{"block": f.block, "reason": f.reason}
                                           for f in self.unproven]})
        return doc


def _diff_json(d: Difference) -> dict[str, Any]:
    return {"table": d.table, "block": d.block, "log_index": d.log_index, "kind": d.kind}


class Verifying:
    """One verification: its catalogue, what is done, and the fetch path."""

    def __init__(self, db: Database, catalog: Catalog, rpc: RpcClient, keys: list[str],
                 proof: bool = False) -> None:
        self.db = db
        self.catalog = catalog
        self.rpc = rpc
        chain = catalog.chain
        self.sink = PostgresSink(db, chain.chain_id, chain.partition_blocks, catalog.columns)
        self.state = ChainState([s for s in catalog.sources if s.name in set(keys)])
        self.fetcher = Fetcher(catalog, rpc)
        self.prover = Prover(rpc, chain.name) if proof else None

    async def plan(self, first: int | None, last: int | None) -> tuple[BlockRange, list[Unit]]:
        """The indexed blocks of the range (at most to the safe head), as units."""
        await self.state.reload(self.sink)
        chain = self.catalog.chain
        head = await self.rpc.get_header("latest")
        safe = (head.number if head is not None else 0) - chain.finality_depth
        keys = [s.name for s in self.state.sources]
        lo = first if first is not None else min(self.catalog.keyed[k].start_block for k in keys)
        top = max((r.end for k in keys for r in self.state.done.get(k, ())), default=lo - 1)
        hi = min(last if last is not None else top, safe)
        if hi < lo:
            return BlockRange(lo, lo), []
        rng = BlockRange(lo, hi)
        units = [Unit(p, u.sources, u.factory) for u in redo(self.state.sources, self.state.done,
                                                               rng)
                 for p in pieces(u.range, chain.partition_blocks)]
        return rng, units

    async def check(self, units: list[Unit], report: Report, show: Progress) -> list[UnitCheck]:
        """Check every unit, ``CONCURRENCY`` at once, cut to sizes that follow the density."""
        size = FIRST_SIZE
        queue = list(units)
        found: list[UnitCheck] = []
        running: set[asyncio.Task[UnitCheck]] = set()
        while queue or running:
            while queue and len(running) < (1 if not found and running else CONCURRENCY):
                unit = queue.pop(0)
                if len(unit.range) > size:
                    head = BlockRange(unit.range.start, unit.range.start + size - 1)
                    queue.insert(0, Unit(BlockRange(head.end + 1, unit.range.end),
                                         unit.sources, unit.factory))
                    unit = Unit(head, unit.sources, unit.factory)
                running.add(asyncio.create_task(check_unit(
                    self.catalog, self.fetcher, self.db, unit, self.state.children,
                    self.prover)))
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                c = task.result()
                found.append(c)
                report.add(c)
                size = next_size(size, c.rows, len(c.unit.range), target_logs=TARGET_LOGS,
                                 hi=MAX_SIZE)
                show.update(report)
        return found

    async def repair(self, checks: list[UnitCheck]) -> list[UnitCheck]:
        """Fetch the differing blocks again and replace their rows; their checks after. With a
        proof, a block that is not proven this time is not replaced: its check says why."""
        return [await repair(self.db, self.catalog, self.fetcher, self.state, self.sink, c,
                             self.prover) for c in checks]


class Progress:
    """A live line on a terminal (blocks/s, ETA), a line every 10 s otherwise."""

    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self.started = time.monotonic()
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def update(self, r: Report, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        rate = r.blocks / max(1e-9, now - self.started)
        left = max(0, self.total - r.blocks)
        eta = left / rate if rate > 0 else float("inf")
        eta_text = "--:--" if eta == float("inf") else f"{int(eta) // 60}:{int(eta) % 60:02d}"
        line = (f"verify {r.chain}: {100 * r.blocks / self.total:5.1f}% blocks "
                f"{r.blocks:,}/{self.total:,}  {rate:,.0f} blocks/s  {r.rows:,} rows  "
                f"{len(r.differences)} differences"
                + (f"  {len(r.proof_failures)} not proven" if r.proof else "")
                + f"  ETA {eta_text}")
        sys.stderr.write(("\r\x1b[2K" + line) if self.tty else line + "\n")
        if final and self.tty:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def verify(db: Database, chain: ChainConfig, rpc: RpcClient, contract: str | None,
                 first: int | None, last: int | None, repair: bool,
                 proof: bool = False) -> Report:
    attached = await attach(db, chain)
    catalog = attached.catalog
    keys = catalog.keys_of(contract) if contract is not None else list(catalog.keyed)
    if not keys:
        raise ConfigError(f"{chain.source}: there is no contract {contract} in the chain file")
    await ensure_event_tables(db, catalog.tables)
    v = Verifying(db, catalog, rpc, keys, proof)
    rng, units = await v.plan(first, last)
    report = Report(chain.name, rng.start, rng.end, proof=proof)
    show = Progress(sum(len(u.range) for u in units))
    checks = await v.check(units, report, show)
    show.update(report, final=True)
    if repair and report.differences:
        found = report.differences
        after = await v.repair([c for c in checks if c.differences])
        report.differences = [d for c in after for d in c.differences]
        report.proof_failures = sorted(set(report.proof_failures).union(
            f for c in after for f in c.failures))
        report.repaired = [d for d in found if d not in set(report.differences)]
    return report


def print_report(r: Report) -> None:
    print(f"{r.chain}: checked {r.blocks:,} indexed blocks of {r.first:,}-{r.last:,}, "
          f"{r.rows:,} rows of the chain")
    if r.proof:
        print(f"proven: {r.proven_blocks:,} block headers (hashed, canonical), "
              f"{r.proven_receipts:,} receipts against their block's receiptsRoot")
    if r.repaired:
        print(f"repaired {len(r.repaired)} rows in {len(blocks_of(r.repaired))} blocks "
              f"(fetched again, replaced, checked again)")
    if r.equal:
        print("equal: every table matches the chain" + (" (proven)" if r.proof else ""))
        return
    _print_unproven(r.unproven)
    by_table: dict[str, list[Difference]] = {}
    for d in r.differences:
        by_table.setdefault(d.table, []).append(d)
    for table, diffs in sorted(by_table.items()):
        kinds = {k: sum(1 for d in diffs if d.kind == k) for k in ("missing", "extra", "changed")}
        blocks = blocks_of(diffs)
        print(f"DIFFERENT {table}: {kinds['missing']} missing, {kinds['extra']} extra, "
              f"{kinds['changed']} changed rows in {len(blocks)} blocks")
        for d in diffs[:50]:
            print(f"  block {d.block} log {d.log_index}: {d.kind}")
        if len(diffs) > 50:
            print(f"  ... and {len(diffs) - 50} more (--json lists them all)")


def _print_unproven(failures: list[ProofFailure]) -> None:
    if not failures:
        return
    print(f"NOT PROVEN: {len(failures)} blocks (their rows were not compared)")
    for f in sorted(failures)[:50]:
        print(f"  block {f.block}: {f.reason}")
    if len(failures) > 50:
        print(f"  ... and {len(failures) - 50} more (--json lists them all)")


async def verify_command(db: Database, chain: ChainConfig, rpc: RpcClient, contract: str | None,
                         first: int | None, last: int | None, repair: bool,
                         as_json: bool, proof: bool = False) -> int:
    report = await verify(db, chain, rpc, contract, first, last, repair, proof)
    if as_json:
        sys.stdout.write(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2).decode()
                         + "\n")
    else:
        print_report(report)
    return 0 if report.equal else 1
