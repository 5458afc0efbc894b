"""``INDEXER_LIVE_TRACE=FILE``: one line per block the live tail commits,
``number,hash,seen,committed,logs`` (unix times), which ``scripts/bench-live`` reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from indexer.types import BlockHeader


class Trace:
    def __init__(self, path: str) -> None:
        self._out = open(path, "a", buffering=1)  # noqa: SIM115 - lives with the follower

    @staticmethod
    def rows_per_block(rows: Mapping[str, Sequence[tuple]]) -> dict[int, int]:
        counts: dict[int, int] = {}
        for recs in rows.values():
            for rec in recs:
                counts[rec[1]] = counts.get(rec[1], 0) + 1
        return counts

    def write(self, header: BlockHeader, seen: float, committed: float, logs: int) -> None:
        self._out.write(f"{header.number},0x{header.hash.hex()},{seen:.6f},{committed:.6f},"
                        f"{logs}\n")

    def close(self) -> None:
        self._out.close()
