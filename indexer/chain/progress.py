"""The tallies of one chain's run (what the terminal view and the summary show) and the gauges
that follow them: head, safe head, watermark, lag in blocks, rows written, blocks indexed.

``Progress`` is their one owner; the backfill and the live tail report to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from indexer import metrics


@dataclass(slots=True)
class Progress:
    chain: str
    finality_depth: int = 0
    first: int = 0  # the first block the run had to do
    target: int = 0  # the block it indexes up to now
    head: int = 0
    indexed: int = -1  # the watermark
    blocks: int = 0
    events: int = 0
    failures: int = 0
    started: float = field(default_factory=time.monotonic)
    fetch_seconds: float = 0.0
    decode_seconds: float = 0.0
    write_seconds: float = 0.0
    tables: dict[str, int] = field(default_factory=dict)
    last_commit: float | None = None  # unix time
    on_change: Callable[[Progress], None] | None = field(default=None, repr=False)

    def saw_head(self, head: int) -> None:
        self.head = head
        labels = {"chain": self.chain}
        metrics.CHAIN_HEAD_BLOCK.labels(**labels).set(head)
        metrics.SAFE_BLOCK.labels(**labels).set(head - self.finality_depth)
        metrics.LAG_BLOCKS.labels(**labels).set(max(0, head - max(self.indexed, 0)))

    def set_indexed(self, mark: int) -> None:
        self.indexed = mark
        metrics.INDEXED_BLOCK.labels(chain=self.chain).set(mark)
        metrics.LAG_BLOCKS.labels(chain=self.chain).set(max(0, self.head - mark))

    def planned(self, target: int, first: int | None) -> None:
        """The run now indexes up to ``target``; ``first``: the lowest block left to do."""
        self.target = target
        if not self.blocks and first is not None:
            self.first = first

    def wrote(self, rows: Mapping[str, Sequence[tuple]]) -> None:
        for table, recs in rows.items():
            if recs:
                self.events += len(recs)
                self.tables[table] = self.tables.get(table, 0) + len(recs)
                metrics.EVENTS_WRITTEN.labels(chain=self.chain, table=table).inc(len(recs))

    def covered(self, blocks: int) -> None:
        """``blocks`` more blocks are indexed for every source that covers them."""
        self.blocks += blocks
        metrics.BLOCKS_INDEXED.labels(chain=self.chain).inc(blocks)

    def timed(self, fetch: float, decode: float, write: float) -> None:
        self.fetch_seconds += fetch
        self.decode_seconds += decode
        self.write_seconds += write
        for stage, secs in (("fetch", fetch), ("decode", decode), ("write", write)):
            metrics.STAGE_SECONDS.labels(chain=self.chain, stage=stage).inc(secs)

    def committed(self, now: float) -> None:
        """A commit of this process ended (unix time ``now``)."""
        self.last_commit = now
        metrics.LAST_COMMIT_TIMESTAMP.labels(chain=self.chain).set(now)
        if self.on_change is not None:
            self.on_change(self)
