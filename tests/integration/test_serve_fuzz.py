"""schemathesis fuzzes the GraphQL endpoint of `indexer serve` over the indexed demo: queries
generated from the schema (every field, argument and input, the custom scalars with valid and
invalid values) never get a 5xx answer, and every answer is a GraphQL response."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.graphql import nodes

from tests.support.cli import env_for, indexer
from tests.support.contracts import Deployed
from tests.support.serve import Served, start_serve
from tests.support.services import Anvil, drop_database, fresh_database
from tests.support.traffic import run_traffic

_hex = st.binary(max_size=40).map(lambda b: "0x" + b.hex())
schemathesis.graphql.scalar("Bytes", st.one_of(_hex, _hex.map(str.upper), st.text(max_size=8))
                            .map(nodes.String))
schemathesis.graphql.scalar("BigInt", st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80).map(lambda n: nodes.String(str(n))),
    st.integers(min_value=-(2**31), max_value=2**31 - 1).map(nodes.Int),
    st.text(max_size=6).map(nodes.String)))
schemathesis.graphql.scalar("Timestamp", st.one_of(
    st.integers(min_value=0, max_value=2**33).map(nodes.Int),
    st.sampled_from(["2024-05-01T12:00:00Z", "2024-05-01", "nonsense"]).map(nodes.String)))
schemathesis.graphql.scalar("JSON", st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(nodes.Int),
    st.text(max_size=6).map(nodes.String), st.booleans().map(nodes.Boolean)))
schemathesis.graphql.scalar("Cursor", st.one_of(
    st.sampled_from(["MTphOjMxMzM3OjEwOjA", "MTpkOjMxMzM3OjEwOjA"]), st.text(max_size=12))
    .map(nodes.String))


@pytest.fixture(scope="module")
def served(anvil_module: Anvil, deployed_module: Deployed, database_admin_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    run_traffic(deployed_module, rounds=20, seed=4)
    url = asyncio.run(fresh_database(database_admin_url))
    env = env_for(url, anvil_module.url)
    done = indexer(["run", "--chain", "anvil", "--once"], env)
    assert done.code == 0, done.err
    s = start_serve(env, tmp_path_factory.mktemp("fuzz") / "serve.log")
    try:
        yield s
    finally:
        s.stop()
        asyncio.run(drop_database(database_admin_url, url))


def test_no_generated_query_gets_a_server_error(served: Served):
    schema = schemathesis.graphql.from_url(served.url + "/graphql")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13  # every table and chains
    strategy = st.one_of(*(op.as_strategy() for op in operations))
    seen: list[int] = []

    @given(case=strategy)
    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        response = case.call()
        seen.append(response.status_code)
        assert response.status_code < 500, (case.body, response.text[:2000])
        body = response.json()
        assert isinstance(body, dict) and ("data" in body or "errors" in body), body
        if response.status_code == 200:
            assert "errors" not in body, body  # an error is never answered as a success
        else:
            assert body.get("errors"), body

    check()
    print("statuses:", sorted(__import__("collections").Counter(seen).items()))
    assert 200 in seen and len(seen) >= 100  # it did ask, and some queries were answered
    assert "Traceback" not in served.output()
