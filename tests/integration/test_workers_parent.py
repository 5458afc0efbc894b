"""`indexer run --workers N`: the workers do not outlive their parent. When the parent dies
without a chance to stop them (SIGKILL, the OOM killer), each worker gets SIGTERM and stops
cleanly instead of indexing on as an orphan."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil

from tests.support.cli import env_for, start_indexer, wait_for, write_chain
from tests.support.contracts import Deployed


def test_workers_stop_when_their_parent_is_killed(deployed: Deployed, database_url: str,
                                                  tmp_path: Path):
    chain = write_chain(tmp_path / "anvil.yaml")
    log = tmp_path / "run.log"
    parent = start_indexer(["run", "--chain", str(chain), "--workers", "2"],
                           env_for(database_url, deployed.url), log=log)
    workers = wait_for(lambda: [c for c in psutil.Process(parent.pid).children()
                                if "--worker-id" in " ".join(c.cmdline())]
                       if len(psutil.Process(parent.pid).children()) >= 2 else None, timeout=60)
    assert len(workers) == 2
    wait_for(lambda: log.read_text().count("metrics on ") >= 2, timeout=60)  # both running
    os.kill(parent.pid, signal.SIGKILL)  # the parent alone: no chance to stop its workers
    parent.wait()
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == [], f"workers left running as orphans: {[p.pid for p in alive]}"
    # Each stopped as on SIGTERM: its unit in flight rolled back, the committed ranges kept.
    assert log.read_text().count("stopped: committed ranges are kept") == 2
