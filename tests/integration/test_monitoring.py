"""A real Prometheus scraping a running `indexer run` against anvil with the demo system: every
dashboard panel's query returns data, /readyz and /status answer, and the lag alert goes
pending, then firing, while the indexer is stopped and anvil keeps mining, and resolves once a
restarted indexer has caught up.

Prometheus scrapes and evaluates every second. The rules are the shipped monitoring/alerts.yml
with shorter `for:` durations and a lower lag floor (test_rules); the shipped rules themselves
are checked by `promtool test rules` (tests/unit/test_deploy_manifests.py)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from tests.support.cli import REPO, env_for, start_indexer, stop, wait_for, write_chain
from tests.support.contracts import Deployed, Deployer
from tests.support.services import Anvil, drop_database, free_port, fresh_database
from tests.support.traffic import run_traffic

MONITORING = REPO / "monitoring"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))

# Metrics defined in indexer/metrics.py that no code sets yet: a panel reading only these has
# no data to show, and its check is skipped naming them.
NOT_PRODUCED_YET: dict[str, str] = {}
# Series that exist only when something goes wrong; a healthy run has none. (Every labelled
# series of the indexer itself exists from the start, at 0: metrics.open_chain.)
ONLY_ON_TROUBLE = {
    "ALERTS": "appears when an alert is pending or firing",
}


# ------------------------------------------------------------------------------- Prometheus


def test_rules(for_seconds: int = 3, floor_seconds: int = 5, blocks: int = 3) -> str:
    """monitoring/alerts.yml with `for:` durations of a few seconds and the lag threshold
    max(floor_seconds, blocks x block time) instead of max(120 s, 30 x block time)."""
    text = (MONITORING / "alerts.yml").read_text()
    text, n = re.subn(r"\bfor: \d+[smh]\b", f"for: {for_seconds}s", text)
    assert n >= 5
    old = "clamp_min(30 * max by (chain) (last_over_time(chain:indexer_block_time_seconds:estimate[6h])), 120)"
    assert text.count(old) == 1, "the lag threshold rule changed: update test_rules()"
    return text.replace(old, old.replace("30 *", f"{blocks} *").replace(", 120)", f", {floor_seconds})"))


test_rules.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@dataclass
class Prometheus:
    """A real Prometheus (Debian's package) scraping ``targets`` every second."""

    targets: list[str]
    folder: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("prometheus is not installed (scripts/setup-monitoring installs it with apt)")
        (self.folder / "rules.yml").write_text(test_rules())
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": ["rules.yml"],
            "scrape_configs": [{"job_name": "indexer", "static_configs": [{"targets": self.targets}]}],
        }
        (self.folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=open(self.folder / "prometheus.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
        wait_for(lambda: self._ready(), timeout=30)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError((self.folder / "prometheus.log").read_text()[-2000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def label_values(self, metric: str, label: str) -> list[str]:
        """What Grafana's `label_values(metric, label)` variable query lists."""
        return self.api(f"label/{label}/values", **{"match[]": metric})

    def alerts(self, name: str, chain: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"]
                if a["labels"].get("alertname") == name and a["labels"].get("chain") == chain]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def panel_targets() -> list[tuple[str, str, str]]:
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for t in panel["targets"]:
                out.append((path.stem, f"{panel['title']} [{t['refId']}]", t["expr"]))
    return out


def grafana_expr(expr: str, chain: str, rate_interval: str = "30s") -> str:
    """A panel's PromQL as Grafana sends it with the `chain` variable set."""
    return expr.replace("$__rate_interval", rate_interval).replace("$chain", chain)


def metrics_url(port: int, path: str = "metrics") -> str:
    return f"http://127.0.0.1:{port}/{path}"


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# ------------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    anvil: Anvil
    deployed: Deployed
    database_url: str
    prometheus: Prometheus
    port: int
    env: dict[str, str]
    log: Path
    chain: Path
    proc: subprocess.Popen[bytes] | None = None

    def start_indexer(self) -> None:
        self.proc = start_indexer(["run", "--chain", str(self.chain)], self.env, log=self.log)
        wait_for(lambda: http_get(metrics_url(self.port, "healthz"))[0] == 200
                 if self._alive() else False, timeout=60)

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(self.log.read_text()[-3000:])
        try:
            return http_get(metrics_url(self.port, "healthz"))[0] == 200
        except OSError:
            return False

    def stop_indexer(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGINT)
            self.proc = None


@pytest.fixture(scope="module")
def stack(database_admin_url: str) -> Iterator[Stack]:
    folder = Path(tempfile.mkdtemp(prefix="indexer-monitoring-"))
    with Anvil() as node:
        deployed = Deployer(node.url).deploy()
        run_traffic(deployed, rounds=12, seed=3)  # automine: quick; two pairs created
        url = asyncio.run(fresh_database(database_admin_url))
        port = free_port()
        prometheus = Prometheus([f"127.0.0.1:{port}"], folder).start()
        env = env_for(url, node.url, INDEXER_METRICS_PORT=str(port))
        # A finality depth, so that the live tail runs and its metrics exist.
        chain = write_chain(folder / "anvil.yaml", finality_depth=2)
        s = Stack(node, deployed, url, prometheus, port, env, folder / "indexer.log", chain)
        try:
            s.start_indexer()
            # traffic while the indexer follows the head: counters move between scrapes
            run_traffic(deployed, rounds=6, seed=4, prepare=False)
            head = deployed.rpc.call("eth_getBlockByNumber", "latest", False)
            wait_for(lambda: asyncio.run(_live_hash(url, int(head["number"], 16))) == head["hash"],
                     timeout=60)
            deployed.rpc.call("anvil_rollback", 1)  # a reorg of one block for the reorg panels
            run_traffic(deployed, rounds=2, seed=5, prepare=False, sweep=False)
            deployed.rpc.call("evm_setIntervalMining", 1)  # from now on a block every second
            yield s
        finally:
            s.stop_indexer()
            prometheus.stop()
            deployed.rpc.close()
            asyncio.run(drop_database(database_admin_url, url))
            shutil.rmtree(folder, ignore_errors=True)


async def _live_hash(url: str, number: int) -> str | None:
    """The hash the live tail stored for block ``number``."""
    conn = await asyncpg.connect(url)
    try:
        got = await conn.fetchval(
            "SELECT hash FROM indexer.blocks WHERE chain_id = 31337 AND number = $1 AND live", number)
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()
    return None if got is None else "0x" + bytes(got).hex()


def _wait_for_data(prom: Prometheus, expr: str, timeout: float = 45) -> list[dict[str, Any]]:
    try:
        return wait_for(lambda: prom.query(expr), timeout=timeout, interval=1)
    except TimeoutError:
        return []


@pytest.mark.parametrize(("board", "panel", "expr"), panel_targets(),
                         ids=[f"{b}:{p}" for b, p, _ in panel_targets()])
def test_dashboard_panel_query_returns_data(stack: Stack, board: str, panel: str, expr: str):
    query = grafana_expr(expr, "anvil")
    names = set(re.findall(r"(?<![:\w])(indexer_[a-z0-9_]+|ALERTS)\b", query))
    missing = sorted(n for n in names if n in NOT_PRODUCED_YET or n in ONLY_ON_TROUBLE)
    result = _wait_for_data(stack.prometheus, query, timeout=5 if missing else 45)
    if not result and missing:
        reasons = "; ".join(f"{n}: {NOT_PRODUCED_YET.get(n) or ONLY_ON_TROUBLE[n]}" for n in missing)
        pytest.skip(f"no data expected yet for {', '.join(missing)} ({reasons})")
    assert result, f"{board} / {panel}: no data for {query}"
    for sample in result:
        assert "chain" not in sample["metric"] or sample["metric"]["chain"] == "anvil"


def test_chain_variable_lists_the_chain(stack: Stack):
    assert "anvil" in wait_for(lambda: stack.prometheus.label_values("indexer_chain_info", "chain"))


def test_readyz_and_status_report_the_running_chain(stack: Stack):
    def ready() -> bool:
        return http_get(metrics_url(stack.port, "readyz"))[0] == 200

    wait_for(ready, timeout=60)
    code, text = http_get(metrics_url(stack.port, "status"))
    assert code == 200
    body = json.loads(text)
    (chain,) = body["chains"]
    assert chain["chain"] == "anvil" and chain["chain_id"] == 31337 and chain["ready"] is True
    assert chain["head"] >= chain["indexed"] > 0
    for key in ("lag_blocks", "lag_seconds", "backlog_ranges", "workers"):
        assert key in chain


def _state(prom: Prometheus) -> str | None:
    found = prom.alerts("IndexerLagHigh", "anvil")
    return found[0]["state"] if found else None


def test_lag_alert_pends_fires_while_stopped_and_resolves_after_catching_up(stack: Stack):
    prom = stack.prometheus
    wait_for(lambda: _state(prom) is None, timeout=60, interval=1)  # caught up at the start
    stack.stop_indexer()
    head_at_stop = int(stack.deployed.rpc.call("eth_blockNumber"), 16)
    seen: list[str] = []

    def observe(state: str) -> bool:
        got = _state(prom)
        if got is not None and (not seen or seen[-1] != got):
            seen.append(got)
        return got == state

    wait_for(lambda: observe("firing"), timeout=90, interval=0.5)
    assert seen[0] == "pending", f"states seen: {seen}"
    assert int(stack.deployed.rpc.call("eth_blockNumber"), 16) > head_at_stop + 5  # anvil mined on
    started = time.monotonic()
    stack.start_indexer()
    wait_for(lambda: _state(prom) is None, timeout=90, interval=0.5)
    lag = prom.query('chain:indexer_excess_lag_seconds{chain="anvil"}')
    assert lag and float(lag[0]["value"][1]) < 5, lag
    assert time.monotonic() - started < 90
