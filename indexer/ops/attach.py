"""A chain file attached to the database: its catalogue with the table names already pinned,
its sources registered (a source whose rows were decoded another way is refused), and range
records written per contract name (before sources were recorded) upgraded.

Every command that reads or writes a chain's rows starts here: ``run`` (and each reload of the
chain file), ``status``, ``reindex``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from indexer.chain.catalog import Catalog, build_catalog
from indexer.config import ChainConfig, ConfigError
from indexer.sink import sources
from indexer.sink.database import Database
from indexer.sink.sources import LayoutChange

log = logging.getLogger(__name__)


class SourceConflict(ConfigError):
    """The chain file decodes an event otherwise than the rows already written (exit 2)."""


@dataclass(frozen=True, slots=True)
class Attached:
    catalog: Catalog
    ids: dict[str, int]  # source key -> id in indexer.sources


async def attach(db: Database, chain: ChainConfig) -> Attached:
    catalog = build_catalog(chain, await sources.pinned_tables(db))
    for spec, why in catalog.renamed:
        log.warning("%s: %s.%s is a new event (its topic0 0x%s is new): its rows go to table "
                    "%s, as %s", chain.name, spec.contract, spec.signature, spec.topic0.hex(),
                    spec.table, why)
    ids, changes = await sources.register(db, chain.chain_id, list(catalog.keyed.values()))
    if changes:
        raise SourceConflict(conflict_message(chain, changes))
    by_contract = {c.name: [ids[k] for k in catalog.keys_of(c.name)] for c in chain.contracts}
    for name, n in (await sources.upgrade_legacy(db, chain.chain_id, by_contract)).items():
        if n:
            c = next(c for c in chain.contracts if c.name == name)
            log.warning("%s: %d range records of contract %s, written before sources were "
                        "recorded, now count for its sources in the chain file as it is at this "
                        "start: %s, events %s", chain.name, n, name,
                        f"{len(c.addresses)} addresses" if c.addresses else
                        f"the children of {c.factory.contract if c.factory else '?'}",
                        ", ".join(s.name for s in catalog.specs[name]))
    return Attached(catalog, ids)


def conflict_message(chain: ChainConfig, changes: list[LayoutChange]) -> str:
    lines = []
    seen: set[tuple[str, str]] = set()
    for c in changes:
        if (c.contract, c.event) in seen:
            continue
        seen.add((c.contract, c.event))
        event = c.event.split("(", 1)[0]
        lines.append(
            f"{chain.source}: contract {c.contract}, event {c.event}: the chain file decodes it "
            f"as {c.wanted!r} but its rows were written as {c.stored!r}; rows decoded one way "
            f"cannot be mixed with rows decoded the other: restore the ABI, or delete them and "
            f"index the event again with `indexer prune --chain {chain.name} --contract "
            f"{c.contract} --event {event} --yes`")
    return "\n".join(lines)
