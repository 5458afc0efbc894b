"""The embedded Postgres used when ``DATABASE_URL`` is unset: a server from the ``pgserver``
wheel with its data under ``.indexer/pgdata``, left running after the process exits so the
data can be queried; ``indexer db stop`` stops it."""

from __future__ import annotations

import logging
import subprocess
import warnings
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from indexer.settings import Settings

if TYPE_CHECKING:
    from indexer.sink.database import Database

log = logging.getLogger(__name__)

DEFAULT_HOME = Path(".indexer")


class EmbeddedUnavailable(RuntimeError):
    pass


def _bin(name: str) -> Path:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError as e:  # pragma: no cover - depends on the install
        raise EmbeddedUnavailable(
            "DATABASE_URL is not set and the embedded Postgres is not installed: "
            "pip install 'indexer[embedded]' or set DATABASE_URL=postgresql://..."
        ) from e
    return Path(POSTGRES_BIN_PATH) / name


def start(home: Path = DEFAULT_HOME) -> str:
    """Start (or reuse) the embedded server; returns its connection URL."""
    _bin("postgres")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver

    data = (home / "pgdata").resolve()
    data.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data, cleanup_mode=None)
    return str(server.get_uri())


def psql_command(url: str) -> str:
    return f"{_bin('psql')} '{url}'"


def stop(home: Path = DEFAULT_HOME) -> bool:
    data = (home / "pgdata").resolve()
    if not (data / "postmaster.pid").exists():
        return False
    subprocess.run(
        [str(_bin("pg_ctl")), "-D", str(data), "-w", "stop"], check=False,
        capture_output=True, user="pgserver" if _running_as_root() else None,
    )
    return True


def _running_as_root() -> bool:
    import os

    return os.geteuid() == 0


def database_url(settings: Settings) -> str:
    """``DATABASE_URL``, else the embedded server's (started if need be)."""
    if settings.database_url:
        return settings.database_url
    url = start()
    log.info("DATABASE_URL is not set: using the embedded Postgres in %s",
             (DEFAULT_HOME / "pgdata").resolve())
    return url


async def connect(settings: Settings, max_size: int) -> Database:
    """A command's pool on the database in use (``database_url``): through a pooler or not as
    ``INDEXER_DB_POOLER`` says, writing transactions bounded by ``settings.tx_timeout``."""
    from indexer.sink.database import Database

    return await Database.connect(database_url(settings), settings.schema, max_size=max_size,
                                  tx_timeout=settings.tx_timeout, pooler=settings.db_pooler)


def redact_url(url: str) -> str:
    """A database URL without its password."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
