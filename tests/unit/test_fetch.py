"""The fetch path through the chain source seam (a fake chain): block times come from the
hash-checked headers that came with the logs; a log's own ``blockTimestamp`` only stands in
for a header that is not at hand."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from indexer.chain.catalog import build_catalog
from indexer.chain.fetch import Fetcher
from indexer.plan import Unit
from indexer.rpc.logs import LogsAnswer
from indexer.types import BlockHeader, BlockRange
from tests.fakes.chain import TOKEN_SOURCE, FakeChain, chain_config

WRONG = 1_600_000_000  # a timestamp no header of the fake chain has


class LyingTimestamps(FakeChain):
    """Every log carries a ``blockTimestamp`` that is not its block's; ``headers`` says which
    blocks' headers come with the answer (all, when None)."""

    headers: set[int] | None = None

    async def get_logs_checked(
        self, rng: BlockRange, addresses: Sequence[str] | None, topic0s: Sequence[str] | None,
        *, tip: BlockHeader | None = None,
    ) -> LogsAnswer:
        answer = await super().get_logs_checked(rng, addresses, topic0s, tip=tip)
        for lg in answer.logs:
            lg["blockTimestamp"] = hex(WRONG + int(lg["blockNumber"], 16))  # type: ignore[typeddict-unknown-key]
        if self.headers is not None:
            answer.headers = {n: h for n, h in answer.headers.items() if n in self.headers}
        return answer


def times(rows: dict[str, list[tuple]]) -> dict[int, datetime]:
    return {r[1]: r[2] for recs in rows.values() for r in recs}


async def test_block_time_comes_from_the_checked_header_not_the_logs_field():
    chain = LyingTimestamps(head=20)
    fetcher = Fetcher(build_catalog(chain_config()), chain)
    result = await fetcher.unit(Unit(BlockRange(1, 20), (TOKEN_SOURCE,)), {})
    got = times(result.rows)
    assert sorted(got) == list(range(1, 21))
    assert got == {n: datetime.fromtimestamp(chain.header(n).timestamp, UTC) for n in got}


async def test_the_logs_field_stands_in_for_a_header_not_at_hand():
    chain = LyingTimestamps(head=20)
    chain.headers = {n for n in range(1, 21) if n != 7}
    fetcher = Fetcher(build_catalog(chain_config()), chain)
    result = await fetcher.unit(Unit(BlockRange(1, 20), (TOKEN_SOURCE,)), {})
    got = times(result.rows)
    assert got[7] == datetime.fromtimestamp(WRONG + 7, UTC)
    assert got[8] == datetime.fromtimestamp(chain.header(8).timestamp, UTC)
