"""Every labelled series of contract 4 exists from the moment a chain is ready: counters at 0
(per table, per endpoint, per known reason), so that `increase()` in alerts and panels sees 0
rather than nothing, and the lag in seconds is known before `/readyz` says 200."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.cli import env_for, start_indexer, wait_for, write_chain
from tests.support.contracts import Deployed
from tests.support.services import free_port

TABLES = ("weth9_deposit", "weth9_withdrawal", "weth9_transfer", "weth9_approval",
          "uniswap_v2_factory_pair_created", "uniswap_v2_pair_swap", "uniswap_v2_pair_sync",
          "uniswap_v2_pair_mint", "uniswap_v2_pair_burn", "uniswap_v2_pair_transfer",
          "demo_token_transfer", "demo_token_approval")
REASONS = ("malformed", "range", "filter", "block_hash", "bloom", "log_index")
ENDPOINT = "0:127.0.0.1"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def _series(text: str) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """(sample name, labels) of every sample of the chain `anvil`."""
    return {(s.name, frozenset(s.labels.items()))
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.labels.get("chain") == "anvil"}


def _has(series: set[tuple[str, frozenset[tuple[str, str]]]], name: str, **labels: str) -> bool:
    want = set(labels.items())
    return any(n == name and want <= set(ls) for n, ls in series)


def test_every_series_of_the_chain_exists_when_readyz_first_answers_200(
    deployed: Deployed, database_url: str, tmp_path: Path
):
    port = free_port()
    chain = write_chain(tmp_path / "anvil.yaml", finality_depth=2)
    env = env_for(database_url, deployed.url, INDEXER_METRICS_PORT=str(port))
    proc = start_indexer(["run", "--chain", str(chain)], env, log=tmp_path / "run.log")
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        return _get(base + "/readyz")[0] == 200

    wait_for(ready, timeout=90, interval=0.05)
    code, text = _get(base + "/metrics")
    assert code == 200
    series = _series(text)
    missing = [name for name in ("indexer_lag_seconds", "indexer_reorgs_total",
                                 "indexer_deep_reorgs_total", "indexer_reorg_depth_blocks",
                                 "indexer_chain_head_block", "indexer_indexed_block",
                                 "indexer_blocks_indexed_total")
               if not _has(series, name)]
    missing += [f"{name}{{table={t}}}" for t in TABLES
                for name in ("indexer_decode_failures_total", "indexer_events_written_total")
                if not _has(series, name, table=t)]
    missing += [f"indexer_rpc_answers_rejected_total{{reason={r}}}" for r in REASONS
                if not _has(series, "indexer_rpc_answers_rejected_total", endpoint=ENDPOINT,
                            reason=r)]
    missing += [f"indexer_reorg_repairs_refused_total{{reason={r}}}"
                for r in ("other_chain", "too_deep")
                if not _has(series, "indexer_reorg_repairs_refused_total", reason=r)]
    missing += [name for name in ("indexer_rpc_failovers_total",) if not
                _has(series, name, endpoint=ENDPOINT)]
    missing += [f"indexer_rpc_requests_total{{outcome={o}}}"
                for o in ("ok", "error", "timeout", "rate_limited", "node_behind",
                          "range_too_large")
                if not _has(series, "indexer_rpc_requests_total", endpoint=ENDPOINT,
                            method="eth_getLogs", outcome=o)]
    assert missing == []
    # No other endpoint label than the configured one: counts are per endpoint, never "any".
    endpoints = {dict(ls).get("endpoint") for _, ls in series} - {None}
    assert endpoints == {ENDPOINT}
