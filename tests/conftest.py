"""Shared fixtures: real Postgres, Redis and anvil (see tests/support/services.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.cli import STARTED, kill_started
from tests.support.contracts import Deployed, Deployer
from tests.support.services import (
    Anvil,
    database_url_for_tests,
    drop_database,
    fresh_database,
    redis_url_for_tests,
)

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _no_indexer_outlives_its_test() -> Iterator[None]:
    """Indexers a test starts die with it (those of module fixtures, started before, live on)."""
    before = len(STARTED)
    yield
    kill_started(before)


@pytest.fixture(autouse=True, scope="session")
def _no_indexer_outlives_the_session() -> Iterator[None]:
    yield
    kill_started()


@pytest.fixture(scope="session")
def database_admin_url() -> str:
    """A Postgres URL in which tests may create and drop databases."""
    return database_url_for_tests()


@pytest.fixture
async def database_url(database_admin_url: str) -> AsyncIterator[str]:
    """A fresh, empty database for one test, dropped afterwards (open connections included)."""
    url = await fresh_database(database_admin_url)
    try:
        yield url
    finally:
        await drop_database(database_admin_url, url)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = redis_url_for_tests()
    if url is None:
        pytest.skip(
            "no Redis: set TEST_REDIS_URL, run one on 127.0.0.1:6379 or install redis-server"
        )
    return url


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    """A fresh anvil (chain id 31337, automine) for one test."""
    with Anvil() as node:
        yield node


@pytest.fixture(scope="module")
def anvil_module() -> Iterator[Anvil]:
    """One anvil shared by the tests of a module."""
    with Anvil() as node:
        yield node


@pytest.fixture
def deployed(anvil: Anvil) -> Iterator[Deployed]:
    """The demo system (WETH9, UniswapV2 factory and router, two TestTokens) at fixed addresses
    on a fresh anvil."""
    system = Deployer(anvil.url).deploy()
    try:
        yield system
    finally:
        system.rpc.close()


@pytest.fixture(scope="module")
def deployed_module(anvil_module: Anvil) -> Iterator[Deployed]:
    """The demo system on the module's shared anvil."""
    system = Deployer(anvil_module.url).deploy()
    try:
        yield system
    finally:
        system.rpc.close()
