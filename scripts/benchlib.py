"""What the benchmark scripts share: one timed `indexer run --once` into a fresh database, and
reading its summary."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.services import drop_database, fresh_database  # noqa: E402

EVENTS = re.compile(r"; ([\d,]+) events in")


def timed_run(chain: Path, rpc_url: str, admin_url: str, args: Sequence[str] = (),
              env: Mapping[str, str] | None = None) -> tuple[str, float]:
    """Run ``indexer run --chain CHAIN --once ARGS`` into a fresh database (dropped after);
    its stderr and wall seconds. Exits with the error when the run fails."""
    url = asyncio.run(fresh_database(admin_url, prefix="bench"))
    full_env = dict(os.environ, DATABASE_URL=url, ANVIL_RPC_URL=rpc_url, INDEXER_METRICS_PORT="0",
                    **(env or {}))
    cmd = [sys.executable, "-m", "indexer", "run", "--chain", str(chain), "--once", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    asyncio.run(drop_database(admin_url, url))
    if proc.returncode != 0:
        raise SystemExit(f"indexer failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stderr, wall


def events_in(stderr: str) -> int:
    """Events committed, summed over the summaries of every worker."""
    return sum(int(m.replace(",", "")) for m in EVENTS.findall(stderr))


# ---------------------------------------------------------------------- CPU time by process


TICK = os.sysconf("SC_CLK_TCK")


PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_times(pid: int | str) -> tuple[int, float, float, int] | None:
    """(ppid, own CPU seconds, CPU seconds of reaped children, resident bytes) of a process from
    ``/proc/<pid>/stat`` (utime+stime, cutime+cstime; all threads), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK,
            (int(fields[13]) + int(fields[14])) / TICK, int(fields[21]) * PAGE)


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def backend_database(title: str) -> str | None:
    """The database a Postgres child process serves, from its process title
    ("postgres: [cluster:] user db host(port) state", "postgres: [cluster:] autovacuum worker
    db"); "" for the server's own processes (checkpointer, WAL writer...); None while the title
    is not set yet (a child just forked still shows the postmaster's command line) or not
    complete (before authentication)."""
    if not title.startswith("postgres: "):
        return None
    words = title[len("postgres: "):].split()
    if words and words[0].endswith(":"):  # cluster_name, e.g. "15/main:"
        words = words[1:]
    if words[:2] == ["autovacuum", "worker"]:
        return words[2] if len(words) > 2 else None
    if len(words) >= 3 and ("(" in words[2] or words[2] == "[local]"):
        return words[1]
    if any("(" in w or w == "[local]" for w in words):
        return None  # a client backend still starting up
    return ""


class CpuMeter:
    """CPU seconds of the processes around one measured command, read from ``/proc/<pid>/stat``.

    - ``client``: the command and every process it starts (the indexer and its ``--workers``
      children, or the plain pipeline's processes). Exact: the growth of this process's
      cutime+cstime over the run. The command is the only child reaped meanwhile, and a parent
      that waits for its children adds theirs to its own cutime, so the tree is counted whole.
      ``client_children`` is the part of the processes under the command, from samples of
      each one's utime+stime (the last sample before it exited: a lower bound);
      ``peak_rss_mb`` the largest resident size one of them had in a sample.
    - ``anvil``: the growth of the node's utime+stime (all its threads). Exact.
    - ``postgres``: the backends of the run's own database (found among the postmaster's
      children by their process title, which names the database; autovacuum workers on it
      too), each counted from 0 (they start during the run) to its last sample. A backend that
      exits between samples loses at most one sampling interval of CPU; they exit idle at the
      end, after their commit.
    - ``pg_shared``: the cluster's own processes (postmaster, checkpointer, background writer,
      WAL writer...), growth over the run. They also serve any other database of the server.
    """

    def __init__(self, *, anvil_pid: int | None, postmaster_pid: int | None,
                 database: str | None, interval: float = 0.05) -> None:
        self.anvil_pid = anvil_pid
        self.postmaster_pid = postmaster_pid
        self.database = database
        self.interval = interval
        self.root: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[int, float] = {}   # pid -> last own CPU seconds (descendants)
        self._rss = 0
        self._backends: dict[int, float] = {}
        self._other_pg: set[int] = set()
        self._shared0: dict[int, float] = {}
        self._shared1: dict[int, float] = {}

    def _shared_pids(self) -> list[int]:
        if self.postmaster_pid is None:
            return []
        out = [self.postmaster_pid]
        for pid in children_of(self.postmaster_pid):
            if backend_database(cmdline(pid)) == "" and "worker" not in cmdline(pid):
                out.append(pid)
        return out

    def _own(self, pids: list[int]) -> dict[int, float]:
        out = {}
        for pid in pids:
            t = proc_times(pid)
            if t is not None:
                out[pid] = t[1]
        return out

    def start(self, root: int) -> None:
        t = proc_times("self")
        assert t is not None
        self._self0 = t[2]
        self._own0 = t[1]
        self.root = root
        a = proc_times(self.anvil_pid) if self.anvil_pid else None
        self._anvil0 = a[1] if a else 0.0
        self._shared0 = self._own(self._shared_pids())
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        stack = [self.root] if self.root else []
        while stack:
            pid = stack.pop()
            t = proc_times(pid)
            if t is not None:
                if pid != self.root:
                    self._seen[pid] = t[1]
                self._rss = max(self._rss, t[3])
                stack += children_of(pid)
        if self.postmaster_pid is None or not self.database:
            return
        for pid in children_of(self.postmaster_pid):
            if pid in self._other_pg:
                continue
            if pid not in self._backends:
                db = backend_database(cmdline(pid))
                if db is None:  # just forked: no title of its own yet; look again next time
                    continue
                if db != self.database:
                    self._other_pg.add(pid)
                    continue
            t = proc_times(pid)
            if t is not None:
                self._backends[pid] = t[1]

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self) -> dict[str, float]:
        """Stop sampling once the command has been waited for; CPU seconds by group."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        t = proc_times("self")
        assert t is not None
        a = proc_times(self.anvil_pid) if self.anvil_pid else None
        shared1 = self._own(list(self._shared0))
        return {
            "client": t[2] - self._self0,
            "client_children": sum(self._seen.values()),
            "peak_rss_mb": self._rss / 2**20,
            "anvil": (a[1] - self._anvil0) if a else float("nan"),
            "postgres": sum(self._backends.values()),
            "postgres_backends": len(self._backends),
            "pg_shared": sum(shared1[p] - v for p, v in self._shared0.items() if p in shared1),
            "bench_itself": t[1] - self._own0,  # this process (the sampling thread included)
        }


def postmaster_pid(admin_url: str) -> int | None:
    """The pid of the Postgres server behind ``admin_url`` when it runs on this machine (the
    parent of a backend), else None (then no Postgres CPU is reported)."""
    import asyncpg

    async def parent_of_backend() -> int | None:
        conn = await asyncpg.connect(admin_url)
        try:  # read while the backend lives
            t = proc_times(int(await conn.fetchval("SELECT pg_backend_pid()")))
        finally:
            await conn.close()
        return None if t is None else t[0]

    pid = asyncio.run(parent_of_backend())
    return pid if pid is not None and "postgres" in cmdline(pid) else None


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the bench dies (Linux PR_SET_PDEATHSIG), so that a
    stopped bench leaves no runner behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class Measured:
    """One measured command: wall seconds, CPU seconds by group, its output."""

    wall: float
    cpu: dict[str, float]
    stdout: str
    stderr: str


def run_measured(cmd: Sequence[str], *, env: Mapping[str, str], cwd: Path, meter: CpuMeter,
                 what: str, timeout: float = 1800,
                 until: Callable[[str], bool] | None = None) -> Measured:
    """Run ``cmd`` under ``meter`` to its end, or, with ``until``, until that returns true of
    the command's output so far (polled every 0.1 s; the wall time stops there, then the command gets SIGTERM and is waited
    for, so its CPU is counted whole). Exits with a clear message when the command fails, does
    not end in ``timeout`` seconds, or ends before ``until`` holds."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=dict(env), cwd=cwd, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=die_with_parent)
        meter.start(proc.pid)
        wall = None
        try:
            if until is None:
                code = proc.wait(timeout)
            else:
                def output() -> str:
                    return b"".join(os.pread(f.fileno(), os.fstat(f.fileno()).st_size, 0)
                                    for f in (out, err)).decode(errors="replace")

                while not until(output()):
                    if proc.poll() is not None:
                        break
                    if time.perf_counter() - t0 > timeout:
                        raise subprocess.TimeoutExpired(cmd, timeout)
                    time.sleep(0.1)
                else:
                    wall = time.perf_counter() - t0
                    proc.terminate()
                code = proc.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            meter.stop()
            raise SystemExit(f"{what}: no end after {timeout:.0f}s (killed)") from None
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if wall is None:
            wall = time.perf_counter() - t0
            if until is not None:
                meter.stop()
                out.seek(0)
                err.seek(0)
                raise SystemExit(f"{what} ended (exit {code}) before it was done:\n"
                                 f"{err.read().decode(errors='replace')[-3000:]}\n"
                                 f"{out.read().decode(errors='replace')[-3000:]}")
            failed = code != 0
        else:
            failed = code not in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
        cpu = meter.stop()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if failed:
        raise SystemExit(f"{what} failed (exit {code}):\n{stderr[-3000:]}\n{stdout[-1000:]}")
    return Measured(wall, cpu, stdout, stderr)


# ------------------------------------------------------------------------------- databases


async def table_counts(url: str, schema: str) -> dict[str, int]:
    """Rows of every top-level table of ``schema`` (partitioned parents counted whole)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        names = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "ORDER BY 1", schema)
        out = {}
        for r in names:
            q = '"' + schema.replace('"', '""') + '"."' + r["relname"].replace('"', '""') + '"'
            out[r["relname"]] = int(await conn.fetchval(f"SELECT count(*) FROM {q}"))
        return out
    finally:
        await conn.close()


async def database_mib(url: str) -> float:
    """pg_database_size of the database behind ``url``, in MiB."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT pg_database_size(current_database())")) / 2**20
    finally:
        await conn.close()


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
