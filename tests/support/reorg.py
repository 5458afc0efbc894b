"""Reorgs on anvil, and what the indexer stored about the chain, read back for checks.

Three ways to replace the top of anvil's chain, all through JSON-RPC (formats of anvil 1.7.1):

- ``anvil_reorg(depth: u64, txBlockPairs: [[tx, offset], ...])``: drops the last ``depth``
  blocks and mines ``depth`` new ones; ``tx`` is a transaction request (``from`` an unlocked
  account, nonce filled in) and ``offset`` the new block that holds it, 0 for the first
  (``fork + 1``) up to ``depth - 1``. ``depth`` must not exceed the head; depth 0 fails. It is
  not atomic: a client polling meanwhile sees the head drop to the fork point and the new
  blocks come one by one.
- ``anvil_rollback(depth: u64)``: drops the last ``depth`` blocks and mines nothing: the head
  goes down. A hex string or a missing depth is refused; 0 fails.
- ``evm_snapshot()`` -> id (hex string), ``evm_revert(id)`` -> true: back to the state of the
  snapshot, head included; the id is used up.

Mining modes: ``anvil_getAutomine()`` -> bool, ``anvil_getIntervalMining()`` -> seconds or null,
``evm_setIntervalMining(0)`` pauses a ``--block-time`` node and ``evm_setIntervalMining(n)``
resumes it; ``evm_setAutomine(true)`` turns interval mining off, ``evm_setAutomine(false)``
leaves it on. Branches are built with mining paused
and the mode restored after.

The transactions of dropped blocks do not come back to the pool after any of them. Blocks mined
in the same second share a timestamp, and a replaced block may carry the same transactions as
before, so a branch here always carries transactions of its own (fresh amounts): its hashes and
its logs differ from those it replaces.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from tests.support.contracts import ACCOUNT0, ACCOUNTS, Deployed, receipt
from tests.support.rpc import JsonRpc

CHAIN_ID = 31337
DEMO_SOURCES = ("WETH9", "UniswapV2Factory", "UniswapV2Pair", "DemoToken")  # chains/anvil.yaml
TRANSFER_GAS = 120_000
DEPOSIT_GAS = 100_000


@dataclass(frozen=True)
class Reorg:
    """One replacement of the chain's top: blocks above ``fork`` changed."""

    fork: int  # highest block kept
    old_tip: int  # head before
    new_tip: int  # head after
    old_hashes: dict[int, str]  # the replaced blocks (fork + 1 .. old_tip)
    tx_hashes: list[str] = field(default_factory=list)  # what the new branch carries

    @property
    def depth(self) -> int:
        return self.old_tip - self.fork


# ----------------------------------------------------------------------------- node state


def head(rpc: JsonRpc) -> int:
    return int(rpc.call("eth_blockNumber"), 16)


def block_hash(rpc: JsonRpc, number: int) -> str:
    return str(rpc.call("eth_getBlockByNumber", hex(number), False)["hash"])


def block_hashes(rpc: JsonRpc, numbers: Sequence[int]) -> dict[int, str]:
    """The node's hash at each height (heights above its head are left out)."""
    out: dict[int, str] = {}
    for i in range(0, len(numbers), 200):
        part = numbers[i : i + 200]
        got = rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in part])
        out.update({n: b["hash"] for n, b in zip(part, got, strict=True) if b is not None})
    return out


# ----------------------------------------------------------------------------- primitives


def anvil_reorg(rpc: JsonRpc, depth: int, txs: Sequence[tuple[dict[str, Any], int]]) -> None:
    """Replace the last ``depth`` blocks by ``depth`` new ones holding ``txs`` (request, offset
    of the new block from 0)."""
    rpc.call("anvil_reorg", depth, [[tx, offset] for tx, offset in txs])


def rollback(rpc: JsonRpc, depth: int) -> None:
    """Drop the last ``depth`` blocks: the head goes down by ``depth``."""
    rpc.call("anvil_rollback", depth)


def snapshot(rpc: JsonRpc) -> str:
    return str(rpc.call("evm_snapshot"))


def revert(rpc: JsonRpc, snapshot_id: str) -> None:
    if rpc.call("evm_revert", snapshot_id) is not True:
        raise RuntimeError(f"evm_revert {snapshot_id}: unknown snapshot")


@contextmanager
def mining_paused(rpc: JsonRpc) -> Iterator[None]:
    """Neither automine nor interval mining inside; the node's mode is restored after."""
    automine = bool(rpc.call("anvil_getAutomine"))
    interval = rpc.call("anvil_getIntervalMining")
    if automine:
        rpc.call("evm_setAutomine", False)
    if interval:
        rpc.call("evm_setIntervalMining", 0)
    try:
        yield
    finally:
        if interval:
            rpc.call("evm_setIntervalMining", interval)
        if automine:
            rpc.call("evm_setAutomine", True)


# ----------------------------------------------------------------------------- branches


def branch_txs(deployed: Deployed, rng: random.Random, n: int) -> list[dict[str, Any]]:
    """``n`` transaction requests that cannot revert and each log something fresh: token
    transfers from account 0 (which holds most of the supply) and WETH deposits of random
    amounts from dev accounts."""
    out: list[dict[str, Any]] = []
    for _ in range(n):
        if rng.random() < 0.6:
            token = rng.choice([deployed.token_a, deployed.token_b])
            data = token.encode_abi("transfer", [rng.choice(ACCOUNTS[1:]), rng.randint(1, 10**21)])
            out.append({"from": ACCOUNT0, "to": token.address, "data": data,
                        "gas": hex(TRANSFER_GAS), "value": "0x0"})
        else:
            out.append({"from": rng.choice(ACCOUNTS), "to": deployed.weth.address,
                        "data": deployed.weth.encode_abi("deposit", []), "gas": hex(DEPOSIT_GAS),
                        "value": hex(rng.randint(1, 10**18))})
    return out


def mine_blocks(
    deployed: Deployed, blocks: int, rng: random.Random, txs_per_block: int = 2
) -> list[str]:
    """Mine ``blocks`` blocks of ``txs_per_block`` ``branch_txs`` each; the tx hashes."""
    rpc = deployed.rpc
    hashes: list[str] = []
    with mining_paused(rpc):
        for _ in range(blocks):
            hashes += [rpc.call("eth_sendTransaction", tx)
                       for tx in branch_txs(deployed, rng, txs_per_block)]
            rpc.call("evm_mine")
    return hashes


def _branch_receipts(rpc: JsonRpc, fork: int, tip: int) -> list[str]:
    """Hashes of the transactions in (fork, tip], each checked mined and not reverted."""
    hashes: list[str] = []
    for n in range(fork + 1, tip + 1):
        hashes += rpc.call("eth_getBlockByNumber", hex(n), False)["transactions"]
    for tx in hashes:
        receipt(rpc, tx)
    return hashes


def reorg(
    deployed: Deployed,
    depth: int,
    *,
    new_blocks: int | None = None,
    txs_per_block: int = 2,
    seed: int = 0,
) -> Reorg:
    """Replace the last ``depth`` blocks by a branch of ``new_blocks`` blocks (default
    ``depth``) carrying other transactions, so other logs. Send it with no transaction pending.

    A branch at least as long is ``anvil_reorg`` of ``depth`` blocks, then the extra blocks
    mined on top; a shorter one is ``anvil_rollback`` then mining. Either way a client may see
    the head below the old tip for a moment, and any head of the new branch up to its tip.
    """
    if depth < 1:
        raise ValueError(f"reorg depth must be >= 1, got {depth}")
    with mining_paused(deployed.rpc):
        return _reorg(deployed, depth, depth if new_blocks is None else new_blocks,
                      txs_per_block, random.Random(f"reorg:{seed}:{depth}:{new_blocks}"))


def _reorg(
    deployed: Deployed, depth: int, new_blocks: int, txs_per_block: int, rng: random.Random
) -> Reorg:
    rpc = deployed.rpc
    old_tip = head(rpc)
    fork = old_tip - depth
    old_hashes = block_hashes(rpc, list(range(fork, old_tip + 1)))
    if new_blocks >= depth:
        txs = branch_txs(deployed, rng, depth * txs_per_block)
        anvil_reorg(rpc, depth, [(tx, i // txs_per_block) for i, tx in enumerate(txs)])
        mine_blocks(deployed, new_blocks - depth, rng, txs_per_block)
    else:
        rollback(rpc, depth)
        mine_blocks(deployed, new_blocks, rng, txs_per_block)
    new_tip = head(rpc)
    if new_tip != fork + new_blocks:
        raise RuntimeError(f"reorg: head {new_tip}, expected {fork + new_blocks} (is anvil mining?)")
    now = block_hashes(rpc, list(range(fork, old_tip + 1)))
    if now[fork] != old_hashes[fork]:
        raise RuntimeError(f"reorg: block {fork} (the fork point) changed")
    same = [n for n in range(fork + 1, old_tip + 1) if now.get(n) == old_hashes[n]]
    if same:
        raise RuntimeError(f"reorg: blocks {same} kept their hashes")
    del old_hashes[fork]
    return Reorg(fork, old_tip, new_tip, old_hashes, _branch_receipts(rpc, fork, new_tip))


# ----------------------------------------------------------------------------- indexer state


async def _fetch(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        if not await conn.fetchval(
            "SELECT to_regclass('indexer.source_ranges') IS NOT NULL"
            " AND to_regclass('indexer.blocks') IS NOT NULL"
        ):
            return []
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def fetch(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Rows of one query; none while the indexer has not created its tables yet."""
    return asyncio.run(_fetch(database_url, sql, *args))


def source_records(database_url: str, chain_id: int = CHAIN_ID) -> list[asyncpg.Record]:
    """Every range record, once per source it covers (``indexer.source_ranges``): contract,
    source (its key), from_block, to_block, worker, fence."""
    return fetch(database_url, "SELECT contract, source, from_block, to_block, worker, fence"
                 " FROM indexer.source_ranges WHERE chain_id = $1 ORDER BY source, from_block",
                 chain_id)


def _per_contract(per_source: dict[str, tuple[str, int]]) -> dict[str, int]:
    """(source -> (contract, figure)) as contract -> the smallest figure of its sources."""
    out: dict[str, int] = {}
    for contract, figure in per_source.values():
        out[contract] = min(figure, out.get(contract, figure))
    return out


def coverage(database_url: str, chain_id: int = CHAIN_ID) -> dict[str, int]:
    """Per contract, the highest block its sources' range records all reach."""
    top: dict[str, tuple[str, int]] = {}
    for r in source_records(database_url, chain_id):
        top[r["source"]] = (r["contract"], max(r["to_block"], top.get(r["source"], ("", -1))[1]))
    return _per_contract(top)


def covered_to(database_url: str, start: int = 0, chain_id: int = CHAIN_ID) -> dict[str, int]:
    """Per contract, the highest block ``b`` such that the range records of each of its
    sources cover ``[start, b]`` without a gap (``start - 1`` when ``start`` itself is not)."""
    reach: dict[str, tuple[str, int]] = {}
    for r in source_records(database_url, chain_id):
        contract, top = reach.setdefault(r["source"], (r["contract"], start - 1))
        if r["from_block"] <= top + 1:
            reach[r["source"]] = (contract, max(top, r["to_block"]))
    return _per_contract(reach)


def caught_up(database_url: str, rpc: JsonRpc, sources: Collection[str] = DEMO_SOURCES,
              start: int = 0, chain_id: int = CHAIN_ID) -> bool:
    """The indexer stored the node's head block (same hash at the same height) and each of
    ``sources`` is recorded done over ``[start, head]`` without a gap (its highest record alone
    would not do: the live tail may be ahead of a backfill still under way). Nothing else is
    implied: compare the tables to know more."""
    latest = rpc.call("eth_getBlockByNumber", "latest", False)
    number, want = int(latest["number"], 16), bytes.fromhex(latest["hash"][2:])
    stored = fetch(database_url, "SELECT hash FROM indexer.blocks WHERE chain_id = $1"
                   " AND number = $2", chain_id, number)
    if not stored or bytes(stored[0]["hash"]) != want:
        return False
    reach = covered_to(database_url, start, chain_id)
    return all(reach.get(s, -1) >= number for s in sources)


def stored_blocks(database_url: str, chain_id: int = CHAIN_ID) -> dict[int, tuple[bytes, bytes]]:
    """indexer.blocks: number -> (hash, parent hash)."""
    rows = fetch(database_url, "SELECT number, hash, parent_hash FROM indexer.blocks"
                 " WHERE chain_id = $1 ORDER BY number", chain_id)
    return {r["number"]: (bytes(r["hash"]), bytes(r["parent_hash"])) for r in rows}


def block_mismatches(database_url: str, rpc: JsonRpc, chain_id: int = CHAIN_ID) -> list[str]:
    """Every indexer.blocks row the node disagrees with (hash, parent hash, or no such block):
    after a repair none of the dropped branch may remain."""
    stored = stored_blocks(database_url, chain_id)
    numbers = sorted(stored)
    remote: dict[int, dict[str, Any]] = {}
    for i in range(0, len(numbers), 200):
        part = numbers[i : i + 200]
        got = rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in part])
        remote.update({n: b for n, b in zip(part, got, strict=True) if b is not None})
    out = []
    for n in numbers:
        h, parent = stored[n]
        b = remote.get(n)
        if b is None:
            out.append(f"block {n}: stored, the node has no such block")
        elif (h, parent) != (bytes.fromhex(b["hash"][2:]), bytes.fromhex(b["parentHash"][2:])):
            out.append(f"block {n}: stored hash 0x{h.hex()} parent 0x{parent.hex()},"
                       f" the node has {b['hash']} parent {b['parentHash']}")
    return out


def recorded_reorgs(database_url: str, chain_id: int = CHAIN_ID) -> list[dict[str, Any]]:
    """indexer.reorgs rows, oldest first."""
    try:
        rows = fetch(database_url, "SELECT * FROM indexer.reorgs WHERE chain_id = $1"
                     " ORDER BY detected_at", chain_id)
    except asyncpg.UndefinedTableError:
        return []
    return [dict(r) for r in rows]


def children(database_url: str, contract: str = "UniswapV2Pair",
             chain_id: int = CHAIN_ID) -> dict[str, int]:
    """Factory children in indexer.contracts: lower-case 0x address -> block it was created in."""
    rows = fetch(database_url, "SELECT address, block_number FROM indexer.contracts"
                 " WHERE chain_id = $1 AND contract = $2", chain_id, contract)
    return {"0x" + bytes(r["address"]).hex(): r["block_number"] for r in rows}
