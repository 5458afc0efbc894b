"""Every metric of the process, defined once (public contract 4), and the HTTP endpoints.

Names carry the ``indexer_`` prefix, base units, ``_total`` for counters; every series is
labelled by ``chain`` so one dashboard and one alert rule serve every chain.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

CHAIN_INFO = Gauge(
    "indexer_chain_info",
    "Static facts of a configured chain (value is always 1).",
    ["chain", "chain_id", "block_time_seconds", "finality_depth"],
    registry=REGISTRY,
)
CHAIN_HEAD_BLOCK = Gauge(
    "indexer_chain_head_block", "Latest block number reported by the RPC.", ["chain"],
    registry=REGISTRY,
)
SAFE_BLOCK = Gauge(
    "indexer_safe_block", "Head minus the chain's finality depth.", ["chain"], registry=REGISTRY
)
INDEXED_BLOCK = Gauge(
    "indexer_indexed_block",
    "Watermark: every block up to this one is indexed.",
    ["chain"],
    registry=REGISTRY,
)
LAG_BLOCKS = Gauge(
    "indexer_lag_blocks", "Chain head minus the indexed watermark.", ["chain"], registry=REGISTRY
)
LAG_SECONDS = Gauge(
    "indexer_lag_seconds",
    "Seconds between the head block's time and the watermark block's time.",
    ["chain"],
    registry=REGISTRY,
)
BACKLOG_RANGES = Gauge(
    "indexer_backlog_ranges", "Ranges planned but not yet done.", ["chain"], registry=REGISTRY
)
EVENTS_WRITTEN = Counter(
    "indexer_events_written_total",
    "Event rows committed to Postgres.",
    ["chain", "table"],
    registry=REGISTRY,
)
DECODE_FAILURES = Counter(
    "indexer_decode_failures_total",
    "Logs that matched a configured address and topic0 but did not decode.",
    ["chain", "table"],
    registry=REGISTRY,
)
BLOCKS_INDEXED = Counter(
    "indexer_blocks_indexed_total", "Blocks covered by committed ranges.", ["chain"],
    registry=REGISTRY,
)
RANGES_DONE = Counter(
    "indexer_ranges_done_total", "Block ranges committed.", ["chain", "stage"], registry=REGISTRY
)
RANGE_SIZE_BLOCKS = Gauge(
    "indexer_range_size_blocks", "Current planned range size.", ["chain"], registry=REGISTRY
)
COMMITS_REFUSED = Counter(
    "indexer_commits_refused_total",
    "Commits Postgres refused: reason conflict (another writer had the blocks), stale (fetched "
    "before a reorg repair, or a stored block differs) or duplicate_key (a key twice in the "
    "rows, or stored without a range record).",
    ["chain", "reason"],
    registry=REGISTRY,
)
STAGE_SECONDS = Counter(
    "indexer_stage_seconds_total",
    "Wall time spent per pipeline stage (fetch, decode, write).",
    ["chain", "stage"],
    registry=REGISTRY,
)
RPC_REQUESTS = Counter(
    "indexer_rpc_requests_total",
    "JSON-RPC requests by endpoint, method and outcome.",
    ["chain", "endpoint", "method", "outcome"],
    registry=REGISTRY,
)
RPC_DURATION = Histogram(
    "indexer_rpc_request_duration_seconds",
    "JSON-RPC request duration.",
    ["chain", "endpoint", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
REORGS = Counter(
    "indexer_reorgs_total", "Reorgs detected.", ["chain"], registry=REGISTRY
)
REORG_DEPTH = Gauge(
    "indexer_reorg_depth_blocks", "Depth of the last reorg.", ["chain"], registry=REGISTRY
)
DEEP_REORGS = Counter(
    "indexer_deep_reorgs_total",
    "Reorgs deeper than the chain's finality_depth (blocks taken as final were replaced).",
    ["chain"],
    registry=REGISTRY,
)
REPAIRS_REFUSED = Counter(
    "indexer_reorg_repairs_refused_total",
    "Repairs the live tail would not make on its own (reason: other_chain, too_deep); "
    "nothing was deleted and the run stopped for the operator.",
    ["chain", "reason"],
    registry=REGISTRY,
)
LIVE_LEADER = Gauge(
    "indexer_live_leader",
    "1 while this process follows the chain's head (holds the live tail's leadership).",
    ["chain"],
    registry=REGISTRY,
)

RPC_RANGE_SIZE = Gauge(
    "indexer_rpc_range_size_blocks",
    "eth_getLogs range size the client currently uses per endpoint.",
    ["chain", "endpoint"],
    registry=REGISTRY,
)
RPC_ENDPOINT_HEALTH = Gauge(
    "indexer_rpc_endpoint_health",
    "Health score of an endpoint, 0 (down) to 1 (healthy), from latency and errors.",
    ["chain", "endpoint"],
    registry=REGISTRY,
)
RPC_ENDPOINT_UP = Gauge(
    "indexer_rpc_endpoint_up",
    "1 while the endpoint's circuit breaker lets requests through, else 0.",
    ["chain", "endpoint"],
    registry=REGISTRY,
)
RPC_FAILOVERS = Counter(
    "indexer_rpc_failovers_total",
    "Requests moved from one endpoint to another after a failure.",
    ["chain", "endpoint"],  # the endpoint failed over from
    registry=REGISTRY,
)
RPC_ANSWER_REJECTED = Counter(
    "indexer_rpc_answers_rejected_total",
    "Answers that failed a check (range, block hash, logs bloom) and were asked again.",
    ["chain", "endpoint", "reason"],
    registry=REGISTRY,
)
HEAD_AGE_SECONDS = Gauge(
    "indexer_head_age_seconds",
    "Seconds since the timestamp of the latest head block seen.",
    ["chain"],
    registry=REGISTRY,
)
LAST_COMMIT_TIMESTAMP = Gauge(
    "indexer_last_commit_timestamp_seconds",
    "Unix time of the last committed range (detects a stalled indexer).",
    ["chain"],
    registry=REGISTRY,
)
WORKERS = Gauge(
    "indexer_workers",
    "Worker processes alive for a chain (as seen by this process).",
    ["chain"],
    registry=REGISTRY,
)
BLOCK_COMMIT_LATENCY = Histogram(
    "indexer_block_commit_latency_seconds",
    "Time from a block being seen at the head to its rows being committed (live tail).",
    ["chain"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
CONFIG_RELOADS = Counter(
    "indexer_config_reloads_total",
    "Reloads of an edited chain file (SIGHUP, --watch), by outcome (applied, refused).",
    ["chain", "outcome"],
    registry=REGISTRY,
)
VERIFY_RANGES = Counter(
    "indexer_verify_ranges_total",
    "Committed ranges checked against the chain again while indexing, by result (equal, "
    "different, repaired, unproven, error, dropped).",
    ["chain", "result"],
    registry=REGISTRY,
)
VERIFY_MISMATCHED_ROWS = Counter(
    "indexer_verify_mismatched_rows_total",
    "Rows found missing, extra or changed against the chain by a check while indexing.",
    ["chain", "table"],
    registry=REGISTRY,
)
# The query API (``indexer serve``). ``operation``: the table field asked (a single root field),
# ``chains``, ``introspection``, ``multiple``, ``invalid``, ``refused``; ``sql`` for /sql.
API_REQUESTS = Counter(
    "indexer_api_requests_total",
    "Requests answered by the query API, by endpoint (graphql, sql, ws, sse), operation and "
    "HTTP status.",
    ["endpoint", "operation", "status"],
    registry=REGISTRY,
)
API_DURATION = Histogram(
    "indexer_api_request_duration_seconds",
    "Time to answer a request of the query API, by endpoint and operation.",
    ["endpoint", "operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
API_SUBSCRIPTIONS = Gauge(
    "indexer_api_subscriptions", "Subscriptions open, by transport (ws, sse).", ["transport"],
    registry=REGISTRY,
)
API_CHANGES = Counter(
    "indexer_api_changes_total",
    "Changes pushed to subscribers, by kind (insert, retract).",
    ["kind"],
    registry=REGISTRY,
)

# Label values known in advance. ``open_chain`` creates every series of a chain with them when
# the chain starts, so that rate() and increase() in alerts and panels read 0 until the first
# event instead of nothing (a counter born at 1 also loses that first increment).
ANSWER_REJECT_REASONS = ("malformed", "range", "filter", "block_hash", "bloom", "log_index")
COMMIT_REFUSE_REASONS = ("conflict", "stale", "duplicate_key")
RPC_OUTCOMES = ("ok", "error", "range_too_large", "rate_limited", "node_behind", "timeout")
RPC_METHODS = ("eth_chainId", "eth_blockNumber", "eth_getBlockByNumber", "eth_getLogs",
               "eth_getBlockReceipts", "eth_syncing")  # what a run asks in its normal course
REFUSAL_REASONS = ("other_chain", "too_deep")
STAGES = ("fetch", "decode", "write")
RANGE_STAGES = ("main", "factory-children")


def open_chain(chain: str, tables: Sequence[str], endpoints: Sequence[str], *,
               live: bool) -> None:
    """Create every labelled series of ``chain``: counters and histograms empty, per table,
    per endpoint and per known label value; the gauges whose 0 is true (no reorg yet, not the
    live tail's leader yet). Gauges that are only known once measured (head, watermark, lag,
    head age, last commit, workers) appear when first measured: a 0 there would be a lie, and
    ``/readyz`` waits for them."""
    for c in (REORGS, DEEP_REORGS, BLOCKS_INDEXED):
        c.labels(chain=chain)
    REORG_DEPTH.labels(chain=chain).set(0)
    for why in REFUSAL_REASONS:
        REPAIRS_REFUSED.labels(chain=chain, reason=why)
    for why in COMMIT_REFUSE_REASONS:
        COMMITS_REFUSED.labels(chain=chain, reason=why)
    for outcome in ("applied", "refused"):
        CONFIG_RELOADS.labels(chain=chain, outcome=outcome)
    for table in tables:
        EVENTS_WRITTEN.labels(chain=chain, table=table)
        DECODE_FAILURES.labels(chain=chain, table=table)
    for stage in STAGES:
        STAGE_SECONDS.labels(chain=chain, stage=stage)
    for stage in RANGE_STAGES:
        RANGES_DONE.labels(chain=chain, stage=stage)
    for ep in endpoints:
        RPC_FAILOVERS.labels(chain=chain, endpoint=ep)
        for reason in ANSWER_REJECT_REASONS:
            RPC_ANSWER_REJECTED.labels(chain=chain, endpoint=ep, reason=reason)
        for method in RPC_METHODS:
            RPC_DURATION.labels(chain=chain, endpoint=ep, method=method)
            for outcome in RPC_OUTCOMES:
                RPC_REQUESTS.labels(chain=chain, endpoint=ep, method=method, outcome=outcome)
    if live:
        LIVE_LEADER.labels(chain=chain).set(0)
        BLOCK_COMMIT_LATENCY.labels(chain=chain)
