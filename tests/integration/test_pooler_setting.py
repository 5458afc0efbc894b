"""INDEXER_DB_POOLER is obeyed by every command that opens the database, not only by run: with
``yes`` each says it goes through a pooler (no prepared statement kept), with ``no`` none does
(the local server is no pooler, so only the setting can make them say it)."""

from __future__ import annotations

import pytest

from tests.support.cli import env_for, indexer
from tests.support.contracts import Deployed

POOLED = "through a connection pooler"
COMMANDS = {
    "verify": ["verify", "--chain", "anvil"],
    "reindex": ["reindex", "--chain", "anvil", "--contract", "DemoToken"],
    "prune": ["prune", "--chain", "anvil", "--contract", "DemoToken", "--yes"],
    "reset": ["reset", "--chain", "anvil", "--yes"],
    "migrate": ["migrate"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_follows_the_pooler_setting(deployed: Deployed, database_url: str,
                                                  command: str) -> None:
    env = env_for(database_url, deployed.url)
    said = {}
    for setting in ("yes", "no"):
        res = indexer(COMMANDS[command], {**env, "INDEXER_DB_POOLER": setting}, timeout=120)
        assert "Traceback" not in res.err, res.err
        said[setting] = POOLED in res.err
    assert said == {"yes": True, "no": False}, (command, said)
