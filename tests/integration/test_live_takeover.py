"""Two hosts follow one chain through Redis: one leads the live tail; when it dies (SIGKILL),
the other takes over and the tables stay equal to the chain."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

from tests.integration.test_end_to_end import compare
from tests.support.cli import env_for, start_indexer, stop, wait_for, write_chain
from tests.support.contracts import Deployed
from tests.support.reorg import caught_up, fetch
from tests.support.traffic import run_traffic

LEADS = "live tail: following the head"


@dataclass
class Hosts:
    procs: list[Popen]
    logs: list[Path]

    def leaders(self) -> list[int]:
        return [i for i, log in enumerate(self.logs)
                if log.exists() and LEADS in log.read_text()]

    def kill(self, i: int) -> None:
        os.killpg(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait()


@contextmanager
def two_hosts(env: dict[str, str], tmp_path: Path) -> Iterator[Hosts]:
    """Two `indexer run` processes (host-0 and host-1) following one chain, stopped at the end."""
    chain = write_chain(tmp_path / "anvil.yaml", finality_depth=3)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_indexer(["run", "--chain", str(chain)], {**env, "INDEXER_WORKER": f"host-{i}"},
                           log=log) for i, log in enumerate(logs)]
    try:
        yield Hosts(procs, logs)
    finally:
        for p in procs:
            if p.poll() is None:
                stop(p)


def test_the_other_host_takes_the_live_tail_over_when_the_leader_dies(
    deployed: Deployed, database_url: str, redis_url: str, tmp_path: Path
):
    run_traffic(deployed, rounds=4, seed=31)
    with two_hosts(env_for(database_url, deployed.url, REDIS_URL=redis_url), tmp_path) as hosts:
        logs = hosts.logs
        (leader,) = wait_for(hosts.leaders, timeout=60)
        other = 1 - leader
        wait_for(lambda: caught_up(database_url, deployed.rpc), timeout=60)
        assert LEADS not in logs[other].read_text()  # one leader at a time
        hosts.kill(leader)
        run_traffic(deployed, rounds=2, seed=32, prepare=False, sweep=False)
        wait_for(lambda: LEADS in logs[other].read_text(), timeout=30)
        wait_for(lambda: caught_up(database_url, deployed.rpc), timeout=60)
        deployed.rpc.call("anvil_rollback", 2)  # the new leader repairs reorgs too
        run_traffic(deployed, rounds=1, seed=33, prepare=False, sweep=False)
        wait_for(lambda: caught_up(database_url, deployed.rpc), timeout=60)
        assert "replaced (depth 2)" in logs[other].read_text()
    compare(deployed, database_url)


STANDS_BY = "another process leads; standing by"
LOST = "leadership lost"


def test_without_redis_one_process_leads_the_other_stands_by_and_takes_over(
    deployed: Deployed, database_url: str, tmp_path: Path
):
    """No REDIS_URL: each process has a lease board of its own, so Postgres decides who leads
    (holder, term and expiry in indexer.chains): one follows the head, the other stands by
    without ever committing, and takes over when the leader dies."""
    run_traffic(deployed, rounds=4, seed=34)
    with two_hosts(env_for(database_url, deployed.url), tmp_path) as hosts:
        logs = hosts.logs
        (leader,) = wait_for(hosts.leaders, timeout=60)
        other = 1 - leader
        wait_for(lambda: STANDS_BY in logs[other].read_text(), timeout=30)
        wait_for(lambda: caught_up(database_url, deployed.rpc), timeout=60)
        run_traffic(deployed, rounds=2, seed=35, prepare=False, sweep=False)
        wait_for(lambda: caught_up(database_url, deployed.rpc), timeout=60)
        (row,) = fetch(database_url, "SELECT live_holder, live_fence FROM indexer.chains")
        assert row["live_holder"] == f"host-{leader}"
        live_writers = {r["worker"] for r in fetch(
            database_url, "SELECT DISTINCT worker FROM indexer.ranges WHERE worker LIKE 'live:%'")}
        assert live_writers <= {f"live:host-{leader}"}, live_writers  # nobody else followed
        for log in logs:  # no ping-pong: nobody took it and lost it again
            assert LOST not in log.read_text()
        assert hosts.leaders() == [leader]
        hosts.kill(leader)
        run_traffic(deployed, rounds=2, seed=36, prepare=False, sweep=False)
        wait_for(lambda: LEADS in logs[other].read_text(), timeout=30)
        wait_for(lambda: caught_up(database_url, deployed.rpc), timeout=60)
        (after,) = fetch(database_url, "SELECT live_holder, live_fence FROM indexer.chains")
        assert after["live_holder"] == f"host-{other}"
        assert after["live_fence"] > row["live_fence"]  # a new term: the old one is refused
        deployed.rpc.call("anvil_rollback", 2)  # the new leader repairs reorgs too
        run_traffic(deployed, rounds=1, seed=37, prepare=False, sweep=False)
        wait_for(lambda: caught_up(database_url, deployed.rpc), timeout=60)
        assert "replaced (depth 2)" in logs[other].read_text()
    compare(deployed, database_url)
