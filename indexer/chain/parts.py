"""The pieces of one chain that the backfill and the live tail share, built once per chain by
the composer (``indexer.ops.chain``) and handed to both."""

from __future__ import annotations

from dataclasses import dataclass

from indexer.chain.catalog import Catalog
from indexer.chain.fetch import Fetcher
from indexer.chain.head import HeadWatch
from indexer.chain.progress import Progress
from indexer.chain.source import ChainSource
from indexer.chain.state import ChainState
from indexer.clock import Clock
from indexer.config import ChainConfig
from indexer.sink.api import Sink


@dataclass(frozen=True, slots=True)
class ChainParts:
    catalog: Catalog  # what is indexed (frozen)
    state: ChainState  # what is done (its one owner)
    source: ChainSource  # the node
    sink: Sink  # the database, bound to this chain
    fetcher: Fetcher  # fetch and decode units through ``source``
    head: HeadWatch
    progress: Progress
    clock: Clock
    db_wait: float = 300.0  # seconds Postgres may stay unreachable before the run gives up

    @property
    def chain(self) -> ChainConfig:
        return self.catalog.chain

    @property
    def name(self) -> str:
        return self.catalog.chain.name

    def watermark_moved(self) -> None:
        """The state changed: the watermark and its gauges follow."""
        self.progress.set_indexed(self.state.watermark())
