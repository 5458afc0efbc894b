"""Editing the chain file of an indexed chain: every kind of edit ends with every table equal
to an independent decoder over the whole chain (web3 + eth-abi over eth_getLogs), and each
block of each source recorded once.

One anvil with the demo system and real traffic serves the module; each test indexes it into
a fresh database: a first run with the file as it was, up to a block in the middle of the
chain, then the edited file, to the head.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from tests.support.cli import REPO, env_for, indexer, start_indexer, stop, wait_for
from tests.support.contracts import Deployed
from tests.support.reference import Source, assert_tables_equal, expected_rows, read_tables
from tests.support.reorg import reorg, source_records
from tests.support.traffic import run_traffic

SCHEMA = "chaindata"
ABIS = REPO / "chains" / "abis"


def contract(name: str, abi: str, *, address: str | Sequence[str] | None = None,
             factory: dict[str, str] | None = None, events: Sequence[str] | None = None,
             start_block: int | None = None, abi_path: Path | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "abi": str(abi_path or ABIS / abi)}
    if address is not None:
        c["address"] = address if isinstance(address, str) else list(address)
    if factory is not None:
        c["factory"] = factory
    if events is not None:
        c["events"] = list(events)
    if start_block is not None:
        c["start_block"] = start_block
    return c


def write(path: Path, contracts: list[dict[str, Any]]) -> Path:
    data = yaml.safe_load((REPO / "chains" / "anvil.yaml").read_text())
    data["contracts"] = contracts
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def reference(deployed: Deployed, contracts: list[dict[str, Any]]) -> list[Source]:
    """What the file asks for, as the independent decoder reads it."""
    out = []
    for c in contracts:
        doc = json.loads(Path(c["abi"]).read_text())
        abi = doc["abi"] if isinstance(doc, dict) else doc
        if "factory" in c:
            addresses: list[str] | None = deployed.pairs()
        else:
            addresses = [c["address"]] if isinstance(c["address"], str) else c["address"]
        out.append(Source(c["name"], abi, addresses, c.get("events")))
    return out


def compare(deployed: Deployed, database_url: str, contracts: list[dict[str, Any]],
            *, start: int = 0) -> dict[str, list]:
    head = int(deployed.rpc.call("eth_blockNumber"), 16)
    expected: dict[str, list] = {}
    for src, c in zip(reference(deployed, contracts), contracts, strict=True):
        first = max(start, c.get("start_block", 0))
        for table, rows in expected_rows(deployed.url, [src], first, head).items():
            expected.setdefault(table, []).extend(rows)
    actual = asyncio.run(read_tables(database_url, SCHEMA, list(expected)))
    assert_tables_equal(expected, actual)
    return expected


def assert_each_block_done_once(database_url: str) -> None:
    spans: dict[str, list[tuple[int, int]]] = {}
    for r in source_records(database_url):
        spans.setdefault(r["source"], []).append((r["from_block"], r["to_block"]))
    for source, got in spans.items():
        got.sort()
        for (_, end), (start, _) in zip(got, got[1:], strict=False):
            assert start > end, f"{source}: blocks {start}-{end} recorded twice"


@pytest.fixture(scope="module")
def chain(deployed_module: Deployed) -> Iterator[Deployed]:
    """The demo system after 30 rounds of traffic; pairs are created in rounds 0, 10 and 20."""
    run_traffic(deployed_module, rounds=30, seed=41)
    yield deployed_module


def middle(deployed: Deployed) -> int:
    """A block between the creation of the second and the third pair."""
    created = sorted(int(log["blockNumber"], 16) for log in deployed.rpc.call("eth_getLogs", {
        "fromBlock": "0x0", "toBlock": "latest", "address": deployed.addresses.factory}))
    assert len(created) == 3, created
    return (created[1] + created[2]) // 2


def tokens(deployed: Deployed) -> dict[str, str]:
    a = deployed.addresses
    return {"a": a.token_a, "b": a.token_b, "weth": a.weth}


def run(env: dict[str, str], chain_file: Path, *extra: str) -> str:
    res = indexer(["run", "--chain", str(chain_file), *extra], env)
    assert res.code == 0, res.err
    return res.err


EDITS: dict[str, tuple[Any, Any]] = {
    # before, after: functions of the token addresses
    "more addresses": (
        lambda t: [contract("Tokens", "erc20.json", address=[t["a"]], events=["Transfer"])],
        lambda t: [contract("Tokens", "erc20.json", address=[t["a"], t["b"], t["weth"]],
                            events=["Transfer"])],
    ),
    "one more event": (
        lambda t: [contract("Tokens", "erc20.json", address=[t["a"], t["b"]], events=["Transfer"])],
        lambda t: [contract("Tokens", "erc20.json", address=[t["a"], t["b"]],
                            events=["Transfer", "Approval"])],
    ),
    "no events filter any more": (
        lambda t: [contract("Tokens", "erc20.json", address=[t["a"], t["b"]], events=["Approval"])],
        lambda t: [contract("Tokens", "erc20.json", address=[t["a"], t["b"]])],
    ),
    "one more contract": (
        lambda t: [contract("WETH9", "weth9.json", address=t["weth"])],
        lambda t: [contract("WETH9", "weth9.json", address=t["weth"]),
                   contract("DemoToken", "erc20.json", address=[t["a"], t["b"]])],
    ),
    "an earlier start block": (
        lambda t: [contract("Tokens", "erc20.json", address=[t["a"], t["b"]], start_block=100)],
        lambda t: [contract("Tokens", "erc20.json", address=[t["a"], t["b"]], start_block=0)],
    ),
    "a factory with children created before and after": (
        lambda t: [contract("Tokens", "erc20.json", address=[t["a"]])],
        lambda t: [contract("Tokens", "erc20.json", address=[t["a"]]),
                   contract("UniswapV2Factory", "uniswap_v2_factory.json",
                            address=t["factory"]),
                   contract("UniswapV2Pair", "uniswap_v2_pair.json",
                            factory={"contract": "UniswapV2Factory", "event": "PairCreated",
                                     "parameter": "pair"},
                            events=["Swap", "Sync", "Mint", "Burn"])],
    ),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edit_backfills_exactly_the_addition(chain: Deployed, database_url: str,
                                                tmp_path: Path, edit: str):
    t = {**tokens(chain), "factory": chain.addresses.factory}
    before, after = (f(t) for f in EDITS[edit])
    env = env_for(database_url, chain.url)
    mid = middle(chain)
    run(env, write(tmp_path / "before.yaml", before), "--until", str(mid))
    err = run(env, write(tmp_path / "after.yaml", after), "--once")
    expected = compare(chain, database_url, after)
    first = rows_of(chain, before, mid)
    # The second run wrote exactly the difference: what the edit adds, over the whole chain,
    # and what the file asked for already, above the first run's last block.
    grown = {t: len(rows) - len(first.get(t, [])) for t, rows in expected.items()}
    unedited = rows_of(chain, before, int(chain.rpc.call("eth_blockNumber"), 16))
    assert any(len(rows) > len(unedited.get(t, [])) for t, rows in expected.items()), \
        "the edit adds no row over the chain: the test proves nothing"
    for table, n in grown.items():
        line = f"{SCHEMA}.{table}: +{n:,} rows"
        assert (line in err) == (n > 0), (line, err)
    assert_each_block_done_once(database_url)


def rows_of(deployed: Deployed, contracts: list[dict[str, Any]], upto: int) -> dict:
    """What the independent decoder finds for ``contracts`` up to block ``upto``."""
    out: dict[str, list] = {}
    for src, c in zip(reference(deployed, contracts), contracts, strict=True):
        for table, rows in expected_rows(deployed.url, [src], c.get("start_block", 0),
                                         upto).items():
            out.setdefault(table, []).extend(rows)
    return out


def erc20_abi_with(tmp_path: Path, name: str, change) -> Path:  # type: ignore[no-untyped-def]
    """A copy of the shipped ERC-20 ABI changed by ``change`` (a function of the entries)."""
    entries = json.loads((ABIS / "erc20.json").read_text())
    path = tmp_path / name
    path.write_text(json.dumps(change(entries)))
    return path


def test_an_overload_added_to_the_abi_keeps_the_existing_table(chain: Deployed, database_url: str,
                                                                tmp_path: Path):
    t = tokens(chain)
    env = env_for(database_url, chain.url)
    plain = [contract("DemoToken", "erc20.json", address=[t["a"], t["b"]])]
    run(env, write(tmp_path / "before.yaml", plain), "--until", str(middle(chain)))
    overload = {"type": "event", "name": "Transfer", "anonymous": False, "inputs": [
        {"name": "from", "type": "address", "indexed": True},
        {"name": "to", "type": "address", "indexed": True},
        {"name": "value", "type": "uint256", "indexed": False},
        {"name": "data", "type": "bytes", "indexed": False}]}
    abi = erc20_abi_with(tmp_path, "erc20-overload.json", lambda e: [*e, overload])
    grown = [contract("DemoToken", "erc20.json", address=[t["a"], t["b"]], abi_path=abi)]
    err = run(env, write(tmp_path / "after.yaml", grown), "--once")
    # The naming rule would now call both tables demo_token_transfer_<topic0>: the table
    # that holds the history keeps its name, the new overload gets the suffix.
    tables = asyncio.run(_tables(database_url))
    assert "demo_token_transfer" in tables and "demo_token_transfer_ddf252ad" not in tables
    new = [name for name in tables if name.startswith("demo_token_transfer_")]
    assert len(new) == 1, tables
    compare(chain, database_url, plain)  # every Transfer, in the table it always had
    assert asyncio.run(read_tables(database_url, SCHEMA, new))[new[0]] == []
    assert "demo_token_transfer: +" in err


def test_an_event_whose_parameters_changed_gets_a_table_of_its_own(chain: Deployed,
                                                                   database_url: str,
                                                                   tmp_path: Path):
    t = tokens(chain)
    env = env_for(database_url, chain.url)
    plain = [contract("DemoToken", "erc20.json", address=[t["a"], t["b"]])]
    run(env, write(tmp_path / "before.yaml", plain), "--once")

    def widen(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for e in entries:
            if e.get("name") == "Transfer":
                e["inputs"].append({"name": "memo", "type": "bytes", "indexed": False})
        return entries

    abi = erc20_abi_with(tmp_path, "erc20-widened.json", widen)
    changed = [contract("DemoToken", "erc20.json", address=[t["a"], t["b"]], abi_path=abi)]
    err = run(env, write(tmp_path / "after.yaml", changed), "--once")
    tables = asyncio.run(_tables(database_url))
    new = [name for name in tables if name.startswith("demo_token_transfer_")]
    assert len(new) == 1, tables
    assert "Transfer(address,address,uint256,bytes) is a new event" in err
    assert f"its rows go to table {new[0]}" in err
    compare(chain, database_url, plain)  # the old table keeps every row of the old event


async def _tables(database_url: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        return [r["table_name"] for r in await conn.fetch(
            "SELECT table_name FROM indexer.event_tables ORDER BY table_name")]
    finally:
        await conn.close()


def test_a_changed_decoding_of_an_indexed_event_is_refused(chain: Deployed, database_url: str,
                                                           tmp_path: Path):
    t = tokens(chain)
    env = env_for(database_url, chain.url)
    before = [contract("DemoToken", "erc20.json", address=[t["a"]])]
    run(env, write(tmp_path / "before.yaml", before), "--once")

    def unindex_spender(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for e in entries:
            if e.get("name") == "Approval":
                e["inputs"][1]["indexed"] = False  # same topic0, another layout
        return entries

    abi = erc20_abi_with(tmp_path, "erc20-changed.json", unindex_spender)
    after = [contract("DemoToken", "erc20.json", address=[t["a"]], abi_path=abi)]
    res = indexer(["run", "--chain", str(write(tmp_path / "after.yaml", after)), "--once"], env)
    assert res.code == 2, res.err
    assert "Approval(address,address,uint256)" in res.err
    assert "'Approval(address indexed owner,address spender,uint256 value)'" in res.err
    assert "'Approval(address indexed owner,address indexed spender,uint256 value)'" in res.err
    assert "indexer prune --chain anvil --contract DemoToken --event Approval --yes" in res.err
    assert "Traceback" not in res.err
    compare(chain, database_url, before)  # nothing was changed


def test_a_removed_contract_keeps_its_rows_and_when_added_again_fills_only_the_gap(
        chain: Deployed, database_url: str, tmp_path: Path):
    t = tokens(chain)
    env = env_for(database_url, chain.url)
    weth = contract("WETH9", "weth9.json", address=t["weth"])
    demo = contract("DemoToken", "erc20.json", address=[t["a"], t["b"]])
    head = int(chain.rpc.call("eth_blockNumber"), 16)
    first, second = head // 3, 2 * head // 3
    run(env, write(tmp_path / "all.yaml", [weth, demo]), "--until", str(first))
    run(env, write(tmp_path / "without.yaml", [weth]), "--until", str(second))
    kept = asyncio.run(read_tables(database_url, SCHEMA, ["demo_token_transfer"]))
    assert kept["demo_token_transfer"] == rows_of(chain, [demo], first)["demo_token_transfer"]
    err = run(env, write(tmp_path / "again.yaml", [weth, demo]), "--once")
    expected = compare(chain, database_url, [weth, demo])
    gap = len(expected["demo_token_transfer"]) - len(kept["demo_token_transfer"])
    assert gap > 0 and f"{SCHEMA}.demo_token_transfer: +{gap:,} rows" in err
    assert_each_block_done_once(database_url)


def test_prune_deletes_the_rows_of_a_removed_contract_and_indexing_it_again_starts_over(
        chain: Deployed, database_url: str, tmp_path: Path):
    t = tokens(chain)
    env = env_for(database_url, chain.url)
    weth = contract("WETH9", "weth9.json", address=t["weth"])
    demo = contract("DemoToken", "erc20.json", address=[t["a"], t["b"]])
    both = write(tmp_path / "both.yaml", [weth, demo])
    run(env, both, "--once")
    res = indexer(["prune", "--chain", str(both), "--contract", "DemoToken", "--event",
                   "Transfer", "--yes"], env)
    assert res.code == 0, res.err
    n = len(rows_of(chain, [demo], int(chain.rpc.call("eth_blockNumber"), 16))["demo_token_transfer"])
    assert f"deleted {n:,} rows of demo_token_transfer" in res.out
    assert "still in" in res.err  # the file still names it: the next run indexes it again
    # No source writes to that table any more and it holds no row: it is dropped (the next run
    # makes it again, with the columns the file then asks for).
    assert "dropped table demo_token_transfer" in res.out
    assert "demo_token_transfer" not in asyncio.run(_tables(database_url))
    left = asyncio.run(read_tables(database_url, SCHEMA, ["demo_token_approval"]))
    assert left["demo_token_approval"]  # the other event of the contract is untouched
    nothing = indexer(["prune", "--chain", str(both), "--contract", "Nope", "--yes"], env)
    assert nothing.code == 1 and "nothing recorded for Nope" in nothing.err
    err = run(env, both, "--once")
    assert f"{SCHEMA}.demo_token_transfer: +{n:,} rows" in err
    compare(chain, database_url, [weth, demo])


def _equal(deployed: Deployed, database_url: str, contracts: list[dict[str, Any]]) -> bool:
    try:
        compare(deployed, database_url, contracts)
    except (AssertionError, asyncpg.UndefinedTableError):  # not yet
        return False
    return True


def test_sighup_applies_a_valid_edit_and_refuses_an_invalid_one_while_the_run_goes_on(
        deployed: Deployed, database_url: str, tmp_path: Path):
    run_traffic(deployed, rounds=10, seed=43)
    t = tokens(deployed)
    env = env_for(database_url, deployed.url)
    path = tmp_path / "chain.yaml"
    before = [contract("DemoToken", "erc20.json", address=[t["a"]])]
    after = [contract("DemoToken", "erc20.json", address=[t["a"], t["b"]]),
             contract("WETH9", "weth9.json", address=t["weth"])]
    write(path, before)
    log = tmp_path / "run.log"
    proc = start_indexer(["run", "--chain", str(path)], env, log=log)
    wait_for(lambda: _equal(deployed, database_url, before), timeout=90)
    path.write_text(path.read_text() + "unknown_key: 1\n")
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "the edited chain file is not applied" in log.read_text(), timeout=30)
    assert "unknown_key: unknown key" in log.read_text()
    run_traffic(deployed, rounds=2, seed=44, prepare=False)  # it goes on with the old file
    wait_for(lambda: _equal(deployed, database_url, before), timeout=60)
    write(path, after)
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: _equal(deployed, database_url, after), timeout=90)
    assert proc.poll() is None, log.read_text()
    assert "chain file reloaded" in log.read_text()
    assert stop(proc) == 130
    assert_each_block_done_once(database_url)


def test_watch_applies_the_file_when_it_changes(deployed: Deployed, database_url: str,
                                                tmp_path: Path):
    run_traffic(deployed, rounds=5, seed=45)
    t = tokens(deployed)
    env = env_for(database_url, deployed.url)
    path = tmp_path / "chain.yaml"
    before = [contract("DemoToken", "erc20.json", address=[t["a"]], events=["Transfer"])]
    after = [contract("DemoToken", "erc20.json", address=[t["a"]])]
    write(path, before)
    log = tmp_path / "run.log"
    proc = start_indexer(["run", "--chain", str(path), "--watch"], env, log=log)
    wait_for(lambda: _equal(deployed, database_url, before), timeout=90)
    write(path, after)
    wait_for(lambda: _equal(deployed, database_url, after), timeout=90)
    assert "chain file reloaded" in log.read_text()
    assert stop(proc) == 130


def test_a_new_source_killed_in_its_backfill_ends_exact_after_a_restart(
        chain: Deployed, database_url: str, tmp_path: Path):
    t = tokens(chain)
    env = env_for(database_url, chain.url)
    before = [contract("DemoToken", "erc20.json", address=[t["a"]])]
    after = [contract("DemoToken", "erc20.json", address=[t["a"], t["b"]])]
    run(env, write(tmp_path / "before.yaml", before), "--once")
    edited = write(tmp_path / "after.yaml", after)
    # Nothing is left for the old sources: the first unit of this run is the new one's.
    killed = indexer(["run", "--chain", str(edited), "--once", "--target-logs", "20"],
                     dict(env, INDEXER_FAULTS="after_copy=kill"))
    assert killed.code == -signal.SIGKILL, killed.err
    run(env, edited, "--once")
    compare(chain, database_url, after)
    assert_each_block_done_once(database_url)


def test_reindex_replaces_the_rows_of_an_event_while_two_workers_index_and_a_reorg_happens(
        deployed: Deployed, database_url: str, tmp_path: Path):
    run_traffic(deployed, rounds=20, seed=46)
    t = {**tokens(deployed), "factory": deployed.addresses.factory}
    env = env_for(database_url, deployed.url)
    demo = contract("DemoToken", "erc20.json", address=[t["a"], t["b"]])
    weth = contract("WETH9", "weth9.json", address=t["weth"])
    first = [demo, weth]
    second = [demo, weth, *EDITS["a factory with children created before and after"][1](t)[1:]]
    path = tmp_path / "chain.yaml"
    write_with(path, first, finality_depth=3, get_logs_max_range=10)
    run(env, path, "--once")
    head = int(deployed.rpc.call("eth_blockNumber"), 16)
    lo, hi = 10, head - 20
    broken = asyncio.run(_corrupt(database_url, lo, hi))
    assert broken > 0, "no Transfer to corrupt in the range: the test proves nothing"
    write_with(path, second, finality_depth=3, get_logs_max_range=10)
    workers = start_indexer(["run", "--chain", str(path), "--workers", "2"], env,
                            log=tmp_path / "workers.log")
    redo = start_indexer(["reindex", "--chain", str(path), "--contract", "DemoToken", "--event",
                          "Transfer", "--from-block", str(lo), "--to-block", str(hi)],
                         dict(env, INDEXER_FAULTS="after_fetch=sleep:0.2!"),
                         log=tmp_path / "reindex.log")
    time.sleep(1.0)
    run_traffic(deployed, rounds=3, seed=47, prepare=False)
    reorg(deployed, 2, seed=48)
    assert redo.wait(240) == 0, (tmp_path / "reindex.log").read_text()
    out = (tmp_path / "reindex.log").read_text()
    assert "demo_token_transfer:" in out and "rows deleted" in out
    run_traffic(deployed, rounds=1, seed=49, prepare=False)
    wait_for(lambda: _equal(deployed, database_url, second), timeout=120)
    assert stop(workers) in (0, 130), (tmp_path / "workers.log").read_text()
    compare(deployed, database_url, second)
    assert_each_block_done_once(database_url)


def write_with(path: Path, contracts: list[dict[str, Any]], **top: Any) -> Path:
    write(path, contracts)
    data = yaml.safe_load(path.read_text())
    data.update(top)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def _corrupt(database_url: str, lo: int, hi: int) -> int:
    """Change the value of every Transfer in [lo, hi] and delete one: rows that only a fetch
    of those blocks again can set right."""
    conn = await asyncpg.connect(database_url)
    try:
        status = await conn.execute(
            f"UPDATE {SCHEMA}.demo_token_transfer SET value = value + 1"
            " WHERE block_number BETWEEN $1 AND $2", lo, hi)
        await conn.execute(
            f"DELETE FROM {SCHEMA}.demo_token_transfer WHERE (block_number, log_index) IN"
            f" (SELECT block_number, log_index FROM {SCHEMA}.demo_token_transfer"
            " WHERE block_number BETWEEN $1 AND $2 ORDER BY 1, 2 LIMIT 1)", lo, hi)
        return int(status.split()[-1])
    finally:
        await conn.close()


OLD_RELEASE = "9309742"  # the release before sources were recorded


def test_a_database_of_the_previous_release_is_upgraded_and_then_edited_exactly(
        chain: Deployed, database_url: str, tmp_path: Path):
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", OLD_RELEASE, "indexer", "schema",
                              "chains"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"the previous release {OLD_RELEASE} is not in this clone's history: "
                    f"{archive.stderr.decode()[:200]}")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    t = tokens(chain)
    env = env_for(database_url, chain.url)
    before = [contract("DemoToken", "erc20.json", address=[t["a"]], events=["Transfer"]),
              contract("WETH9", "weth9.json", address=t["weth"])]
    after = [contract("DemoToken", "erc20.json", address=[t["a"], t["b"]]),
             contract("WETH9", "weth9.json", address=t["weth"])]
    mid = middle(chain)
    then = subprocess.run([sys.executable, "-m", "indexer", "run", "--chain",
                           str(write(tmp_path / "before.yaml", before)), "--until", str(mid)],
                          cwd=old, env=env, capture_output=True, text=True, timeout=240)
    assert then.returncode == 0, then.stderr
    assert asyncio.run(_legacy_records(database_url)) > 0  # written the old way
    # The first start of this release, with the file the records were written with: they are
    # upgraded (and the run goes on to the head).
    err = run(env, tmp_path / "before.yaml", "--once")
    assert "written before sources were recorded, now count for its sources" in err
    assert asyncio.run(_legacy_records(database_url)) == 0
    compare(chain, database_url, before)
    run(env, write(tmp_path / "after.yaml", after), "--once")  # then the edit
    compare(chain, database_url, after)
    assert_each_block_done_once(database_url)


async def _legacy_records(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        has = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema ="
            " 'indexer' AND table_name = 'ranges' AND column_name = 'coverage')")
        if not has:
            return int(await conn.fetchval("SELECT count(*) FROM indexer.ranges"))
        return int(await conn.fetchval(
            "SELECT count(*) FROM indexer.ranges WHERE coverage IS NULL"))
    finally:
        await conn.close()


def test_status_shows_how_far_each_event_of_each_contract_is(chain: Deployed, database_url: str,
                                                              tmp_path: Path):
    t = tokens(chain)
    env = env_for(database_url, chain.url)
    mid = middle(chain)
    path = write(tmp_path / "chain.yaml",
                 [contract("DemoToken", "erc20.json", address=[t["a"]], events=["Transfer"])])
    run(env, path, "--once")  # up to the head
    write(path, [contract("DemoToken", "erc20.json", address=[t["a"]])])
    run(env, path, "--until", str(mid))  # the new event is done up to the middle only
    res = indexer(["status", "--chain", str(path)], env)
    assert res.code == 0, res.err
    head = int(chain.rpc.call("eth_blockNumber"), 16)
    percent = round(100 * (mid + 1) / (head + 1))
    assert "  DemoToken Transfer: done" in res.out, res.out
    assert f"  DemoToken Approval: backfilling, {percent}%" in res.out, res.out
    as_json = json.loads(indexer(["status", "--chain", str(path), "--json"], env).out)
    events = {(e["contract"], e["event"]): e for e in as_json[0]["events"]}
    assert events[("DemoToken", "Approval")]["state"] == "backfilling"
    assert events[("DemoToken", "Transfer")]["percent"] == 100.0
