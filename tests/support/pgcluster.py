"""A Postgres server of a test's own, to stop, restart and disturb, and PgBouncer in front of
a server: real processes on free ports of 127.0.0.1, gone with the test.

Both refuse to run as root, so as root they run as the ``postgres`` system user (Debian's
packages create it), else as ``nobody``. The binaries: ``PG_BIN`` (a folder holding initdb,
pg_ctl and postgres), else the newest ``/usr/lib/postgresql/*/bin``, else those of the
``pgserver`` wheel; ``pgbouncer`` from PATH or ``/usr/sbin`` (Debian's package ``pgbouncer``,
installed by ``scripts/setup-pgbouncer``).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.services import ServiceError, free_port


def _bin_dir() -> Path | None:
    env = os.environ.get("PG_BIN")
    if env:
        return Path(env)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver._commands import POSTGRES_BIN_PATH
        return Path(POSTGRES_BIN_PATH)
    except ImportError:
        return None


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").is_file() else None)


def _user() -> tuple[int, int] | None:
    """(uid, gid) to run the servers as: None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise ServiceError("running as root and there is no 'postgres' or 'nobody' user")


def _as_user(ids: tuple[int, int] | None) -> Callable[[], None] | None:
    if ids is None:
        return None
    uid, gid = ids

    def drop() -> None:
        os.setgid(gid)
        os.setgroups([])
        os.setuid(uid)

    return drop


def _own(path: Path, ids: tuple[int, int] | None) -> None:
    if ids is not None:
        os.chown(path, *ids)


class PgCluster:
    """``initdb`` in a temp dir, ``pg_ctl start`` on a free port (trust auth, user postgres).
    ``stop``/``start`` for an outage, ``terminate`` for killed backends."""

    def __init__(self) -> None:
        bindir = _bin_dir()
        if bindir is None or not (bindir / "pg_ctl").exists():
            raise ServiceError("no Postgres binaries (initdb, pg_ctl): set PG_BIN")
        self.bin = bindir
        self.ids = _user()
        self.root = Path(tempfile.mkdtemp(prefix="indexer-pgcluster-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.port = free_port()
        self.log = self.root / "server.log"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True,
                              text=True, timeout=timeout, preexec_fn=_as_user(self.ids),
                              stdin=subprocess.DEVNULL)

    def init(self) -> PgCluster:
        _own(self.root, self.ids)
        self.sockets.mkdir()
        _own(self.sockets, self.ids)
        res = self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync")
        if res.returncode != 0:
            raise ServiceError(f"initdb failed: {res.stderr[-2000:]}")
        return self.start()

    def start(self) -> PgCluster:
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sockets} -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        res = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w",
                        "-t", "60", "start")
        if res.returncode != 0:
            raise ServiceError(f"pg_ctl start failed: {res.stderr[-2000:]}{self.tail()}")
        return self

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE``: ``fast`` ends every session (their transactions roll
        back), ``immediate`` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status").returncode == 0

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text()[-chars:] if self.log.exists() else ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def terminate(self, database: str, *, except_pid: int | None = None) -> int:
        """pg_terminate_backend every session of ``database``; how many."""
        async def go() -> int:
            import asyncpg

            conn = await asyncpg.connect(self.url(), timeout=5)
            try:
                return int(await conn.fetchval(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM"
                    " pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    database))
            finally:
                await conn.close()

        return asyncio.run(go())

    def destroy(self) -> None:
        if self.data.exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PgBouncer:
    """PgBouncer in transaction pooling mode on a free port, every database name of
    ``server_port`` behind it, with the setting most installations have
    (``ignore_startup_parameters = extra_float_digits``)."""

    def __init__(self, server_port: int, *, pool_size: int = 10) -> None:
        binary = pgbouncer_binary()
        if binary is None:
            raise ServiceError("pgbouncer not installed (scripts/setup-pgbouncer installs it)")
        self.binary = binary
        self.ids = _user()
        self.root = Path(tempfile.mkdtemp(prefix="indexer-pgbouncer-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.ini = self.root / "pgbouncer.ini"
        self.log = self.root / "pgbouncer.log"
        self.ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={server_port} user=postgres\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = any\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.log}\n"
        )
        _own(self.root, self.ids)
        _own(self.ini, self.ids)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        self.proc = subprocess.Popen([self.binary, str(self.ini)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=_as_user(self.ids))
        deadline = time.monotonic() + 15
        while "listening on" not in (self.log.read_text() if self.log.exists() else ""):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(f"pgbouncer did not start: {self.tail()}")
            time.sleep(0.05)
        return self

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text()[-chars:] if self.log.exists() else ""

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)
