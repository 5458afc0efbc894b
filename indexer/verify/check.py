"""One unit checked: its logs fetched and decoded again (through the chain source, checked
as every answer is), and compared with the rows stored for the same sources and blocks."""

from __future__ import annotations

from dataclasses import dataclass, field

from indexer.chain.catalog import Catalog, Children
from indexer.chain.fetch import Fetcher
from indexer.plan import Unit
from indexer.sink.database import Database
from indexer.sink.rows import stored_rows
from indexer.verify.rows import Difference, compare


@dataclass(frozen=True, slots=True)
class UnitCheck:
    unit: Unit
    differences: list[Difference] = field(default_factory=list)
    rows: int = 0  # rows compared (on the chain)

    @property
    def equal(self) -> bool:
        return not self.differences


async def check_unit(catalog: Catalog, fetcher: Fetcher, db: Database, unit: Unit,
                     children: Children) -> UnitCheck:
    fetched = await fetcher.unit(unit, children)
    scope = catalog.scope(unit, children)
    columns, types = catalog.columns, catalog.types
    differences: list[Difference] = []
    rows = 0
    for table, addresses in sorted(scope.items()):
        chain = fetched.rows.get(table, [])
        rows += len(chain)
        stored = await stored_rows(db, catalog.chain.chain_id, table, columns[table],
                                   unit.range, addresses) if addresses else []
        differences += compare(table, types[table], chain, stored)
    return UnitCheck(unit, differences, rows)
