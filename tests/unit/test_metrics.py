"""The label values the metrics are created with at start are the ones the code uses: a value
missing from the known sets would be a series born at its first event again."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from indexer import metrics
from indexer.rpc import errors

PACKAGE = Path(metrics.__file__).resolve().parent


def _refusal_label_calls(tree: ast.AST) -> set[int]:
    """ids of the keywords of ``COMMITS_REFUSED.labels(...)`` calls (another label set)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "labels" and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "COMMITS_REFUSED"):
            out.update(id(k) for k in node.keywords)
    return out


def _reason_literals(refusals: bool = False) -> set[str]:
    """Every string given as ``reason=...`` or assigned to ``.reason`` in the package (with
    ``refusals``: only those given to ``COMMITS_REFUSED.labels``)."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        refused = _refusal_label_calls(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "reason" and isinstance(
                    node.value, ast.Constant) and isinstance(node.value.value, str):
                if (id(node) in refused) == refusals:
                    found.add(node.value.value)
            if refusals:
                continue
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Attribute) and t.attr == "reason" for t in node.targets
            ) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                found.add(node.value.value)
    return found


def test_every_reason_an_answer_is_rejected_for_is_a_known_label_value():
    used = _reason_literals()
    assert "bloom" in used and "block_hash" in used  # the scan sees both ways of setting it
    assert used <= set(metrics.ANSWER_REJECT_REASONS)
    default = inspect.signature(errors.BadAnswer.__init__).parameters["reason"].default
    assert default in metrics.ANSWER_REJECT_REASONS


def test_every_reason_a_commit_is_refused_for_is_a_known_label_value():
    used = _reason_literals(refusals=True)
    assert {"conflict", "duplicate_key"} <= used  # the scan sees them
    assert used <= set(metrics.COMMIT_REFUSE_REASONS)


def test_every_rpc_outcome_is_a_known_label_value():
    kinds = [c for _, c in inspect.getmembers(errors, inspect.isclass)
             if issubclass(c, errors.RpcError)]
    assert len(kinds) > 5
    assert {c.outcome for c in kinds} | {"ok"} == set(metrics.RPC_OUTCOMES)


def test_open_chain_creates_every_labelled_series_at_zero():
    metrics.open_chain("opened", ["t_a", "t_b"], ["0:host", "1:other"], live=True)

    def value(name: str, **labels: str) -> float | None:
        return metrics.REGISTRY.get_sample_value(name, {"chain": "opened", **labels})

    assert value("indexer_reorgs_total") == 0
    assert value("indexer_deep_reorgs_total") == 0
    assert value("indexer_reorg_depth_blocks") == 0
    assert value("indexer_live_leader") == 0
    for t in ("t_a", "t_b"):
        assert value("indexer_events_written_total", table=t) == 0
        assert value("indexer_decode_failures_total", table=t) == 0
    for ep in ("0:host", "1:other"):
        assert value("indexer_rpc_failovers_total", endpoint=ep) == 0
        for reason in metrics.ANSWER_REJECT_REASONS:
            assert value("indexer_rpc_answers_rejected_total", endpoint=ep, reason=reason) == 0
        assert value("indexer_rpc_requests_total", endpoint=ep, method="eth_getLogs",
                     outcome="rate_limited") == 0
        assert value("indexer_rpc_request_duration_seconds_count", endpoint=ep,
                     method="eth_getLogs") == 0
    # Unknown until measured: no 0 that would read as "no lag" or "head at block 0".
    assert value("indexer_lag_seconds") is None
    assert value("indexer_chain_head_block") is None
