"""No command ends in a traceback: every error class that can reach the command line becomes one
line (or one line per problem of a chain file) and the exit code of contract 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import env_for, indexer, write_chain
from tests.support.services import free_port

CLOSED = f"127.0.0.1:{free_port()}"  # nothing listens there


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("error: "), err


@pytest.mark.parametrize(("case", "args", "env", "code", "says"), [
    ("unknown chain", ["run", "--chain", "nosuch", "--once"], {}, 2, "unknown chain 'nosuch'"),
    ("bad setting", ["run", "--chain", "anvil", "--once"], {"INDEXER_SCHEMA": "no;schema"}, 2,
     "INDEXER_SCHEMA='no;schema' is not a usable schema name"),
    ("bad number", ["run", "--chain", "anvil", "--once"], {"INDEXER_LEASE_TTL": "soon"}, 2,
     "INDEXER_LEASE_TTL='soon' is not a number"),
    # INDEXER_DB_WAIT=0: give up at the first failure instead of waiting 5 minutes for it
    ("database down", ["run", "--chain", "anvil", "--once"],
     {"DATABASE_URL": f"postgresql://postgres@{CLOSED}/none", "INDEXER_DB_WAIT": "0"}, 1,
     "Postgres unreachable"),
    ("status, database down", ["status"], {"DATABASE_URL": f"postgresql://postgres@{CLOSED}/x",
                                           "INDEXER_DB_WAIT": "0"}, 1, "error: "),
    ("migrate, database down", ["migrate"], {"DATABASE_URL": f"postgresql://postgres@{CLOSED}/x",
                                             "INDEXER_DB_WAIT": "0"}, 1, "error: "),
])
def test_known_errors_are_one_line_and_an_exit_code(database_url: str, case: str, args: list[str],
                                                    env: dict[str, str], code: int, says: str):
    res = indexer(args, dict(env_for(database_url, f"http://{CLOSED}"), **env), timeout=120)
    assert res.code == code, (case, res.err)
    _no_traceback(res.err)
    assert says in res.err


def test_an_unreachable_rpc_is_one_line_and_exit_1(database_url: str, tmp_path: Path):
    chain = write_chain(tmp_path / "anvil.yaml", rpc=[{"url": f"http://{CLOSED}"}])
    res = indexer(["run", "--chain", str(chain), "--once"], env_for(database_url), timeout=180)
    assert res.code == 1, res.err
    _no_traceback(res.err)


def test_no_embedded_postgres_is_one_line_saying_what_to_do(tmp_path: Path):
    """An install without the embedded Postgres (the image) and no DATABASE_URL."""
    code = ("import sys; sys.modules['pgserver'] = None; sys.modules['pgserver._commands'] = None;"
            " from indexer.ops.cli import main; sys.exit(main(['run', '--chain', 'anvil', "
            "'--once']))")
    env = {k: v for k, v in env_for(None).items() if k != "DATABASE_URL"}
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stderr
    _no_traceback(res.stderr)
    assert "set DATABASE_URL" in res.stderr
