"""When stored blocks are to be undone: the decisions of the live tail about reorgs, never
deleting because of a node that is merely behind (syncing, or a lagging backend).

Each method looks (at the stored blocks and the node's) and returns an ``Undo`` order or None;
carrying an order out is ``repair.Repairer``'s.

- A stored block that differs from the node's: the fork point comes from ``forks.find_fork``
  (the stored hashes, live blocks first, then the backfill's checkpoints).
- No block of its own yet (always so with finality_depth 0, where the backfill indexes every
  block): the newest backfill checkpoints are compared with the node's blocks instead.
- Deeper than ``finality_depth``: asked once more after a moment, and undone only when the
  second look finds the same fork point and the node still serves the chain indexed (its
  ``eth_chainId`` and its block 0); a node that serves another chain is refused
  (``RepairRefused``: nothing is deleted, the operator decides). How deep a repair may go on
  its own is the repairer's rule (``reorg_depth_cap``).
- A node that says it is syncing: nothing is undone until it has synced.
- A head below the indexed tip: waited for; blocks above it are taken as gone only when the
  lower head lasts 5 block times, is within the finality depth and the node says it is synced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from indexer import metrics
from indexer.chain.parts import ChainParts
from indexer.live.forks import find_fork
from indexer.live.window import Window
from indexer.types import BlockHeader

log = logging.getLogger(__name__)

CHECKPOINTS_VERIFIED = 64  # newest backfill checkpoints compared while the follower has no block
RECHECK_AFTER = 1.0  # seconds between looks at the stored checkpoints while the head stays


class RepairRefused(Exception):
    """A repair the live tail will not make on its own: the node serves another chain, or the
    repair would delete more blocks than the chain's ``reorg_depth_cap``. Nothing was
    deleted; no retry can help (the operator decides), so the run ends (exit 1)."""


def refuse(parts: ChainParts, reason: str, message: str) -> RepairRefused:
    """Count and log a refused repair (``reason``: a ``metrics.REFUSAL_REASONS`` value); the
    error to raise."""
    metrics.REPAIRS_REFUSED.labels(chain=parts.name, reason=reason).inc()
    log.error("REPAIR REFUSED %s", message)
    return RepairRefused(message)


@dataclass(frozen=True, slots=True)
class Undo:
    """An order: delete everything above block ``keep`` (``fork``: its header, when known;
    ``head``: the node's head when it was decided)."""

    keep: int
    fork: BlockHeader | None
    head: BlockHeader | None
    why: str


class Reorgs:
    def __init__(self, parts: ChainParts, window: Window) -> None:
        self.parts = parts
        self.window = window
        self.depth = parts.chain.finality_depth
        self.lower_since: float | None = None  # since when the head is below the tip
        self.verified: tuple[bytes, int, bytes] | None = None  # (head, checkpoint, its hash) good
        self.verified_at = 0.0

    def head_above_tip(self) -> None:
        self.lower_since = None

    async def at_or_below(self, head: BlockHeader) -> Undo | None:
        """The head is not above the tip: nothing new, a reorg, or a node behind us."""
        tip = self.window.tip
        assert tip is not None
        now = self.parts.clock.monotonic()
        if head.number < tip.number and self.lower_since is None:
            self.lower_since = now
            log.info("%s: live tail: the node's head %d is below the indexed tip %d; waiting",
                     self.parts.name, head.number, tip.number)
        mine = self.window.get(head.number)
        if mine is None:  # the live tail has no block that low: compare what is stored
            return await self.check_tip(head)
        if mine.hash != head.hash:
            return await self.judge(head)
        if head.number == tip.number or self.lower_since is None:
            return None
        # The node is behind the tip but on our chain: a node syncing or lagging (never a
        # reason to delete), or a chain that really got shorter. Only when that lasts, the node
        # says it is not syncing and the difference is within the finality depth, are the blocks
        # above its head taken as gone.
        settle = max(5.0, 5 * self.parts.chain.block_time)
        if (now - self.lower_since > settle and tip.number - head.number <= self.depth
                and not await self.parts.source.syncing()):
            log.warning("%s: live tail: the chain stayed at %d (below the indexed tip %d) for "
                        "%.0fs and the node is not syncing: blocks above it are gone",
                        self.parts.name, head.number, tip.number, settle)
            self.lower_since = None
            return Undo(head.number, head, head, "the chain got shorter")
        return None

    async def check_tip(self, head: BlockHeader | None = None) -> Undo | None:
        """Compare the live tail's own highest block at or below the head with the node's."""
        tip = self.window.tip
        if tip is None:
            return None
        p = self.parts
        head = head or await p.source.get_header("latest")
        if head is None:
            return None
        n = min(tip.number, head.number)
        mine = self.window.get(n)
        if mine is None:
            page = await p.sink.stored_blocks(live=True, below=n + 1, limit=1)
            if not page:
                return None
            mine = page[0]
        theirs = head if mine.number == head.number else \
            (await p.source.get_headers([mine.number]))[mine.number]
        return await self.judge(head) if theirs.hash != mine.hash else None

    async def verify_stored(self, head: BlockHeader) -> Undo | None:
        """With no block of its own (finality_depth 0, where the backfill indexes every block,
        or before the live tail's first commit), compare the newest backfill checkpoints at or
        below the head with the node's blocks. A checkpoint is the last block of a committed
        unit, so a reorg of any indexed block changes one of them, also when a unit of the new
        branch was committed above it since."""
        p = self.parts
        now = p.clock.monotonic()
        if (self.verified is not None and head.hash == self.verified[0]
                and now - self.verified_at < RECHECK_AFTER):
            return None  # same head: new checkpoints (a backfill under way) at most once a second
        page = await p.sink.stored_blocks(live=False, below=head.number + 1,
                                          limit=CHECKPOINTS_VERIFIED)
        if not page:
            return None
        key = (head.hash, page[0].number, page[0].hash)
        if key == self.verified:
            self.verified_at = now  # nothing new stored: look again in a second
            return None
        theirs = await p.source.get_headers([h.number for h in page])
        if any(theirs[h.number].hash != h.hash for h in page):
            self.verified = None
            return await self.judge(head)
        self.verified, self.verified_at = key, p.clock.monotonic()
        return None

    async def judge(self, head: BlockHeader) -> Undo | None:
        """A stored block differs from the node's: find the fork point; undo above it unless
        the node is syncing, nothing could be compared, or a deep fork point moved on a
        second look."""
        p = self.parts
        if await p.source.syncing():
            log.warning("%s: live tail: stored blocks differ from a node that is still syncing; "
                        "not repairing until it has synced", p.name)
            return None
        fork, compared = await self._fork(head)
        if not compared:
            return None  # the node is behind everything stored: nothing to judge by
        old = self.window.tip or await p.sink.stored_block()
        old_tip = old.number if old else head.number
        if fork is None or old_tip - fork.number > self.depth:
            # Deeper than finality: ask once more after a moment before undoing final blocks,
            # so one bad answer of a lagging or flapping node cannot cause it.
            await p.clock.sleep(min(2.0, p.chain.block_time))
            again, _ = await self._fork(head)
            if (again.number if again else None) != (fork.number if fork else None):
                log.warning("%s: live tail: fork point moved from %s to %s on a second look; "
                            "looking again", p.name, fork.number if fork else "none",
                            again.number if again else "none")
                return None
            await self._same_chain()
        if fork is not None:
            return Undo(fork.number, fork, head, "reorg")
        return Undo(p.catalog.first_block - 1, None, head,
                    "reorg (no stored block agrees with the node)")

    async def _same_chain(self) -> None:
        """Before undoing blocks taken as final: the node must still serve the chain that was
        indexed, by its chain id and its block 0; else RepairRefused."""
        p = self.parts
        c = p.chain
        cid = await p.source.chain_id()
        if cid != c.chain_id:
            raise refuse(p, "other_chain", (
                f"{p.name}: the stored blocks differ from the node's, and the RPC now answers "
                f"eth_chainId={cid} although {c.source} says chain_id {c.chain_id}: it serves "
                f"another network. Nothing was deleted. Fix the rpc URLs of {c.source} and run "
                f"again."))
        stored = await p.sink.genesis_hash()
        genesis = await p.source.get_header(0)
        if stored is not None and (genesis is None or genesis.hash != stored):
            now = f"0x{genesis.hash.hex()}" if genesis is not None else "missing"
            raise refuse(p, "other_chain", (
                f"{p.name}: the stored blocks differ from the node's, and the node's block 0 "
                f"is {now} while the chain indexed here has block 0 0x{stored.hex()}: the RPC "
                f"serves another chain with the same chain id (a wrong endpoint, or a local "
                f"chain started anew). Nothing was deleted. Fix the rpc URLs of {c.source}; if "
                f"the chain really started anew, run `indexer reset --chain {p.name}` and "
                f"index it again."))

    async def _fork(self, head: BlockHeader) -> tuple[BlockHeader | None, bool]:
        tip = self.window.tip
        top = min(tip.number if tip else head.number, head.number)
        return await find_fork(self.parts.sink, self.parts.source, top)
