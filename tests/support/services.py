"""Real services for tests, benchmarks and the demo: anvil, Postgres and Redis.

Every helper prefers what the environment names (ANVIL_BIN, TEST_DATABASE_URL, TEST_REDIS_URL),
then a local default server, then starts a throwaway one; none of them mocks anything.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from tests.support.rpc import JsonRpc

REPO_ROOT = Path(__file__).resolve().parents[2]
NPM_MODULES = REPO_ROOT / "scripts" / "npm" / "node_modules"
NPM_ANVIL = NPM_MODULES / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"

LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"

T = TypeVar("T")


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when an event loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the calling thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _die_with_parent() -> None:
    """preexec hook: the child gets SIGTERM when the process that started it dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)


# --------------------------------------------------------------------------------------- anvil


def anvil_binary() -> Path:
    """ANVIL_BIN, else the npm-pinned binary, else `anvil` on PATH."""
    env = os.environ.get("ANVIL_BIN")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ServiceError(f"ANVIL_BIN={env} does not exist")
        return path
    if NPM_ANVIL.is_file():
        return NPM_ANVIL
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise ServiceError(
        f"anvil not found: run scripts/setup (installs it at {NPM_ANVIL}) or set ANVIL_BIN"
    )


class Anvil:
    """A local anvil node on a free port, ready once `eth_chainId` answers.

    Usable as a context manager (sync or async). The process stays in the caller's process group
    unless `new_session` is set, so Ctrl-C in a terminal reaches it too, and it is sent SIGTERM
    if the process that started it dies.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        chain_id: int = 31337,
        block_time: float | None = None,
        accounts: int | None = None,
        gas_limit: int | None = None,
        load_state: str | Path | None = None,
        dump_state: str | Path | None = None,
        extra_args: Sequence[str] = (),
        new_session: bool = False,
        startup_timeout: float = 30.0,
    ) -> None:
        self.port = port or free_port()
        self.host = host
        self.chain_id = chain_id
        self.args = [str(anvil_binary()), "--port", str(self.port), "--chain-id", str(chain_id)]
        if host != "127.0.0.1":
            self.args += ["--host", host]
        if block_time is not None:
            self.args += ["--block-time", _num(block_time)]
        if accounts is not None:
            self.args += ["--accounts", str(accounts)]
        if gas_limit is not None:
            self.args += ["--gas-limit", str(gas_limit)]
        if load_state is not None:
            self.args += ["--load-state", str(load_state)]
        if dump_state is not None:
            self.args += ["--dump-state", str(dump_state)]
        self.args += [*extra_args, "--silent"]
        self.new_session = new_session
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def rpc(self) -> JsonRpc:
        return JsonRpc(self.url)

    def start(self) -> Anvil:
        if self.proc is not None:
            return self
        self._log = tempfile.TemporaryFile()
        main_thread = threading.current_thread() is threading.main_thread()
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=self.new_session,
            # PDEATHSIG fires when the starting *thread* exits: only safe from the main thread.
            preexec_fn=_die_with_parent if main_thread else None,
        )
        deadline = time.monotonic() + self.startup_timeout
        with JsonRpc(self.url, timeout=2.0) as rpc:
            while True:
                if self.proc.poll() is not None:
                    raise ServiceError(
                        f"anvil exited with {self.proc.returncode}: {self._output()}"
                    )
                try:
                    got = int(rpc.call("eth_chainId"), 16)
                except (OSError, RuntimeError):
                    got = None
                if got is not None:
                    if got != self.chain_id:
                        self.stop()
                        raise ServiceError(
                            f"anvil answers chain id {got}, expected {self.chain_id}"
                        )
                    return self
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServiceError(
                        f"anvil did not answer on {self.url} within {self.startup_timeout}s"
                    )
                time.sleep(0.05)

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (anvil writes --dump-state on it), then SIGKILL after `grace` seconds."""
        if self.proc is not None:
            _stop_process(self.proc, grace)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Anvil:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# ------------------------------------------------------------------------------------ postgres

_embedded_pg: Any = None
_database_url: str | None = None


async def _pg_reachable(url: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=2.0)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def _start_embedded_postgres() -> str:
    global _embedded_pg
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        import pgserver

    parent = Path(tempfile.mkdtemp(prefix="indexer-test-pg-"))
    # atexit runs last-registered first: pgserver stops and deletes pgdata, then this runs.
    atexit.register(shutil.rmtree, parent, True)
    pgdata = parent / "pgdata"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _embedded_pg = pgserver.get_server(pgdata, cleanup_mode="delete")
    return str(_embedded_pg.get_uri())


def database_url_for_tests() -> str:
    """An admin URL of a Postgres the tests may create databases in (cached per process).

    TEST_DATABASE_URL, else the local server at 127.0.0.1:5432 (database `test`), else a
    throwaway embedded Postgres (pgserver) under a temp dir, removed at exit.
    """
    global _database_url
    if _database_url is not None:
        return _database_url
    env = os.environ.get("TEST_DATABASE_URL")
    if env:
        _database_url = env
    elif _port_open("127.0.0.1", 5432) and _run_sync(_pg_reachable(LOCAL_DATABASE_URL)):
        _database_url = LOCAL_DATABASE_URL
    else:
        _database_url = _start_embedded_postgres()
    return _database_url


def with_database(url: str, database: str) -> str:
    """`url` pointing at another database (works for host:port and ?host=/socket URLs)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def fresh_database(admin_url: str, prefix: str = "t") -> str:
    """CREATE DATABASE with a unique name; returns its URL (drop it with `drop_database`)."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_url, name)


async def drop_database(admin_url: str, url: str) -> None:
    """DROP DATABASE ... WITH (FORCE): closes connections a test left open."""
    import asyncpg

    name = database_name(url)
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------- redis

_redis_proc: subprocess.Popen[bytes] | None = None
_redis_url: str | None = None


def _redis_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_url_for_tests() -> str | None:
    """TEST_REDIS_URL, else a local Redis on 6379, else a throwaway `redis-server`; None if
    there is no Redis at all (callers skip)."""
    global _redis_proc, _redis_url
    if _redis_url is not None:
        return _redis_url
    env = os.environ.get("TEST_REDIS_URL")
    if env:
        _redis_url = env
        return env
    if _redis_ping("127.0.0.1", 6379):
        _redis_url = LOCAL_REDIS_URL
        return _redis_url
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    _redis_proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent
        if threading.current_thread() is threading.main_thread()
        else None,
    )
    atexit.register(_stop_process, _redis_proc)
    deadline = time.monotonic() + 10
    while not _redis_ping("127.0.0.1", port):
        if _redis_proc.poll() is not None or time.monotonic() > deadline:
            raise ServiceError(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    _redis_url = f"redis://127.0.0.1:{port}/0"
    return _redis_url
