"""``indexer prune``: delete the rows of a contract (of one of its events, with ``--event``) on
one chain and forget those sources, so that indexing it again starts from its start block.
Removing a contract from the chain file only stops indexing it: its rows stay (they are still
true) until pruned."""

from __future__ import annotations

import sys

from indexer.config import ChainConfig
from indexer.sink.database import Database
from indexer.sink.sources import prune


async def prune_command(chain: ChainConfig, db: Database, contract: str,
                        event: str | None) -> int:
    result = await prune(db, chain.chain_id, contract, event)
    what = f"{contract}" + (f" {event}" if event else "")
    if not result.sources:
        print(f"error: nothing recorded for {what} on chain {chain.name}: no source of it was "
              "ever indexed (names are as in the chain file: contract name, event name or "
              "signature)", file=sys.stderr)
        return 1
    for table, n in sorted(result.rows.items()):
        print(f"deleted {n:,} rows of {table}")
    for table in result.dropped:
        print(f"dropped table {table} (no chain has rows in it any more)")
    print(f"forgot {len(result.sources)} sources of {what} on chain {chain.name}")
    still = [c for c in chain.contracts if c.name == contract]
    if still:
        print(f"note: {contract} is still in {chain.source}: the next `indexer run` indexes "
              f"it again from block {still[0].start_block:,}", file=sys.stderr)
    return 0
