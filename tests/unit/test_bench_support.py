"""The benchmark's own pieces: the plain pipeline's split and decoding, the mixed workload's op
encoding, table names and chain file, the CPU meter, the count check and the ratios."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from indexer.naming import snake_case
from scripts import bench, peers, plain_pipeline
from scripts.benchlib import CpuMeter, backend_database, median, proc_times, run_measured
from tests.support import mixed

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("first", "last", "parts"), [(0, 0, 1), (0, 9, 3), (5, 104, 2), (0, 3, 8)])
def test_split_covers_the_span_in_order(first: int, last: int, parts: int) -> None:
    spans = plain_pipeline.split(first, last, parts)
    assert spans[0][0] == first and spans[-1][1] == last
    assert all(a[1] + 1 == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert all(lo <= hi for lo, hi in spans)
    assert len(spans) == min(parts, last - first + 1)
    sizes = [hi - lo + 1 for lo, hi in spans]
    assert max(sizes) - min(sizes) <= 1


def test_plain_decode_slices_a_transfer() -> None:
    log = {
        "address": "0x" + "ab" * 20,
        "topics": [plain_pipeline.TRANSFER, "0x" + "00" * 12 + "11" * 20, "0x" + "00" * 12 + "22" * 20],
        "data": "0x" + f"{10**30:064x}",
        "blockNumber": "0x10", "blockTimestamp": "0x6553f100",
        "transactionHash": "0x" + "cd" * 32, "transactionIndex": "0x2", "logIndex": "0x1f",
    }
    times: dict[str, datetime] = {}
    row = plain_pipeline.decode(log, 31337, times)
    assert row == (31337, 16, datetime.fromtimestamp(0x6553F100, UTC), bytes.fromhex("cd" * 32), 2,
                   31, bytes.fromhex("ab" * 20), bytes.fromhex("11" * 20), bytes.fromhex("22" * 20),
                   10**30)
    assert len(row) == len(plain_pipeline.COLUMNS)


def test_plain_producer_hands_over_answers_in_order_and_a_failure() -> None:
    async def go(fail_at: int | None) -> list:
        async def fetch(lo: int, hi: int) -> list[dict]:
            await asyncio.sleep(0.001 * (10 - lo))  # later ranges answer first
            if lo == fail_at:
                raise RuntimeError(f"range {lo} failed")
            return [{"lo": lo}]

        queue: asyncio.Queue = asyncio.Queue(maxsize=2)
        task = asyncio.create_task(plain_pipeline.produce(fetch, [(i, i) for i in range(6)], 4,
                                                          queue))
        got = []
        while True:
            item = await queue.get()
            got.append(item)
            if item is None or isinstance(item, Exception):
                break
        await task
        return got

    ok = asyncio.run(go(None))
    assert ok == [[{"lo": i}] for i in range(6)] + [None]
    failed = asyncio.run(go(3))
    assert failed[:3] == [[{"lo": i}] for i in range(3)]
    assert isinstance(failed[-1], RuntimeError)  # the consumer stops, no hang


def test_plain_ddl_has_the_indexer_layout() -> None:
    stmts = plain_pipeline.ddl("s", "demo_token_transfer", 31337, 1000, 0, 2500)
    assert "PRIMARY KEY (chain_id, block_number, log_index)" in stmts[1]
    assert "PARTITION BY LIST (chain_id)" in stmts[1]
    assert "PARTITION BY RANGE (block_number)" in stmts[2]
    parts = stmts[3:]
    assert [p.split('"')[3] for p in parts] == [f"demo_token_transfer_c31337_p{i}" for i in range(3)]
    assert "FROM (2000) TO (3000)" in parts[-1]


def test_op_packs_fields_as_the_helper_reads_them() -> None:
    packed = mixed.op(mixed.V3_CREATE, 7, 8, 2, amount=10**24)
    assert packed & 0xFF == mixed.V3_CREATE
    assert (packed >> 8) & 0xFF == 7 and (packed >> 16) & 0xFF == 8 and (packed >> 24) & 0xFF == 2
    assert packed >> 32 == 10**24
    assert mixed.run_data([packed]).startswith("0x")


@pytest.mark.parametrize("name", ["UniswapV2Factory", "WETH9", "PairCreated", "Token",
                                  "UniswapV3Pool", "IncreaseObservationCardinalityNext"])
def test_table_names_follow_the_indexer_rule(name: str) -> None:
    assert mixed.snake_case(name) == snake_case(name)


def _facts() -> dict:
    return {"addresses": {"WETH9": "0x" + "01" * 20, "UniswapV2Factory": "0x" + "02" * 20,
                          "UniswapV3Factory": "0x" + "03" * 20,
                          "Token": ["0x" + f"{i + 16:02x}" * 20 for i in range(8)]},
            "head": 600}


def test_mixed_chain_file_covers_twenty_event_kinds() -> None:
    tree = mixed.chain_config(_facts())
    names = {c["name"]: c for c in tree["contracts"]}
    assert names["UniswapV2Pair"]["factory"] == {"contract": "UniswapV2Factory",
                                                 "event": "PairCreated", "parameter": "pair"}
    assert names["UniswapV3Pool"]["factory"]["parameter"] == "pool"
    files = peers.ponder_project(tree, 600)
    tables = yaml.safe_load(files["tables.json"])
    assert len(tables) == 20 and len(set(tables)) == 20
    for t in tables:
        assert f'onchainTable("{t}"' in files["ponder.schema.ts"]
    assert files["ponder.config.ts"].count("factory({") == 2
    assert "endBlock: 600" in files["ponder.config.ts"]
    # PairCreated has an unnamed parameter: viem gives those args as an array
    assert "a_pair: event.args[2]" in files["src/index.ts"]
    assert "a_from: event.args.from" in files["src/index.ts"]


def test_check_counts_wants_every_row_and_nothing_else() -> None:
    assert bench.check_counts("x", {"a": 3, "b": 0}, {"a": 3}) == 3
    with pytest.raises(SystemExit, match="a: 2 rows, expected 3"):
        bench.check_counts("x", {"a": 2}, {"a": 3})
    with pytest.raises(SystemExit, match="b: 1 rows, expected none"):
        bench.check_counts("x", {"a": 3, "b": 1}, {"a": 3})


def test_ratios_are_medians_of_runs_side_by_side() -> None:
    def run(runner: str, kind: str, n: int | None, rate: int) -> dict:
        return {"workload": "w", "runner": runner, "kind": kind, "workers": n,
                "events_per_second": rate, "us_per_event": {"total": 1000 / rate}}

    runs = [run("plain pipeline", "plain", 1, 100), run("indexer", "indexer", 1, 70),
            run("plain pipeline", "plain", 1, 200), run("indexer", "indexer", 1, 100),
            run("plain pipeline", "plain", 1, 100), run("indexer", "indexer", 1, 60),
            run("ponder", "ponder", None, 10), run("ponder", "ponder", None, 20),
            run("ponder", "ponder", None, 5)]
    rows = {r["comparison"]: r for r in bench.ratio_rows(runs)}
    plain = rows["indexer (B) / plain pipeline (A)"]
    assert plain["pairs"] == [0.7, 0.5, 0.6] and plain["ratio"] == pytest.approx(0.6)
    assert plain["cpu_ratio"] == pytest.approx(1 / 0.6)  # B's CPU per event over A's
    assert rows["indexer / ponder"]["pairs"] == [7.0, 5.0, 12.0]
    assert "| 0.60 | 0.70, 0.50, 0.60 | 1.67 |" in bench.ratio_table(list(rows.values()))
    assert median([1, 3, 2, 10]) == 2.5


def test_cpu_meter_counts_a_child_and_its_children() -> None:
    burn = ("import subprocess, sys, time\n"
            "code = 'import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.3: pass'\n"
            "subprocess.run([sys.executable, '-c', code], check=True)\n"
            "t = time.process_time()\nwhile time.process_time() - t < 0.2: pass\n")
    meter = CpuMeter(anvil_pid=None, postmaster_pid=None, database=None, interval=0.02)
    m = run_measured([sys.executable, "-c", burn], env={}, cwd=REPO, meter=meter, what="burn")
    assert m.cpu["client"] >= 0.45
    assert 0.2 <= m.cpu["client_children"] <= m.cpu["client"]
    assert m.cpu["peak_rss_mb"] > 1


def test_a_failing_command_stops_the_bench() -> None:
    meter = CpuMeter(anvil_pid=None, postmaster_pid=None, database=None)
    with pytest.raises(SystemExit, match="exit 3"):
        run_measured([sys.executable, "-c", "raise SystemExit(3)"], env={}, cwd=REPO,
                     meter=meter, what="fails")
    with pytest.raises(SystemExit, match="before it was done"):
        run_measured([sys.executable, "-c", "print('x')"], env={}, cwd=REPO,
                     meter=CpuMeter(anvil_pid=None, postmaster_pid=None, database=None),
                     what="short", until=lambda out: "never" in out)


def test_proc_times_of_this_process() -> None:
    t = proc_times("self")
    assert t is not None and t[1] > 0
    assert proc_times(2**22 + 12345) is None


def test_help_documents_every_option() -> None:
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    for opt in ("--workload", "--plain", "--indexer", "--peers", "--repeat", "--fresh-chain",
                "--mixed-logs", "--json", "--redis", "--timeout"):
        assert opt in out


@pytest.mark.parametrize(("title", "db"), [
    ("postgres: 15/main: postgres bench_1 127.0.0.1(42610) idle", "bench_1"),
    ("postgres: postgres bench_1 [local] COPY", "bench_1"),
    ("postgres: 15/main: autovacuum worker bench_2", "bench_2"),
    ("postgres: 15/main: checkpointer ", ""),
    ("postgres: 15/main: walwriter ", ""),
    ("/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main", None),
    ("postgres: 15/main: 127.0.0.1(5555) startup", None),
])
def test_backend_database_from_the_process_title(title: str, db: str | None) -> None:
    assert backend_database(title) == db
