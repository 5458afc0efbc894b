"""Progress of long work: a live line per chain on a terminal, plain log lines otherwise, and
the final summary."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from indexer.chain.progress import Progress


def _eta(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf") or seconds < 0:
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def line(p: Progress, now: float | None = None) -> str:
    elapsed = max(1e-9, (now if now is not None else time.monotonic()) - p.started)
    span = max(1, p.target - p.first + 1)
    done_blocks = min(p.blocks, span)
    bps = p.blocks / elapsed
    eps = p.events / elapsed
    left = max(0, span - done_blocks)
    eta = left / bps if bps > 0 else float("inf")
    pct = 100.0 * done_blocks / span
    return (
        f"{p.chain}: {pct:5.1f}% blocks {done_blocks:,}/{span:,}  {bps:,.0f} blocks/s  "
        f"{eps:,.0f} events/s  events {p.events:,}  indexed {p.indexed:,}  head {p.head:,}  "
        f"ETA {_eta(eta)}"
    )


class Reporter:
    """Call ``update`` as often as you like; it redraws at most ``interval`` seconds apart."""

    def __init__(self, stream: TextIO = sys.stderr, interval: float | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval if interval is not None else (0.5 if self.tty else 10.0)
        self.last = 0.0
        self.states: dict[str, Progress] = {}

    def update(self, p: Progress) -> None:
        self.states[p.chain] = p
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        self.draw()

    def draw(self) -> None:
        text = " | ".join(line(p) for p in self.states.values())
        if self.tty:
            self.stream.write("\r\x1b[2K" + text[: 400])
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self.states:
            self.draw()
            self.stream.write("\n")
            self.stream.flush()


def peak_rss_mb() -> int:
    """High-water resident memory of this process (VmHWM; ru_maxrss survives exec on Linux and
    would report the parent's)."""
    try:
        for row in open("/proc/self/status"):
            if row.startswith("VmHWM:"):
                return int(row.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def summary(results: Sequence[Progress], database: str, schema: str) -> str:
    out: list[str] = []
    for p in results:
        elapsed = max(1e-9, time.monotonic() - p.started)
        out.append(
            f"{p.chain}: indexed up to block {p.indexed:,} (head {p.head:,}); "
            f"{p.events:,} events in {elapsed:.1f}s ({p.events / elapsed:,.0f} events/s)"
        )
        busy = p.fetch_seconds + p.decode_seconds + p.write_seconds
        if busy > 0:
            out.append(
                f"  time by stage: fetch {p.fetch_seconds:.1f}s, decode {p.decode_seconds:.1f}s, "
                f"write {p.write_seconds:.1f}s (summed over concurrent units)"
            )
        if p.failures:
            out.append(f"  {p.failures:,} logs did not decode (see warnings above)")
        for table, n in sorted(p.tables.items()):
            out.append(f"  {schema}.{table}: +{n:,} rows")
    out.append(f"peak RSS {peak_rss_mb()} MB; data: {database}")
    return "\n".join(out)
