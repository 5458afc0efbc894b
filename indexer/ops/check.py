"""``indexer chain check``: validate the file and its ABIs (no two events may share a table),
reach every endpoint, compare the chain id and check that every address holds code.

Each check prints one line, ``ok`` or ``FAIL``; an RPC error fails that check only, and the
next checks still run (only an endpoint whose chain id is wrong or unreadable is left there,
since nothing else it says is about this chain)."""

from __future__ import annotations

from indexer.chain.catalog import build_catalog
from indexer.config import ChainConfig, load_chain, resolve_chain
from indexer.rpc.client import RpcClient, endpoint_label
from indexer.rpc.errors import RpcError


async def check_chain(name_or_path: str) -> int:
    """Prints one line per item; exit 1 when any fails. Addresses are checked once, on the
    first endpoint that serves the chain."""
    chain = load_chain(resolve_chain(name_or_path))
    catalog = build_catalog(chain)  # ABI problems and table collisions: AbiError, exit 2
    print(f"ok   {chain.source}: valid ({len(chain.contracts)} contracts, "
          f"{len(catalog.tables)} event tables)")
    failed = False
    codes_checked = False
    for i, ep in enumerate(chain.rpc):
        label = endpoint_label(ep.url, i)
        async with RpcClient([ep], chain=chain.name, timeout=10.0, max_retries=1) as rpc:
            try:
                cid = await rpc.chain_id()
            except RpcError as e:
                print(f"FAIL rpc[{i}] {label}: chain id: {e}")
                failed = True
                continue
            if cid != chain.chain_id:
                print(f"FAIL rpc[{i}] {label}: eth_chainId is {cid}, file says {chain.chain_id}")
                failed = True
                continue
            print(f"ok   rpc[{i}] {label}: chain id {cid}")
            try:
                print(f"ok   rpc[{i}] {label}: head {await rpc.block_number():,}")
            except RpcError as e:
                print(f"FAIL rpc[{i}] {label}: head: {e}")
                failed = True
            if not codes_checked:
                failed |= await _check_code(rpc, chain)
                codes_checked = True
    return 1 if failed else 0


async def _check_code(rpc: RpcClient, chain: ChainConfig) -> bool:
    """One line per configured address; True when any has no code or its code cannot be
    read."""
    failed = False
    for c in chain.contracts:
        for a in c.addresses:
            try:
                code = await rpc.call("eth_getCode", [a, "latest"])
            except RpcError as e:
                print(f"FAIL {c.name} {a}: cannot read its code: {e}")
                failed = True
                continue
            if not isinstance(code, str) or code in ("0x", ""):
                print(f"FAIL {c.name} {a}: no code at this address")
                failed = True
            else:
                print(f"ok   {c.name} {a}: {len(code) // 2 - 1:,} bytes of code")
    return failed
