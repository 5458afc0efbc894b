"""The plain pipeline: the least a Transfer indexer has to do, as a yardstick for the indexer.

    .venv/bin/python scripts/plain_pipeline.py --rpc URL --dsn DSN --address A [--address B]
        --from-block 0 --to-block HEAD [--processes 1] [--range 10] [--in-flight 4]
        [--batch 25000] [--schema chaindata] [--table demo_token_transfer]

``--processes`` processes split the block span into equal contiguous parts. Each one, on uvloop,
asks ``eth_getLogs`` (address + Transfer topic0) over ``--range``-block ranges with
``--in-flight`` requests at once (aiohttp, orjson), decodes each log by slicing the hex (from and
to out of the topics, value out of the data, the block time from the log's ``blockTimestamp``)
and writes ``--batch``-row batches with asyncpg ``copy_records_to_table`` (binary COPY) into
the block partition of a table with the indexer's columns, primary key and partitions (LIST by
chain id, then RANGE by block number). It does no leasing, no answer checks, no range records,
no retries: any error stops it with a non-zero exit. It runs with the indexer's garbage
collector settings (``--default-gc`` keeps Python's). It prints one JSON line: logs, seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
COLUMNS = ("chain_id", "block_number", "block_time", "tx_hash", "tx_index", "log_index",
           "address", "from", "to", "value")
TYPES = ("bigint", "bigint", "timestamptz", "bytea", "integer", "integer", "bytea", "bytea",
         "bytea", "numeric(78,0)")


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def partition_name(table: str, chain_id: int, index: int) -> str:
    return f"{table}_c{chain_id}_p{index}"


def ddl(schema: str, table: str, chain_id: int, span: int, first: int, last: int) -> list[str]:
    """The statements creating the table and every block partition of [first, last], laid out as
    the indexer lays out an event table (names shorter than 63 characters assumed)."""
    cols = ",\n  ".join(f"{q(c)} {t}{' NOT NULL' if i < 7 else ''}"
                        for i, (c, t) in enumerate(zip(COLUMNS, TYPES, strict=True)))
    chain_part = f"{table}_c{chain_id}"
    out = [
        f"CREATE SCHEMA IF NOT EXISTS {q(schema)}",
        f"CREATE TABLE {q(schema)}.{q(table)} (\n  {cols},\n"
        f"  PRIMARY KEY (chain_id, block_number, log_index)\n) PARTITION BY LIST (chain_id)",
        f"CREATE TABLE {q(schema)}.{q(chain_part)} PARTITION OF {q(schema)}.{q(table)} "
        f"FOR VALUES IN ({chain_id}) PARTITION BY RANGE (block_number)",
    ]
    for index in range(first // span, last // span + 1):
        out.append(
            f"CREATE TABLE {q(schema)}.{q(partition_name(table, chain_id, index))} PARTITION OF "
            f"{q(schema)}.{q(chain_part)} FOR VALUES FROM ({index * span}) TO ({(index + 1) * span})"
        )
    return out


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when this process dies (Linux PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def split(first: int, last: int, parts: int) -> list[tuple[int, int]]:
    """[first, last] as ``parts`` contiguous spans of nearly equal length (none empty)."""
    n = last - first + 1
    parts = max(1, min(parts, n))
    out, start = [], first
    for i in range(parts):
        size = n // parts + (1 if i < n % parts else 0)
        out.append((start, start + size - 1))
        start += size
    return out


def decode(log: dict, chain_id: int, times: dict[str, datetime]) -> tuple:
    """One Transfer log as a row of the table, by slicing its hex."""
    topics = log["topics"]
    ts = log["blockTimestamp"]
    when = times.get(ts)
    if when is None:
        when = times[ts] = datetime.fromtimestamp(int(ts, 16), UTC)
    return (
        chain_id,
        int(log["blockNumber"], 16),
        when,
        bytes.fromhex(log["transactionHash"][2:]),
        int(log["transactionIndex"], 16),
        int(log["logIndex"], 16),
        bytes.fromhex(log["address"][2:]),
        bytes.fromhex(topics[1][26:]),
        bytes.fromhex(topics[2][26:]),
        int(log["data"], 16),
    )


async def produce(fetch: Callable[[int, int], Awaitable[list[dict]]],
                  ranges: list[tuple[int, int]], in_flight: int, queue: asyncio.Queue) -> None:
    """``in_flight`` requests at once, answers handed over in block order, then None; a failure
    is handed over too, so that the consumer stops instead of waiting for more."""
    pending: list[asyncio.Task] = []
    try:
        for lo, hi in ranges:
            pending.append(asyncio.create_task(fetch(lo, hi)))
            if len(pending) >= in_flight:
                await queue.put(await pending.pop(0))
        for t in pending:
            await queue.put(await t)
        await queue.put(None)
    except Exception as exc:
        for t in pending:
            t.cancel()
        await queue.put(exc)


async def worker(a: argparse.Namespace, first: int, last: int) -> int:
    import aiohttp
    import asyncpg
    import orjson

    conn = await asyncpg.connect(a.dsn)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=a.in_flight))
    ranges = [(s, min(s + a.range - 1, last)) for s in range(first, last + 1, a.range)]
    queue: asyncio.Queue = asyncio.Queue(maxsize=a.in_flight * 2)
    times: dict[str, datetime] = {}
    written = 0
    ids = iter(range(1, 1 << 62))

    async def fetch(lo: int, hi: int) -> list[dict]:
        body = orjson.dumps({"jsonrpc": "2.0", "id": next(ids), "method": "eth_getLogs",
                             "params": [{"fromBlock": hex(lo), "toBlock": hex(hi),
                                         "address": a.address, "topics": [TRANSFER]}]})
        async with session.post(a.rpc, data=body,
                                headers={"content-type": "application/json"}) as r:
            reply = orjson.loads(await r.read())
        if "error" in reply:
            raise RuntimeError(f"eth_getLogs {lo}-{hi}: {reply['error']}")
        return reply["result"]

    async def flush(rows: list[tuple]) -> None:
        by_part: dict[int, list[tuple]] = {}
        for r in rows:
            by_part.setdefault(r[1] // a.partition_blocks, []).append(r)
        for index, recs in by_part.items():
            await conn.copy_records_to_table(partition_name(a.table, a.chain_id, index),
                                             records=recs, columns=COLUMNS, schema_name=a.schema)

    prod = asyncio.create_task(produce(fetch, ranges, a.in_flight, queue))
    try:
        rows: list[tuple] = []
        while (logs := await queue.get()) is not None:
            if isinstance(logs, Exception):
                raise logs
            rows.extend(decode(lg, a.chain_id, times) for lg in logs)
            if len(rows) >= a.batch:
                await flush(rows)
                written += len(rows)
                rows = []
        if rows:
            await flush(rows)
            written += len(rows)
        await prod
    finally:
        prod.cancel()
        await session.close()
        await conn.close()
    return written


def run_worker(a: argparse.Namespace) -> int:
    import uvloop

    if not a.default_gc:
        # The collector settings the indexer runs with: a pass per 100,000 new objects instead
        # of per 700 (parsing a large answer makes millions of short-lived objects).
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 1000)

    first, last = (int(x) for x in a.span.split(":"))
    t0 = time.perf_counter()
    n = uvloop.run(worker(a, first, last))
    print(json.dumps({"span": [first, last], "logs": n,
                      "seconds": round(time.perf_counter() - t0, 3)}), flush=True)
    return 0


async def create_tables(a: argparse.Namespace) -> None:
    import asyncpg

    conn = await asyncpg.connect(a.dsn)
    try:
        for stmt in ddl(a.schema, a.table, a.chain_id, a.partition_blocks, a.from_block,
                        a.to_block):
            await conn.execute(stmt)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rpc", required=True, help="JSON-RPC URL")
    p.add_argument("--dsn", required=True, help="Postgres URL of an empty database")
    p.add_argument("--address", action="append", required=True, help="token address (repeatable)")
    p.add_argument("--from-block", type=int, default=0)
    p.add_argument("--to-block", type=int, required=True)
    p.add_argument("--processes", type=int, default=1, help="processes splitting the span")
    p.add_argument("--range", type=int, default=10, help="blocks per eth_getLogs (default 10)")
    p.add_argument("--in-flight", type=int, default=4, help="requests at once (default 4)")
    p.add_argument("--batch", type=int, default=25_000, help="rows per COPY (default 25,000)")
    p.add_argument("--schema", default="chaindata")
    p.add_argument("--table", default="demo_token_transfer")
    p.add_argument("--chain-id", type=int, default=31337)
    p.add_argument("--partition-blocks", type=int, default=1_000_000)
    p.add_argument("--default-gc", action="store_true",
                   help="keep Python's default collector thresholds (default: the indexer's)")
    p.add_argument("--span", help=argparse.SUPPRESS)  # set in the processes this one starts
    a = p.parse_args(argv)
    if a.span:
        return run_worker(a)
    t0 = time.perf_counter()
    asyncio.run(create_tables(a))
    base = [sys.executable, os.path.abspath(__file__), *(argv if argv is not None else sys.argv[1:])]
    procs = [subprocess.Popen([*base, "--span", f"{lo}:{hi}"], stdout=subprocess.PIPE, text=True,
                              preexec_fn=die_with_parent)
             for lo, hi in split(a.from_block, a.to_block, a.processes)]
    outs = [pr.communicate()[0] for pr in procs]
    failed = [pr.returncode for pr in procs if pr.returncode != 0]
    if failed:
        print(f"plain pipeline: {len(failed)} process(es) failed (exit {failed})", file=sys.stderr)
        return 1
    logs = sum(json.loads(o.strip().splitlines()[-1])["logs"] for o in outs)
    print(json.dumps({"logs": logs, "processes": len(procs),
                      "seconds": round(time.perf_counter() - t0, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
