"""`indexer serve` over the demo system indexed from a real anvil: GraphQL answers equal the
rows in Postgres (read here with plain SQL), pages return every row exactly once, values have
the forms of the contract, every answer says the blocks it was read at, and a query that
cannot be answered is an error with a 4xx status, never a 200."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.cli import env_for, indexer
from tests.support.contracts import Deployed
from tests.support.serve import Served, start_serve
from tests.support.services import Anvil, drop_database, fresh_database
from tests.support.traffic import run_traffic

SWAP = "uniswap_v2_pair_swap"
SWAP_FIELDS = "chain_id block_number block_time tx_hash tx_index log_index address sender " \
              "amount0_in amount1_in amount0_out amount1_out to"


@dataclass
class Setup:
    served: Served
    database_url: str
    head: int


def _fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()
    return asyncio.run(go())


@pytest.fixture(scope="module")
def setup(anvil_module: Anvil, deployed_module: Deployed, database_admin_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    run_traffic(deployed_module, rounds=60, seed=3)
    url = asyncio.run(fresh_database(database_admin_url))
    env = env_for(url, anvil_module.url)
    done = indexer(["run", "--chain", "anvil", "--once"], env)
    assert done.code == 0, done.err
    served = start_serve(env, tmp_path_factory.mktemp("serve") / "serve.log")
    head = int(anvil_module.rpc().call("eth_blockNumber"), 16)
    try:
        yield Setup(served, url, head)
    finally:
        served.stop()
        asyncio.run(drop_database(database_admin_url, url))


def _swaps(setup: Setup, where: str = "true", *args: Any) -> list[asyncpg.Record]:
    return _fetch(setup.database_url, f"SELECT * FROM chaindata.{SWAP} WHERE {where}"
                  " ORDER BY chain_id, block_number, log_index", *args)


def _as_api(r: asyncpg.Record) -> dict[str, Any]:
    """A row as contract 3's API forms say it comes back."""
    out: dict[str, Any] = {}
    for k, v in r.items():
        if isinstance(v, bytes):
            out[k] = "0x" + v.hex()
        elif k in ("tx_index", "log_index"):
            out[k] = v
        elif k == "block_time":
            out[k] = v.strftime("%Y-%m-%dT%H:%M:%SZ")
        else:  # bigint and numeric: decimal strings (asyncpg's Decimal may print 1.55E+20)
            out[k] = str(int(v))
    return out


def test_chains_and_every_answer_say_the_blocks_read_at(setup: Setup):
    got = setup.served.graphql("{ chains { name chain_id head safe indexed lag finality_depth } }")
    assert got.status == 200, got.body
    (chain,) = got.body["data"]["chains"]
    assert chain == {"name": "anvil", "chain_id": "31337", "head": str(setup.head),
                     "safe": str(setup.head), "indexed": str(setup.head), "lag": "0",
                     "finality_depth": 0}
    read_at = got.body["extensions"]["read_at"]
    assert read_at["chains"] == [{"chain": "anvil", "chain_id": 31337, "head": setup.head,
                                  "safe": setup.head, "indexed": setup.head}]
    got = setup.served.data(f"{{ s: {SWAP}(first: 1) {{ next }} }}")
    page = setup.served.graphql(f"{{ s: {SWAP}(first: 1) {{ next }} }}").body
    assert page["extensions"]["read_at"]["fields"] == {
        "s": [{"chain_id": 31337, "indexed": setup.head, "safe": setup.head, "finalized": False}]}
    assert got["s"]["next"] is not None


@pytest.mark.parametrize("order", ["block_number_asc", "block_number_desc"])
def test_pages_return_every_row_exactly_once_in_order(setup: Setup, order: str):
    expected = [_as_api(r) for r in _swaps(setup)]
    assert len(expected) > 20, "too few swaps for pages to prove anything"
    if order == "block_number_desc":
        expected.reverse()
    got: list[dict[str, Any]] = []
    after = None
    pages = 0
    while True:
        data = setup.served.data(
            f"query($after: Cursor) {{ {SWAP}(first: 7, order_by: {order}, after: $after) "
            f"{{ items {{ {SWAP_FIELDS} }} next }} }}", {"after": after})[SWAP]
        got += data["items"]
        pages += 1
        after = data["next"]
        if after is None:
            break
        assert len(data["items"]) == 7
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a == b, (i, {k: (a.get(k), b.get(k)) for k in b if a.get(k) != b.get(k)})
    assert pages == -(-len(expected) // 7)


def test_the_latest_swaps_of_a_pair_are_those_of_postgres_whatever_the_case_of_the_address(
        setup: Setup):
    pair = _fetch(setup.database_url, f"SELECT address, count(*) FROM chaindata.{SWAP} GROUP BY 1"
                  " ORDER BY 2 DESC LIMIT 1")[0]["address"]
    expected = [_as_api(r) for r in reversed(_swaps(setup, "address = $1", pair))][:20]
    for spelled in ("0x" + pair.hex(), "0x" + pair.hex().upper()):
        data = setup.served.data(
            f"query($p: Bytes) {{ {SWAP}(where: {{address: $p}}, order_by: block_number_desc, "
            f"first: 20) {{ items {{ {SWAP_FIELDS} }} }} }}", {"p": spelled})
        assert data[SWAP]["items"] == expected


def test_a_block_window_with_aliases_fragments_and_typename(setup: Setup):
    rows = _swaps(setup)
    lo, hi = rows[len(rows) // 4]["block_number"], rows[3 * len(rows) // 4]["block_number"]
    expected = [(r["block_number"], r["log_index"]) for r in rows if lo <= r["block_number"] < hi]
    data = setup.served.data(
        f"query {{ w: {SWAP}(where: {{block_number_gte: \"{lo}\", block_number_lt: {hi}}}, "
        f"first: 1000) {{ items {{ ...K t: __typename }} }} }} "
        f"fragment K on {SWAP} {{ n: block_number log_index }}")
    got = data["w"]["items"]
    assert [(int(i["n"]), i["log_index"]) for i in got] == expected
    assert {i["t"] for i in got} == {SWAP}


def test_get_serves_queries_and_the_graphql_response_media_type(setup: Setup):
    from urllib.parse import quote

    got = setup.served.get("/graphql?query=" + quote("{ chains { name } }"))
    assert got.status == 200 and got.body["data"]["chains"] == [{"name": "anvil"}]
    assert got.headers["Content-Type"].startswith("application/json")
    got = setup.served.graphql("{ chains { name } }", Accept="application/graphql-response+json")
    assert got.headers["Content-Type"].startswith("application/graphql-response+json")


@pytest.mark.parametrize(("query", "variables", "status", "says"), [
    ("{ chains { name ", {}, 400, "Syntax Error"),
    ("{ nothing_here { x } }", {}, 400, "Cannot query field"),
    (f"{{ {SWAP}(first: 2000) {{ next }} }}", {}, 400, "first is 2000"),
    (f"query($n: Int) {{ {SWAP}(first: $n) {{ next }} }}", {"n": 5000}, 400, "first is 5000"),
    (f"query($n: Int) {{ {SWAP}(first: $n) {{ next }} }}", {"n": "x"}, 400, "Int cannot"),
    (f"{{ {SWAP}(after: \"nonsense\") {{ next }} }}", {}, 400, "not a cursor"),
    (f"{{ {SWAP}(where: {{address: \"0x12345\"}}) {{ next }} }}", {}, 400, "even number"),
    (f"{{ {SWAP}(where: {{amount0_in_gt: null}}) {{ next }} }}", {}, 400, "null cannot"),
    ("{ " + " ".join(f"a{i}: {SWAP}(first: 1000) {{ next }}" for i in range(11)) + " }", {},
     400, "costs"),
    ("{ __schema { types { fields { type " + "{ ofType " * 12 + "{ name }" + " }" * 16,
     {}, 400, "deep"),
    (f"subscription {{ {SWAP} {{ kind }} }}", {}, 400, "WebSocket"),
])
def test_a_query_that_cannot_be_answered_is_a_4xx_error_saying_why(
        setup: Setup, query: str, variables: dict[str, Any], status: int, says: str):
    got = setup.served.graphql(query, variables)
    assert got.status == status, got.body
    assert "data" not in got.body or got.body["data"] is None
    messages = " ".join(e["message"] for e in got.body["errors"])
    assert says in messages, messages


def test_an_answer_cut_at_a_cursor_of_the_other_order_is_refused(setup: Setup):
    nxt = setup.served.data(f"{{ {SWAP}(first: 1) {{ next }} }}")[SWAP]["next"]
    got = setup.served.graphql(f"query($a: Cursor) {{ {SWAP}(first: 1, after: $a, "
                               f"order_by: block_number_desc) {{ next }} }}", {"a": nxt})
    assert got.status == 400 and got.body["data"] is None
    assert "other order_by" in got.body["errors"][0]["message"]
    assert got.body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_malformed_requests_are_refused_with_their_status(setup: Setup):
    s = setup.served
    assert s.post("/graphql", b"{not json").status == 400
    assert s.post("/graphql", [1, 2]).status == 400
    assert s.post("/graphql", {"query": "{ chains { name } }"},
                  headers={"Content-Type": "text/plain"}).status == 415
    assert s.post("/graphql", {"query": "{ chains { name } }", "variables": [1]}).status == 400
    big = s.post("/graphql", {"query": "{ chains { name } }", "pad": "x" * 300_000})
    assert big.status == 413


def test_the_schema_is_introspectable_and_names_fields_as_the_tables(setup: Setup):
    data = setup.served.data("{ __schema { queryType { fields { name } } } __type(name: "
                             f"\"{SWAP}_Where\") {{ inputFields {{ name }} }} }}")
    fields = {f["name"] for f in data["__schema"]["queryType"]["fields"]}
    tables = {r["table_name"] for r in _fetch(setup.database_url,
                                              "SELECT table_name FROM indexer.event_tables")}
    assert fields == tables | {"chains"}
    where = {f["name"] for f in data["__type"]["inputFields"]}
    assert {"address", "address_gt", "address_gte", "address_lt", "address_lte",
            "address_in", "amount0_in_in"} <= where


def test_requests_are_counted_per_operation(setup: Setup):
    setup.served.data(f"{{ {SWAP}(first: 1) {{ next }} }}")
    text = setup.served.get("/metrics").body
    assert f'indexer_api_requests_total{{endpoint="graphql",operation="{SWAP}",status="200"}}' \
        in text
    assert f'indexer_api_request_duration_seconds_count{{endpoint="graphql",operation="{SWAP}"}}'\
        in text
    assert 'status="400"' in text  # the refusals above, or this module's first requests


def test_a_table_made_after_the_start_is_served_without_a_restart(
        setup: Setup, anvil_module: Anvil, database_admin_url: str, tmp_path: Path):
    # `setup` made the module's chain (the demo and its traffic); this test indexes it anew
    url = asyncio.run(fresh_database(database_admin_url))
    try:
        env = env_for(url, anvil_module.url)
        assert indexer(["migrate"], env).code == 0
        served = start_serve(env, tmp_path / "serve.log")
        assert SWAP not in str(served.data("{ __schema { queryType { fields { name } } } }"))
        assert indexer(["run", "--chain", "anvil", "--once"], env).code == 0
        head = int(anvil_module.rpc().call("eth_blockNumber"), 16)
        deadline = 100  # the table appears at a poll, its rows when they are all indexed
        while deadline and (SWAP not in str(served.data(
                "{ __schema { queryType { fields { name } } } }")) or served.data(
                "{ chains { indexed } }")["chains"] != [{"indexed": str(head)}]):
            deadline -= 1
            asyncio.run(asyncio.sleep(0.1))
        got = served.data(f"{{ {SWAP}(first: 1000) {{ items {{ log_index }} }} }}")
        rows = _fetch(url, f"SELECT count(*) FROM chaindata.{SWAP}")[0]["count"]
        assert rows > 0 and len(got[SWAP]["items"]) == rows
        served.stop()
    finally:
        asyncio.run(drop_database(database_admin_url, url))


def test_server_sent_events_carry_an_answer_then_complete(setup: Setup):
    import urllib.request

    req = urllib.request.Request(
        setup.served.url + "/graphql", method="POST",
        data=b'{"query": "{ chains { name indexed } }"}',
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        text = resp.read().decode()
    events = [e for e in text.split("\n\n") if e.strip()]
    assert events[0].startswith("event: next\ndata: ")
    assert f'"chains":[{{"name":"anvil","indexed":"{setup.head}"}}]' in events[0]
    assert events[-1] == "event: complete\ndata:"
    bad = setup.served.post("/graphql", {"query": "subscription { nope }"},
                            headers={"Accept": "text/event-stream"})
    assert bad.status == 400 and bad.body["errors"]  # refused before any stream starts


def test_with_its_chain_file_serve_takes_the_head_from_the_node(setup: Setup, anvil_module: Anvil,
                                                                tmp_path: Path):
    # runs last in this module: it mines blocks nothing indexes
    env = env_for(setup.database_url, anvil_module.url)
    served = start_serve(env, tmp_path / "serve.log", ["--chain", "anvil"])
    try:
        for _ in range(3):
            anvil_module.rpc().call("evm_mine")
        node = int(anvil_module.rpc().call("eth_blockNumber"), 16)
        deadline = time.monotonic() + 20  # the node is asked once a block time (1 s)
        while True:
            (c,) = served.data("{ chains { head safe indexed lag } }")["chains"]
            if c["head"] == str(node) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert c == {"head": str(node), "safe": str(node), "indexed": str(setup.head),
                     "lag": str(node - setup.head)}
    finally:
        served.stop()
