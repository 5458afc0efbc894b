"""`indexer serve` beside a running `indexer run` on a real anvil: `finalized` stops at the safe
head and the extensions say so; pages of 1000 read while blocks are being indexed return
every row exactly once; a subscription (graphql-transport-ws) receives new rows as they are
indexed and, after a reorg, the retraction of those the repair deleted, then the new branch's."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.test_reorg import following, more_traffic
from tests.support.cli import env_for
from tests.support.contracts import Deployed
from tests.support.reorg import fetch, head, mine_blocks, reorg
from tests.support.serve import Served, start_serve
from tests.support.traffic import bulk_transfers, run_traffic

FINALITY = 4
SYNC = "uniswap_v2_pair_sync"
TRANSFER = "demo_token_transfer"


@pytest.fixture(scope="module")
def chain(deployed_module: Deployed) -> Deployed:
    run_traffic(deployed_module, rounds=9, seed=1)
    return deployed_module


def _keys(rows: Any) -> list[tuple[int, int]]:
    return [(int(r["block_number"]), int(r["log_index"])) for r in rows]


def _wait_indexed(served: Served, block: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        (c,) = served.data("{ chains { indexed } }")["chains"]
        if int(c["indexed"]) >= block:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"serve says indexed {c['indexed']}, not {block}")
        time.sleep(0.05)


def test_finalized_rows_stop_at_the_safe_head_and_the_answer_says_so(
        chain: Deployed, database_url: str, tmp_path: Path):
    with following(chain, database_url, tmp_path, finality_depth=FINALITY) as live:
        live.wait_caught_up()
        more_traffic(chain, seed=7, rounds=3)
        live.wait_caught_up()
        tip = head(chain.rpc)
        served = start_serve(env_for(database_url, chain.url), tmp_path / "serve.log")
        _wait_indexed(served, tip)
        rows = fetch(database_url, f"SELECT block_number, log_index FROM chaindata.{SYNC}"
                     " ORDER BY block_number, log_index")
        safe = tip - FINALITY
        assert any(r["block_number"] > safe for r in rows), "no row above the safe head"
        query = (f"query($f: Boolean) {{ {SYNC}(first: 1000, finalized: $f) "
                 f"{{ items {{ block_number log_index }} }} }}")
        final = served.graphql(query, {"f": True}).body
        assert _keys(final["data"][SYNC]["items"]) == [
            (r["block_number"], r["log_index"]) for r in rows if r["block_number"] <= safe]
        assert final["extensions"]["read_at"]["fields"][SYNC] == [
            {"chain_id": 31337, "indexed": tip, "safe": safe, "finalized": True}]
        everything = served.graphql(query, {"f": False}).body
        assert _keys(everything["data"][SYNC]["items"]) == [
            (r["block_number"], r["log_index"]) for r in rows]
        (c,) = served.data("{ chains { head safe indexed lag } }")["chains"]
        assert c == {"head": str(tip), "safe": str(safe), "indexed": str(tip), "lag": "0"}
        served.stop()


def test_pages_of_1000_read_while_blocks_are_indexed_return_every_row_once(
        deployed: Deployed, database_url: str, tmp_path: Path):
    token = deployed.addresses.token_a
    bulk_transfers(deployed.url, token, 2500, logs_per_tx=500, txs_per_block=1)
    with following(deployed, database_url, tmp_path, finality_depth=0) as live:
        live.wait_caught_up()
        served = start_serve(env_for(database_url, deployed.url), tmp_path / "serve.log")
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                bulk_transfers(deployed.url, token, 300, logs_per_tx=300, txs_per_block=1)
                time.sleep(0.1)

        writer = threading.Thread(target=traffic)
        writer.start()
        got: list[tuple[int, int]] = []
        indexed: list[int] = []
        after = None
        try:
            while True:
                body = served.graphql(
                    f"query($a: Cursor) {{ {TRANSFER}(first: 1000, after: $a) "
                    f"{{ items {{ block_number log_index }} next }} }}", {"a": after}).body
                page = body["data"][TRANSFER]
                got += _keys(page["items"])
                indexed.append(body["extensions"]["read_at"]["fields"][TRANSFER][0]["indexed"])
                after = page["next"]
                if len(indexed) == 4:
                    stop.set()  # the reader catches up with the writer from here
                if after is None:
                    break
                time.sleep(0.3)
        finally:
            stop.set()
            writer.join()
        rows = fetch(database_url, f"SELECT block_number, log_index FROM chaindata.{TRANSFER}"
                     " WHERE (block_number, log_index) <= ($1, $2)"
                     " ORDER BY block_number, log_index", *got[-1])
        assert len(got) == len(set(got)), "a row was served twice"
        assert got == [(r["block_number"], r["log_index"]) for r in rows]
        assert len(got) > 3000 and indexed[0] < indexed[-1], (len(got), indexed)
        served.stop()


class Subscriber:
    """One graphql-transport-ws subscription, its messages collected as they come."""

    def __init__(self, url: str, query: str) -> None:
        self.url = url.replace("http", "ws") + "/graphql"
        self.query = query
        self.messages: list[dict[str, Any]] = []
        self.ready = asyncio.Event()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                self.url, protocols=("graphql-transport-ws",)) as ws:
            await ws.send_json({"type": "connection_init"})
            assert (await ws.receive_json(timeout=10))["type"] == "connection_ack"
            await ws.send_json({"type": "subscribe", "id": "1",
                                "payload": {"query": self.query}})
            self.ready.set()
            async for msg in ws:
                self.messages.append(msg.json())

    def changes(self) -> list[dict[str, Any]]:
        return [m["payload"]["data"][TRANSFER] for m in self.messages
                if m["type"] == "next" and m["payload"].get("data")]


async def _until(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_a_subscription_gets_new_rows_then_a_retraction_after_a_reorg(
        chain: Deployed, database_url: str, tmp_path: Path):
    with following(chain, database_url, tmp_path, finality_depth=FINALITY) as live:
        await asyncio.to_thread(live.wait_caught_up)
        served = await asyncio.to_thread(start_serve, env_for(database_url, chain.url),
                                         tmp_path / "serve.log")
        start = head(chain.rpc)
        await asyncio.to_thread(_wait_indexed, served, start)
        sub = Subscriber(served.url, f"subscription {{ {TRANSFER} {{ kind chain_id after_block "
                                     f"items {{ block_number log_index tx_hash }} }} }}")
        task = asyncio.create_task(sub.run())
        try:
            await asyncio.wait_for(sub.ready.wait(), 10)
            await asyncio.sleep(0.3)  # the subscription has read where it starts
            rng = random.Random(5)
            await asyncio.to_thread(mine_blocks, chain, 4, rng, 3)
            await asyncio.to_thread(live.wait_caught_up)
            before = _keys(await asyncio.to_thread(
                fetch, database_url, f"SELECT block_number, log_index FROM chaindata.{TRANSFER}"
                " WHERE block_number > $1 ORDER BY 1, 2", start))
            assert before, "the new blocks hold no transfer"
            await _until(lambda: sum(len(c["items"]) for c in sub.changes()) >= len(before))
            inserted = [k for c in sub.changes() for k in _keys(c["items"])]
            assert inserted == before
            assert {c["kind"] for c in sub.changes()} == {"INSERT"}

            r = await asyncio.to_thread(reorg, chain, 2, seed=9)
            await asyncio.to_thread(live.wait_caught_up)
            after = _keys(await asyncio.to_thread(
                fetch, database_url, f"SELECT block_number, log_index FROM chaindata.{TRANSFER}"
                " WHERE block_number > $1 ORDER BY 1, 2", start))
            gone = [k for k in before if k[0] > r.fork]
            assert gone, "the reorg replaced no block with a transfer"
            await _until(lambda: any(c["kind"] == "RETRACT" for c in sub.changes()))
            await _until(lambda: _replay(sub.changes()) == after)
            (retraction,) = [c for c in sub.changes() if c["kind"] == "RETRACT"]
            assert retraction["after_block"] == str(r.fork)
            assert _keys(retraction["items"]) == gone
        finally:
            task.cancel()
            served.stop()


def _replay(changes: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """The rows a client holds after applying the changes in order."""
    held: list[tuple[int, int]] = []
    for c in changes:
        if c["kind"] == "INSERT":
            held += _keys(c["items"])
        else:
            held = [k for k in held if k[0] <= int(c["after_block"])]
    return sorted(held)
