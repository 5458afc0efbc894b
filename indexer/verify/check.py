"""One unit checked: its logs fetched and decoded again (through the chain source, checked
as every answer is), and compared with the rows stored for the same sources and blocks.

With a ``Prover`` the chain's logs are not the eth_getLogs answer but the logs of the unit's
blocks proven against their receiptsRoot and canonical hash (``verify.prover``), selected by the
same filter and decoded the same way. A block that cannot be proven is a failure of its own;
its rows are not compared (there is nothing proven to compare them with).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from indexer.chain.catalog import Catalog, Children
from indexer.chain.fetch import Fetched, Fetcher
from indexer.plan import Unit
from indexer.sink.database import Database
from indexer.sink.rows import stored_rows
from indexer.verify.proof import ProofFailure
from indexer.verify.prover import ProvenLogs, Prover
from indexer.verify.rows import Difference, compare


@dataclass(frozen=True, slots=True)
class UnitCheck:
    unit: Unit
    differences: list[Difference] = field(default_factory=list)
    rows: int = 0  # rows compared (on the chain)
    failures: list[ProofFailure] = field(default_factory=list)  # blocks not proven
    proven_blocks: int = 0
    proven_receipts: int = 0

    @property
    def equal(self) -> bool:
        return not self.differences and not self.failures


@dataclass(frozen=True, slots=True)
class Chain:
    """A unit's rows on the chain, and with a proof, what was proven."""

    fetched: Fetched
    proven: ProvenLogs | None = None


async def chain_rows(catalog: Catalog, fetcher: Fetcher, unit: Unit, children: Children,
                     proof: Prover | None = None) -> Chain:
    """The unit's rows on the chain: from eth_getLogs, or from its proven blocks."""
    if proof is None:
        return Chain(await fetcher.unit(unit, children))
    flt = catalog.filter_for([unit], children)
    proven = await proof.logs(unit.range, flt.addresses, flt.topics) if flt.routes \
        else ProvenLogs()
    return Chain(await fetcher.decode_logs([unit], children, proven.logs), proven)


async def check_unit(catalog: Catalog, fetcher: Fetcher, db: Database, unit: Unit,
                     children: Children, proof: Prover | None = None) -> UnitCheck:
    got = await chain_rows(catalog, fetcher, unit, children, proof)
    failed = got.proven.failed if got.proven is not None else frozenset()
    scope = catalog.scope(unit, children)
    columns, types = catalog.columns, catalog.types
    differences: list[Difference] = []
    rows = 0
    for table, addresses in sorted(scope.items()):
        chain = got.fetched.rows.get(table, [])
        rows += len(chain)
        stored = await stored_rows(db, catalog.chain.chain_id, table, columns[table],
                                   unit.range, addresses) if addresses else []
        if failed:
            stored = [r for r in stored if r[1] not in failed]
        differences += compare(table, types[table], chain, stored)
    if got.proven is None:
        return UnitCheck(unit, differences, rows)
    p = got.proven
    return UnitCheck(unit, differences, rows, sorted(p.failures), p.blocks, p.receipts)
