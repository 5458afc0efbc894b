"""The pieces of one chain that the backfill and the live tail share, built once per chain by
the composer (``indexer.ops.chain``) and handed to both."""

from __future__ import annotations

from indexer.chain.catalog import Catalog
from indexer.chain.fetch import Fetcher
from indexer.chain.head import HeadWatch
from indexer.chain.progress import Progress
from indexer.chain.source import ChainSource
from indexer.chain.state import ChainState
from indexer.clock import Clock
from indexer.config import ChainConfig
from indexer.sink.api import Sink


class ChainParts:
    """``catalog``: what is indexed, frozen; replaced as a whole when the chain file is
    reloaded (``retarget``), which the loops see at their next look. ``state``: what is done
    (its one owner). ``source``: the node. ``sink``: the database, bound to this chain.
    ``fetcher``: fetch and decode units through ``source``. ``db_wait``: seconds Postgres may
    stay unreachable before the run gives up."""

    __slots__ = ("_catalog", "clock", "db_wait", "fetcher", "head", "progress", "sink", "source",
                 "state")

    def __init__(self, catalog: Catalog, state: ChainState, source: ChainSource, sink: Sink,
                 fetcher: Fetcher, head: HeadWatch, progress: Progress, clock: Clock,
                 db_wait: float = 300.0) -> None:
        self._catalog = catalog
        self.state = state
        self.source = source
        self.sink = sink
        self.fetcher = fetcher
        self.head = head
        self.progress = progress
        self.clock = clock
        self.db_wait = db_wait

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def retarget(self, catalog: Catalog) -> None:
        """From now on, index what ``catalog`` says (what is done of each source stays)."""
        self._catalog = catalog
        self.fetcher.catalog = catalog
        self.state.retarget(catalog.sources)

    @property
    def chain(self) -> ChainConfig:
        return self._catalog.chain

    @property
    def name(self) -> str:
        return self._catalog.chain.name

    def watermark_moved(self) -> None:
        """The state changed: the watermark and its gauges follow."""
        self.progress.set_indexed(self.state.watermark())
