"""The pieces of one chain built on the fakes, as the composer builds them on the real ones."""

from __future__ import annotations

from indexer.chain.catalog import build_catalog
from indexer.chain.fetch import Fetcher
from indexer.chain.head import HeadWatch
from indexer.chain.parts import ChainParts
from indexer.chain.progress import Progress
from indexer.chain.state import ChainState
from indexer.config import ChainConfig
from tests.fakes.chain import FakeChain, chain_config
from tests.fakes.clock import FakeClock
from tests.fakes.sink import FakeSink


def fake_parts(chain: FakeChain, sink: FakeSink | None = None, clock: FakeClock | None = None,
               config: ChainConfig | None = None, db_wait: float = 300.0) -> ChainParts:
    catalog = build_catalog(config or chain_config())
    clock = clock or FakeClock()
    progress = Progress(catalog.chain.name, catalog.chain.finality_depth)
    return ChainParts(catalog=catalog, state=ChainState(catalog.sources), source=chain,
                      sink=sink or FakeSink(), fetcher=Fetcher(catalog, chain),
                      head=HeadWatch(chain, progress, clock), progress=progress, clock=clock,
                      db_wait=db_wait)
