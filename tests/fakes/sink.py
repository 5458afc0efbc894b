"""A database in memory behind the ``Sink`` seam, deciding a commit as the Postgres one does
(the live fence, the reorg epoch, overlapping records, stored block hashes, unique rows: all
checked before anything is written)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from indexer.plan import merge
from indexer.sink.api import (
    Batch,
    Fenced,
    RangeConflict,
    Repair,
    Snapshot,
    StaleBranch,
    Writer,
)
from indexer.types import BlockHeader, BlockRange


@dataclass
class Stored:
    header: BlockHeader
    live: bool
    checkpoint: bool


@dataclass
class FakeSink:
    epoch: int = 0
    live_fence: int = 0
    ranges: list[tuple[str, BlockRange, int | None, str]] = field(default_factory=list)
    rows: dict[str, dict[tuple[int, int], tuple]] = field(default_factory=dict)
    children: dict[str, dict[str, int]] = field(default_factory=dict)
    blocks: dict[int, Stored] = field(default_factory=dict)
    repairs: list[Repair] = field(default_factory=list)
    commits: int = 0
    genesis: bytes | None = None  # the hash of block 0 recorded for the chain
    fail_next: list[BaseException] = field(default_factory=list)  # raised by the next commits
    before_commit: Callable[[Batch], Awaitable[None]] | None = None  # may wait, or raise
    failing: dict[str, list[BaseException]] = field(default_factory=dict)  # method -> raised next

    def _fail(self, method: str) -> None:
        errors = self.failing.get(method)
        if errors:
            raise errors.pop(0)

    # -- Sink -------------------------------------------------------------------------------

    async def commit(self, batch: Batch, writer: Writer) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)
        if self.before_commit is not None:
            await self.before_commit(batch)
        self._check(batch, writer)
        self._write(batch, writer)

    def _check(self, batch: Batch, writer: Writer) -> None:
        rng = batch.range
        if writer.live_term is not None and self.live_fence > writer.live_term:
            raise Fenced(f"a newer live follower (fence {self.live_fence}) has written")
        if writer.epoch is not None and writer.epoch != self.epoch:
            raise StaleBranch(f"blocks {rng} were fetched before a reorg repair")
        for source, done, _, _ in self.ranges:
            if source in batch.sources and done.start <= rng.end and rng.start <= done.end:
                raise RangeConflict(f"{source} {done} already done; refusing {rng}")
        for h in batch.blocks:
            stored = self.blocks.get(h.number)
            if stored is not None and stored.header.hash != h.hash:
                raise StaleBranch(f"block {h.number} is stored with another hash", h.number)
        for table, recs in batch.rows.items():
            have = self.rows.get(table, {})
            if any((r[1], r[5]) in have for r in recs):
                raise RangeConflict(f"rows of {rng} already present in {table}")

    def _write(self, batch: Batch, writer: Writer) -> None:
        rng = batch.range
        if writer.live_term is not None:
            self.live_fence = writer.live_term
        for source in batch.sources:
            self.ranges.append((source, rng, writer.fence, writer.worker))
        for table, recs in batch.rows.items():
            have = self.rows.setdefault(table, {})
            for r in recs:
                have[(r[1], r[5])] = r
        for c in batch.children:
            self.children.setdefault(c.contract, {}).setdefault("0x" + c.address.hex(),
                                                                c.block_number)
        for h in batch.blocks:
            old = self.blocks.get(h.number)
            self.blocks[h.number] = Stored(
                h, (old.live if old else False) or writer.live_term is not None,
                (old.checkpoint if old else False) or h.number in batch.checkpoints)
        self.commits += 1

    async def snapshot(self) -> Snapshot:
        self._fail("snapshot")
        return Snapshot(self.epoch, self.done(), {c: dict(k) for c, k in self.children.items()})

    async def compact(self) -> int:
        return 0

    async def max_fence(self) -> int:
        return max([f or 0 for _, _, f, _ in self.ranges] + [self.live_fence])

    async def stored_blocks(self, *, live: bool, below: int | None = None,
                            limit: int = 256) -> list[BlockHeader]:
        self._fail("stored_blocks")
        top = below if below is not None else 2**62
        found = sorted((s.header for n, s in self.blocks.items() if n < top and s.live == live),
                       key=lambda h: -h.number)
        return found[:limit]

    async def stored_block(self, number: int | None = None) -> BlockHeader | None:
        if number is not None:
            s = self.blocks.get(number)
            return s.header if s else None
        return self.blocks[max(self.blocks)].header if self.blocks else None

    async def rollback(self, repair: Repair, fence: int) -> dict[str, int]:
        if self.live_fence > fence:
            raise Fenced(f"a newer live follower (fence {self.live_fence}) has written")
        self.live_fence = fence
        keep = repair.fork_block
        self.epoch += 1
        deleted: dict[str, int] = {}
        for table, have in self.rows.items():
            gone = [k for k in have if k[0] > keep]
            for k in gone:
                del have[k]
            if gone:
                deleted[table] = len(gone)
        for known in self.children.values():
            for addr in [a for a, b in known.items() if b > keep]:
                del known[addr]
        self.blocks = {n: s for n, s in self.blocks.items() if n <= keep}
        kept = []
        for source, rng, f, w in self.ranges:
            if rng.start <= keep:
                kept.append((source, BlockRange(rng.start, min(rng.end, keep)), f, w))
        self.ranges = kept
        self.repairs.append(repair)
        return deleted

    async def prune_blocks(self, below: int) -> int:
        gone = [n for n, s in self.blocks.items() if n < below and s.live and not s.checkpoint]
        for n in gone:
            del self.blocks[n]
        return len(gone)

    async def release_live(self) -> None:
        return None

    async def genesis_hash(self) -> bytes | None:
        return self.genesis

    # -- for the tests ------------------------------------------------------------------------

    def done(self) -> dict[str, list[BlockRange]]:
        out: dict[str, list[BlockRange]] = {}
        for source, rng, _, _ in self.ranges:
            out.setdefault(source, []).append(rng)
        return {s: merge(rs) for s, rs in out.items()}

    def transfers(self, table: str = "token_transfer") -> list[tuple[int, int, int]]:
        """(block, log index, value) of every stored Transfer, in order."""
        return sorted((r[1], r[5], int(r[9])) for r in self.rows.get(table, {}).values())

    def overlapping(self) -> list[tuple[BlockRange, BlockRange]]:
        """Pairs of records of one source that overlap (must always be empty)."""
        out = []
        by_source: dict[str, list[BlockRange]] = {}
        for source, rng, _, _ in self.ranges:
            for other in by_source.get(source, []):
                if other.start <= rng.end and rng.start <= other.end:
                    out.append((other, rng))
            by_source.setdefault(source, []).append(rng)
        return out

    def stored(self, numbers: Sequence[int]) -> list[BlockHeader | None]:
        return [self.blocks[n].header if n in self.blocks else None for n in numbers]
