"""Every metric of the process, defined once (public contract 4), and the HTTP endpoints.

Names carry the ``indexer_`` prefix, base units, ``_total`` for counters; every series is
labelled by ``chain`` so one dashboard and one alert rule serve every chain.
"""

from __future__ import annotations

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
