"""The chain's head as last seen, whoever asked for it (the backfill's polls, the live tail's),
and the lag in seconds: the head block's time minus the watermark block's."""

from __future__ import annotations

import logging
from collections.abc import Callable

from indexer import metrics
from indexer.chain.progress import Progress
from indexer.chain.source import ChainSource
from indexer.clock import Clock
from indexer.retry import TRANSIENT
from indexer.types import BlockHeader

log = logging.getLogger(__name__)

WATCH_EVERY = 1.0  # seconds between looks of the watch when nobody else asked for the head


class HeadWatch:
    def __init__(self, source: ChainSource, progress: Progress, clock: Clock) -> None:
        self.source = source
        self.progress = progress
        self.clock = clock
        self.time: int | None = None  # timestamp of the head block
        self.polled_at = 0.0  # monotonic time of the last look at the head
        self.lag_seconds: int | None = None

    @property
    def number(self) -> int:
        return self.progress.head

    async def poll(self) -> int:
        """Ask for the latest block; the head number (the last one known if the node cannot
        name its head)."""
        latest = await self.source.get_header("latest")
        self.polled_at = self.clock.monotonic()
        if latest is not None:
            self.seen(latest)
        return self.progress.head

    def seen(self, head: BlockHeader) -> None:
        """``head`` was just read from the node."""
        self.time = head.timestamp
        self.polled_at = self.clock.monotonic()
        self.progress.saw_head(head.number)
        metrics.HEAD_AGE_SECONDS.labels(chain=self.progress.chain).set(
            max(0.0, self.clock.time() - head.timestamp))

    async def watch(self, indexed: Callable[[], int]) -> None:
        """Keep head, head age and lag in seconds current while the loops work: ask for the
        head only when nobody did for a second, and for the watermark block's time when the
        watermark moved. With nothing indexed yet (watermark -1) the lag is measured from
        block 0."""
        mark_time: tuple[int, int] | None = None  # (block, timestamp) of the watermark
        while True:
            try:
                if self.clock.monotonic() - self.polled_at >= WATCH_EVERY:
                    await self.poll()
                mark = max(0, indexed())
                if mark_time is None or mark_time[0] != mark:
                    header = await self.source.get_header(mark)
                    if header is not None:
                        mark_time = (mark, header.timestamp)
                if mark_time is not None and self.time is not None:
                    self.lag_seconds = max(0, self.time - mark_time[1])
                    metrics.LAG_SECONDS.labels(chain=self.progress.chain).set(self.lag_seconds)
            except TRANSIENT as e:  # the loops that need the head retry on their own
                log.debug("%s: head watch: %s", self.progress.chain, e)
            await self.clock.sleep(WATCH_EVERY)
