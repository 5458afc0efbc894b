"""``indexer status`` and ``indexer chain check``."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from indexer.config import ChainConfig, ConfigError, load_chain, resolve_chain
from indexer.lease import LIVE_GROUP, LeaseBoard, RedisLeaseBoard
from indexer.pipeline import build_pipeline
from indexer.plan import covered_until, todo, watermark
from indexer.rpc.client import RpcClient, endpoint_label
from indexer.rpc.errors import RpcError
from indexer.sink.postgres import Database
from indexer.sink.reorgs import live_summary


async def _head(chain: ChainConfig) -> int | None:
    try:
        async with RpcClient(chain.rpc, chain=chain.name, timeout=5.0, max_retries=1) as rpc:
            return await asyncio.wait_for(rpc.block_number(), 10)
    except (RpcError, TimeoutError, OSError):
        return None


async def chain_status(
    db: Database, chain: ChainConfig | None, chain_id: int, name: str,
    board: LeaseBoard | None = None,
) -> dict[str, Any]:
    done = await db.done_ranges(chain_id)
    pending = None
    if chain is not None:
        sources = build_pipeline(chain).sources
        indexed = watermark(sources, done)
        head = await _head(chain)
        if head is not None:
            pending = len(todo(sources, done, head - chain.finality_depth))
    else:
        indexed = min(
            (covered_until(min(r.start for r in rs), rs) for rs in done.values()), default=-1
        )
        head = None
    counts = await db.table_counts(chain_id)
    workers: list[str] | None = None
    leased: list[dict[str, Any]] | None = None
    if board is not None:
        workers = await board.workers(name)
        leased = [
            {"group": h.group, "from": h.range.start, "to": h.range.end, "worker": h.worker,
             "fence": h.fence}
            for h in await board.held(name) if not h.done
        ]
    return {
        "chain": name,
        "chain_id": chain_id,
        "head": head,
        "indexed": indexed,
        "lag": None if head is None else max(0, head - indexed),
        "ranges_done": sum(len(v) for v in done.values()),
        "pending": pending,  # units left up to the safe head (each may span many blocks)
        "workers": workers,  # alive, from the lease board (None: no shared board)
        "leased": leased,
        "tables": counts,
        "live": await live_summary(db, chain_id),
    }


async def status(chains: Sequence[str] | None, *, as_json: bool, url: str, schema: str) -> int:
    db = await Database.connect(url, schema, max_size=2)
    board: LeaseBoard | None = None
    try:
        await db.migrate()
        if os.environ.get("REDIS_URL"):
            board = RedisLeaseBoard(os.environ["REDIS_URL"], namespace=await db.instance_id())
        registered = {r["chain_id"]: r["name"] for r in await db.pool.fetch(
            "SELECT chain_id, name FROM indexer.chains ORDER BY name"
        )}
        configs: list[ChainConfig | None] = []
        if chains:
            configs = [load_chain(resolve_chain(c)) for c in chains]
        else:
            for name in registered.values():
                try:
                    configs.append(load_chain(resolve_chain(name)))
                except ConfigError:
                    configs.append(None)
        rows = []
        names = list(registered.items())
        for i, cfg in enumerate(configs):
            if cfg is not None:
                rows.append(await chain_status(db, cfg, cfg.chain_id, cfg.name, board))
            else:
                cid, name = names[i]
                rows.append(await chain_status(db, None, cid, name, board))
    finally:
        await db.close()
        if board is not None:
            await board.close()
    if as_json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if not rows:
        print("no chain indexed yet: run `indexer run --chain NAME`")
    for r in rows:
        print_chain(r)
    return 0


def print_chain(r: dict[str, Any]) -> None:
    """The text form of one chain's status."""
    head = "unreachable" if r["head"] is None else f"{r['head']:,}"
    lag = "-" if r["lag"] is None else f"{r['lag']:,} blocks"
    print(f"{r['chain']} (chain id {r['chain_id']}): head {head}, indexed {r['indexed']:,}, "
          f"lag {lag}, {r['ranges_done']:,} ranges done"
          + ("" if r["pending"] is None else f", {r['pending']:,} units pending"))
    if r["workers"] is not None:
        print(f"  workers alive: {', '.join(r['workers']) or 'none'}")
        for lease in r["leased"]:
            if lease["group"] == LIVE_GROUP:
                print(f"  live tail led by {lease['worker']} (fence {lease['fence']})")
                continue
            print(f"  leased: {lease['group']} {lease['from']}-{lease['to']} "
                  f"by {lease['worker']} (fence {lease['fence']})")
    live = r["live"]
    if live["tip"] is not None or live["reorgs"]:
        last = live["last_reorg"]
        print(f"  live tail: tip {live['tip'] if live['tip'] is not None else '-'}, "
              f"{live['reorgs']} reorgs repaired ({live['deep_reorgs']} deeper than "
              f"finality_depth)" + ("" if last is None else
              f"; last at {last['at'][:19]}: depth {last['depth']}, fork at block "
              f"{last['fork_block']}, {last['rows_deleted']} rows deleted"))
    for table, n in r["tables"].items():
        print(f"  {table}: {n:,} rows")


async def check_chain(name_or_path: str) -> int:
    """Validate the file and its ABIs, reach every endpoint, compare the chain id and check that
    every address holds code (once, on the first endpoint that answers). Prints one line per
    item; exit 1 when any fails."""
    chain = load_chain(resolve_chain(name_or_path))
    print(f"ok   {chain.source}: valid ({len(chain.contracts)} contracts)")
    failed = False
    codes_checked = False
    for i, ep in enumerate(chain.rpc):
        label = endpoint_label(ep.url, i)
        async with RpcClient([ep], chain=chain.name, timeout=10.0, max_retries=1) as rpc:
            try:
                cid = await rpc.chain_id()
                if cid != chain.chain_id:
                    print(f"FAIL rpc[{i}] {label}: eth_chainId is {cid}, file says {chain.chain_id}")
                    failed = True
                    continue
                print(f"ok   rpc[{i}] {label}: chain id {cid}, head {await rpc.block_number():,}")
                if not codes_checked:
                    failed |= await _check_code(rpc, chain)
                    codes_checked = True
            except RpcError as e:
                print(f"FAIL rpc[{i}] {label}: {e}")
                failed = True
    return 1 if failed else 0


async def _check_code(rpc: RpcClient, chain: ChainConfig) -> bool:
    """One line per configured address; True when any has no code."""
    failed = False
    for c in chain.contracts:
        for a in c.addresses:
            code = await rpc.call("eth_getCode", [a, "latest"])
            if code in (None, "0x", ""):
                print(f"FAIL {c.name} {a}: no code at this address")
                failed = True
            else:
                print(f"ok   {c.name} {a}: {len(code) // 2 - 1:,} bytes of code")
    return failed
