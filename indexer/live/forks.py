"""The fork point of a reorg, from the stored block hashes and the node's (the I/O around
``rules.fork_point``)."""

from __future__ import annotations

from indexer.chain.source import ChainSource
from indexer.live.rules import fork_point
from indexer.sink.api import Sink
from indexer.types import BlockHeader

PAGE = 64  # stored blocks compared per request


async def find_fork(sink: Sink, source: ChainSource, top: int) -> tuple[BlockHeader | None, bool]:
    """The highest stored block at or below ``top`` (at most the node's head) the node agrees
    with, and whether any stored block could be compared at all.

    The live tail's own blocks (a linked chain) are walked down first. With none agreeing, the
    parent hash of the lowest of them is tried (what the chain said the block under it was;
    the blocks under the live tail's first are the backfill's), then the backfill's checkpoints,
    one page further than the first agreeing one so that an old-branch checkpoint sitting under
    a new-branch one is not kept."""
    compared = False
    lowest = top + 1
    for live in (True, False):
        below = lowest
        seen: list[BlockHeader] = []
        remote: dict[int, bytes] = {}
        extra = 0
        while True:
            page = await sink.stored_blocks(live=live, below=below, limit=PAGE)
            if not page:
                break
            compared = True
            got = await source.get_headers([h.number for h in page])
            remote.update({n: h.hash for n, h in got.items()})
            seen += page
            below = lowest = page[-1].number
            at = fork_point(seen, remote)
            if at is not None:
                if live or extra:
                    return next(h for h in seen if h.number == at), True
                extra += 1
        at = fork_point(seen, remote)
        if at is not None:
            return next(h for h in seen if h.number == at), True
        if live and seen and seen[-1].number > 0:
            under = seen[-1].number - 1
            node = (await source.get_headers([under]))[under]
            if node.hash == seen[-1].parent_hash:
                return node, True
    return None, compared
