"""`indexer run --once` through a fault-injecting JSON-RPC proxy in front of anvil: every fault
alone, all of them mixed at random, and a dead endpoint that comes back. Each run must end with
every table equal to the chain's logs (the independent reference decoder)."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_end_to_end import compare
from tests.support.chaos import SHAPES, Chaos, ChaosProxy
from tests.support.cli import env_for, indexer, start_indexer, stop, write_chain
from tests.support.contracts import Deployed
from tests.support.services import free_port
from tests.support.traffic import run_traffic


@pytest.fixture(scope="module")
def chain(deployed_module: Deployed) -> Deployed:
    run_traffic(deployed_module, rounds=12, seed=5)
    return deployed_module


def _env(database_url: str, url: str, **extra: str) -> dict[str, str]:
    return env_for(database_url, url, INDEXER_RPC_TIMEOUT="1", **extra)


def _run(tmp_path: Path, database_url: str, proxy_url: str, *, max_range: int = 8,
         target_logs: int = 40) -> str:
    chain_file = write_chain(tmp_path / "anvil.yaml", get_logs_max_range=max_range)
    res = indexer(["run", "--chain", str(chain_file), "--once", "--target-logs", str(target_logs),
                   "--concurrency", "3"], _env(database_url, proxy_url), timeout=240)
    assert res.code == 0, res.err[-3000:]
    assert "Traceback" not in res.err
    return res.err


SINGLE = {
    "range": Chaos(rate=1.0, faults=("range",), range_limit=2),
    "429": Chaos(rate=0.1, faults=("429",), retry_after="1"),
    "429-bare": Chaos(rate=0.2, faults=("429-bare",)),
    "429-rpc": Chaos(rate=0.2, faults=("429-rpc",)),
    "5xx": Chaos(rate=0.3, faults=("5xx",)),
    "timeout": Chaos(rate=0.1, faults=("timeout",), hold=1.5),
    "truncated": Chaos(rate=0.3, faults=("truncated",)),
    "reset": Chaos(rate=0.3, faults=("reset",)),
    "empty": Chaos(rate=0.3, faults=("empty",)),
    "bloom-lag": Chaos(rate=0.5, faults=("bloom-lag",)),
    "wrong-hash": Chaos(rate=0.3, faults=("wrong-hash",)),
    "outside": Chaos(rate=0.3, faults=("outside",)),
    "foreign": Chaos(rate=0.3, faults=("foreign",)),
    "lag": Chaos(lag=3, rate=0.3, faults=("empty",)),
}


@pytest.mark.parametrize("fault", list(SINGLE))
def test_run_through_one_fault_ends_equal_to_the_chain(
    chain: Deployed, database_url: str, tmp_path: Path, fault: str
) -> None:
    chaos = SINGLE[fault]
    chaos.seed = sum(map(ord, fault))
    with ChaosProxy(chain.url, chaos) as proxy:
        _run(tmp_path, database_url, proxy.url)
        injected = sum(proxy.seen.values())
    if fault != "lag":
        assert injected > 0, f"the proxy never injected {fault}: the test proves nothing"
    if fault == "range":
        assert proxy.seen["range"] >= 3
    head = int(chain.rpc.call("eth_blockNumber"), 16)
    # A node whose head lags: the run indexes up to the head it reports, and all of that.
    compare(chain, database_url, head - chaos.lag)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_provider_range_shape_is_split_and_learned(
    chain: Deployed, database_url: str, tmp_path: Path, shape: str
) -> None:
    """A provider that refuses more than 3 blocks per eth_getLogs, in its own words."""
    with ChaosProxy(chain.url, Chaos(max_range=3, shape=shape)) as proxy:
        _run(tmp_path, database_url, proxy.url, max_range=16)
        refused = proxy.seen["max_range"]
        asked = proxy.methods["eth_getLogs"]
    assert refused >= 1
    # The limit is learned: most requests fit it, refusals are few.
    assert refused < asked / 3, (refused, asked)
    compare(chain, database_url)


def test_mixed_faults_at_random_end_equal_to_the_chain(
    chain: Deployed, database_url: str, tmp_path: Path
) -> None:
    faults = ("range", "429-bare", "429-rpc", "5xx", "timeout", "truncated", "reset", "empty",
              "bloom-lag", "wrong-hash", "outside", "foreign")
    chaos = Chaos(rate=0.2, faults=faults, seed=20, hold=1.2, range_limit=3)
    with ChaosProxy(chain.url, chaos) as proxy:
        _run(tmp_path, database_url, proxy.url, max_range=1, target_logs=8)
        seen, requests = dict(proxy.seen), proxy.requests
    assert sum(seen.values()) >= 0.1 * requests, (seen, requests)
    assert len(seen) >= 4, seen
    compare(chain, database_url)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        return r.read().decode()


def _value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


class _Scraper:
    """Scrapes /metrics every 50 ms in a thread; keeps every good scrape with its time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.scrapes: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scrapes.append((time.monotonic(), _scrape(self.port)))
            except OSError:
                pass
            self._stop.wait(0.05)

    def __enter__(self) -> _Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def two_proxies(chain: Deployed) -> Iterator[tuple[ChaosProxy, ChaosProxy]]:
    # Latency stretches the run so that the first endpoint can die and come back during it.
    with ChaosProxy(chain.url, Chaos(latency=0.1)) as first, \
            ChaosProxy(chain.url, Chaos(latency=0.1)) as second:
        yield first, second


def test_first_endpoint_dies_and_comes_back(
    chain: Deployed, database_url: str, tmp_path: Path,
    two_proxies: tuple[ChaosProxy, ChaosProxy],
) -> None:
    first, second = two_proxies
    chain_file = write_chain(
        tmp_path / "anvil.yaml", get_logs_max_range=1,
        rpc=[{"url": first.url + "/v3/SECRETKEY0123456789abc"}, {"url": second.url}])
    port = free_port()
    env = _env(database_url, "unused", INDEXER_METRICS_PORT=str(port))
    log = tmp_path / "run.log"
    proc = start_indexer(["run", "--chain", str(chain_file), "--once", "--target-logs", "5",
                          "--concurrency", "1"], env, log=log)
    with _Scraper(port) as scraper:
        try:
            _wait(lambda: first.methods["eth_getLogs"] >= 5 or proc.poll() is not None)
            assert proc.poll() is None, "the run ended before the endpoint could die"
            first.kill()
            died = time.monotonic()
            served_before = second.methods["eth_getLogs"]
            # Dead until its breaker opens (seen in the metrics), then back at once.
            _wait(lambda: proc.poll() is not None or any(
                _value(t, "indexer_rpc_endpoint_up", endpoint="0:127.0.0.1") == 0
                for when, t in scraper.scrapes[-5:] if when > died))
            first.revive()
            back = time.monotonic()
            on_first = first.methods["eth_getLogs"]
            code = proc.wait(120)
        finally:
            stop(proc)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert first.methods["eth_getLogs"] > on_first, "requests never moved back to the first"
    assert second.methods["eth_getLogs"] > served_before, "requests never moved to the second"
    assert "SECRETKEY" not in text and "0123456789abc" not in text
    label0, label1 = "0:127.0.0.1", "1:127.0.0.1"
    during = [t for when, t in scraper.scrapes if died < when < back]
    last = scraper.scrapes[-1][1]
    assert "SECRETKEY" not in last
    assert _value(last, "indexer_rpc_failovers_total", endpoint=label0) >= 1
    assert _value(last, "indexer_rpc_requests_total", endpoint=label1, method="eth_getLogs",
                  outcome="ok") >= 10
    assert _value(last, "indexer_rpc_requests_total", endpoint=label0, outcome="error") >= 1
    assert during and any(_value(t, "indexer_rpc_endpoint_up", endpoint=label0) == 0
                          for t in during), "the breaker of the dead endpoint never opened"
    ok_first_at_back = max((_value(t, "indexer_rpc_requests_total", endpoint=label0,
                                   method="eth_getLogs", outcome="ok")
                            for when, t in scraper.scrapes if when <= back), default=0.0)
    assert _value(last, "indexer_rpc_requests_total", endpoint=label0, method="eth_getLogs",
                  outcome="ok") > ok_first_at_back
    assert _value(last, "indexer_rpc_endpoint_up", endpoint=label0) == 1
    assert re.search(r"endpoint 0:127\.0\.0\.1 answers again", text)
    compare(chain, database_url)


def _wait(predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)
