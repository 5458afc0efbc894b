"""A mixed DeFi workload on anvil: 8 ERC-20 tokens, WETH9, Uniswap V2 and Uniswap V3.

Every log comes from the real contracts (WETH9, the Uniswap V2 factory and pairs from the npm
artifacts, the Uniswap V3 factory and pools from ``@uniswap/v3-core``, OpenZeppelin ERC-20s);
``MixedTraffic.sol`` calls them a few hundred times per transaction, one transaction per block,
so 500,000 logs take a few hundred blocks of about ``logs_per_block`` logs. Pairs and pools are
created along the way (a few at the start, the rest spread over the chain), so an indexer finds
factory children mid-chain. The mix (by op): token transfers and approvals, WETH deposits,
withdrawals, transfers and approvals, V2 swaps, mints, burns and LP approvals, V3 swaps, mints,
burns, collects and flashes. The same arguments give the same chain.

Twenty event kinds: Token Transfer/Approval; WETH9 Deposit/Withdrawal/Transfer/Approval;
UniswapV2Factory PairCreated; UniswapV2Pair Swap/Sync/Mint/Burn/Transfer/Approval;
UniswapV3Factory PoolCreated; UniswapV3Pool Initialize/Mint/Burn/Swap/Collect/Flash.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from tests.support.contracts import ACCOUNT0, artifact, constructor_args, receipt, send
from tests.support.rpc import JsonRpc
from tests.support.services import NPM_MODULES, REPO_ROOT
from tests.support.solc import Compiled, compile_contract

HERE = Path(__file__).resolve().parent
ABIS = REPO_ROOT / "chains" / "abis"
V3_FACTORY_ARTIFACT = "@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json"

N_TOKENS = 8
TOKEN_SUPPLY = 10**36
E18 = 10**18

# op kinds of MixedTraffic.run
TRANSFER, APPROVE, DEPOSIT, WITHDRAW = 0, 1, 2, 3
V2_SWAP, V2_MINT, V2_BURN, V2_APPROVE, V2_CREATE = 4, 5, 6, 7, 8
V3_CREATE, V3_SWAP, V3_MINT, V3_BURN, V3_COLLECT, V3_FLASH = 9, 10, 11, 12, 13, 14

# logs each op emits (V3 collect: the Collect and, once something is owed, up to two transfers)
LOGS_PER_OP = {TRANSFER: 1, APPROVE: 1, DEPOSIT: 1, WITHDRAW: 1, V2_SWAP: 4, V2_MINT: 5,
               V2_BURN: 6, V2_APPROVE: 1, V2_CREATE: 7, V3_CREATE: 5, V3_SWAP: 3, V3_MINT: 3,
               V3_BURN: 1, V3_COLLECT: 2, V3_FLASH: 5}

# How often each op is picked (the creations are scheduled instead). WETH is token index 8.
WEIGHTS = {"token_transfer": 30, "token_approve": 6, "weth_transfer": 6, "weth_approve": 2,
           "deposit": 4, "withdraw": 3, "v2_swap": 14, "v2_mint": 2, "v2_burn": 1.5,
           "v2_approve": 1, "v3_swap": 10, "v3_mint": 1.5, "v3_burn": 1, "v3_collect": 1,
           "v3_flash": 0.5}

# contract name in the chain file, ABI file, events indexed (None: all)
SOURCES = [
    ("Token", "erc20.json", None),
    ("WETH9", "weth9.json", None),
    ("UniswapV2Factory", "uniswap_v2_factory.json", ["PairCreated"]),
    ("UniswapV2Pair", "uniswap_v2_pair.json",
     ["Swap", "Sync", "Mint", "Burn", "Transfer", "Approval"]),
    ("UniswapV3Factory", "uniswap_v3_factory.json", ["PoolCreated"]),
    ("UniswapV3Pool", "uniswap_v3_pool.json",
     ["Initialize", "Mint", "Burn", "Swap", "Collect", "Flash"]),
]
FACTORIES = {"UniswapV2Pair": ("UniswapV2Factory", "PairCreated", "pair"),
             "UniswapV3Pool": ("UniswapV3Factory", "PoolCreated", "pool")}


def snake_case(name: str) -> str:
    """The indexer's public table-naming rule (README: tables are <contract>_<event>)."""
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    s = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", "_", s)
    return re.sub(r"[^a-z0-9_]", "_", s.lower())


def table_of(contract: str, event: str) -> str:
    return f"{snake_case(contract)}_{snake_case(event)}"


def _events(abi_file: str | Path) -> list[dict[str, Any]]:
    """The events of an ABI file (a name in chains/abis or a path)."""
    return [e for e in json.loads((ABIS / abi_file).read_text()) if e.get("type") == "event"]


def topic0(event: dict[str, Any]) -> str:
    sig = f"{event['name']}({','.join(i['type'] for i in event['inputs'])})"
    return "0x" + keccak(text=sig).hex()


def _npm(path: str) -> Compiled:
    data = json.loads((NPM_MODULES / path).read_text())
    code = data["bytecode"]
    return Compiled(data["abi"], code if code.startswith("0x") else "0x" + code)


def _create(rpc: JsonRpc, art: Compiled, *args: Any, gas: int = 12_000_000) -> str:
    data = art.bytecode + constructor_args(art.abi, args).hex()
    got = receipt(rpc, send(rpc, ACCOUNT0, None, data, gas=gas))
    return to_checksum_address(got["contractAddress"])


def _selector(sig: str) -> str:
    return "0x" + keccak(text=sig)[:4].hex()


def op(kind: int, a: int = 0, b: int = 0, c: int = 0, amount: int = 0) -> int:
    return kind | (a << 8) | (b << 16) | (c << 24) | (amount << 32)


def run_data(ops: list[int]) -> str:
    return _selector("run(uint256[])") + encode(["uint256[]"], [ops]).hex()


class _Plan:
    """Chooses each block's ops (deterministic for a seed), tracking pairs and pools."""

    def __init__(self, rng: random.Random, v2_pairs: int, v3_pools: int) -> None:
        self.rng = rng
        combos = [(i, j) for i in range(N_TOKENS + 1) for j in range(i + 1, N_TOKENS + 1)]
        rng.shuffle(combos)
        self.v2_todo = combos[:v2_pairs]
        v3 = [(i, j, t) for (i, j) in combos for t in range(3)]
        rng.shuffle(v3)
        self.v3_todo = v3[:v3_pools]
        self.pairs = 0
        self.pools = 0
        self.kinds = sorted(WEIGHTS)
        self.weights = [WEIGHTS[k] for k in self.kinds]

    def create_v2(self) -> int:
        a, b = self.v2_todo[self.pairs]
        self.pairs += 1
        return op(V2_CREATE, a, b, amount=10**24)

    def create_v3(self) -> int:
        a, b, tier = self.v3_todo[self.pools]
        self.pools += 1
        return op(V3_CREATE, a, b, tier, amount=10**24)

    def pick(self) -> int:
        r = self.rng
        kind = r.choices(self.kinds, self.weights)[0]
        who = r.randrange(64)
        tokens = r.randint(1, 1000) * E18  # an amount of tokens (or ETH) to move
        allowance = r.randint(0, 10**6) * E18
        if kind.startswith("v2_"):
            p = r.randrange(self.pairs)
        elif kind.startswith("v3_"):
            p = r.randrange(self.pools)
        choices = {
            "token_transfer": lambda: op(TRANSFER, r.randrange(N_TOKENS), who, amount=tokens),
            "token_approve": lambda: op(APPROVE, r.randrange(N_TOKENS), who, amount=allowance),
            "weth_transfer": lambda: op(TRANSFER, N_TOKENS, who, amount=tokens // 1000),
            "weth_approve": lambda: op(APPROVE, N_TOKENS, who, amount=allowance),
            "deposit": lambda: op(DEPOSIT, amount=tokens // 100),
            "withdraw": lambda: op(WITHDRAW, amount=tokens // 1000),
            "v2_swap": lambda: op(V2_SWAP, p, r.randrange(2), amount=tokens),
            "v2_mint": lambda: op(V2_MINT, p, amount=tokens // 10 + 100 * E18),
            "v2_burn": lambda: op(V2_BURN, p),
            "v2_approve": lambda: op(V2_APPROVE, p, who, amount=allowance),
            "v3_swap": lambda: op(V3_SWAP, p, r.randrange(2), amount=tokens),
            "v3_mint": lambda: op(V3_MINT, p, amount=tokens // 10 + 100 * E18),
            "v3_burn": lambda: op(V3_BURN, p),
            "v3_collect": lambda: op(V3_COLLECT, p),
            "v3_flash": lambda: op(V3_FLASH, p, amount=tokens // 10),
        }
        return choices[kind]()


def generate(url: str, *, logs: int = 500_000, logs_per_block: int = 1000, seed: int = 1,
             v2_pairs: int = 27, v3_pools: int = 12, at_start: tuple[int, int] = (3, 2),
             tail_blocks: int = 64, progress: bool = False) -> dict[str, Any]:
    """Deploy the contracts from account 0 of a fresh anvil (started with a block gas limit of
    at least 2e9) and mine blocks until at least ``logs`` logs; returns the chain's facts
    (addresses, head, and per event table the rows an indexer of ``chain_config`` must write,
    counted from ``eth_getLogs``). ``tail_blocks`` empty blocks end the chain, so that every
    log is final to an indexer that holds back a finality window (Ponder keeps 30 blocks on a
    chain it does not know): all of them are backfill work, as on a long chain."""
    t0 = time.perf_counter()
    rpc = JsonRpc(url, timeout=600)
    if int(rpc.call("eth_getTransactionCount", ACCOUNT0, "latest"), 16) != 0:
        raise RuntimeError("the mixed workload needs a fresh anvil (account 0 has sent already)")
    weth = _create(rpc, artifact("WETH9"))
    v2 = _create(rpc, artifact("UniswapV2Factory"), ACCOUNT0)
    v3 = _create(rpc, _npm(V3_FACTORY_ARTIFACT), gas=30_000_000)
    token_art = artifact("TestToken")
    tokens = [_create(rpc, token_art, f"Token {i}", f"TK{i}", TOKEN_SUPPLY)
              for i in range(N_TOKENS)]
    helper_art = compile_contract("MixedTraffic", HERE / "MixedTraffic.sol")
    helper = _create(rpc, helper_art, [*tokens, weth], weth, v2, v3, gas=30_000_000)
    rpc.call("anvil_setBalance", helper, hex(10**30))
    transfer = _selector("transfer(address,uint256)")
    for t in tokens:
        data = transfer + encode(["address", "uint256"], [helper, TOKEN_SUPPLY]).hex()
        receipt(rpc, send(rpc, ACCOUNT0, t, data, gas=200_000))

    rng = random.Random(seed)
    plan = _Plan(rng, v2_pairs, v3_pools)
    first_ops = [op(DEPOSIT, amount=10**28)]
    first_ops += [plan.create_v2() for _ in range(at_start[0])]
    first_ops += [plan.create_v3() for _ in range(at_start[1])]
    # The rest of the pairs and pools, spread over the chain by log count.
    later_v2 = [logs * (i + 1) // (v2_pairs - at_start[0] + 1)
                for i in range(v2_pairs - at_start[0])]
    later_v3 = [logs * (i + 1) // (v3_pools - at_start[1] + 1)
                for i in range(v3_pools - at_start[1])]
    estimated = 0
    hashes: list[str] = []
    rpc.call("evm_setAutomine", False)
    try:
        ops = first_ops
        while True:
            budget = sum(LOGS_PER_OP[o & 0xFF] for o in ops)
            while budget < logs_per_block:
                if later_v2 and estimated + budget >= later_v2[0]:
                    later_v2.pop(0)
                    ops.append(plan.create_v2())
                elif later_v3 and estimated + budget >= later_v3[0]:
                    later_v3.pop(0)
                    ops.append(plan.create_v3())
                else:
                    ops.append(plan.pick())
                budget += LOGS_PER_OP[ops[-1] & 0xFF]
            hashes.append(send(rpc, ACCOUNT0, helper, run_data(ops), gas=1_500_000_000))
            rpc.call("evm_mine")
            estimated += budget
            if progress and len(hashes) % 100 == 0:
                print(f"  mixed: {len(hashes)} blocks, about {estimated:,} logs, "
                      f"{time.perf_counter() - t0:.0f}s", flush=True)
            if estimated >= logs:
                break
            ops = []
    finally:
        rpc.call("evm_setAutomine", True)
    for i in range(0, len(hashes), 200):
        got = rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes[i:i + 200]])
        for h, r in zip(hashes[i:i + 200], got, strict=True):
            if r is None or int(r["status"], 16) != 1:
                raise RuntimeError(f"mixed traffic transaction {h} failed or not mined: {r}")
    if tail_blocks:
        rpc.call("anvil_mine", hex(tail_blocks))
    head = int(rpc.call("eth_blockNumber"), 16)
    facts: dict[str, Any] = {
        "workload": "mixed", "seed": seed, "logs_per_block": logs_per_block,
        "addresses": {"WETH9": weth, "UniswapV2Factory": v2, "UniswapV3Factory": v3,
                      "Token": tokens, "MixedTraffic": helper},
        "head": head,
        "head_hash": rpc.call("eth_getBlockByNumber", hex(head), False)["hash"],
        "traffic_blocks": len(hashes),
        "pairs": plan.pairs, "pools": plan.pools,
    }
    facts.update(count_logs(url, chain_config(facts), head))
    facts["generate_seconds"] = round(time.perf_counter() - t0, 1)
    rpc.close()
    return facts


def count_logs(url: str, config: dict[str, Any], head: int, step: int = 20) -> dict[str, Any]:
    """Every log of blocks 0..head read with ``eth_getLogs`` and sorted into the event tables
    that a chain file (``config``, its parsed YAML with absolute ABI paths) selects: fixed
    addresses, and factory children found from their factory's logs as an indexer must:
    {"logs": all logs on the chain, "expected": {table: rows}, "children": {contract: n}}."""
    fixed: dict[str, dict[str, str]] = {}  # address -> topic0 -> table
    child_topics: dict[str, dict[str, str]] = {}  # child contract -> topic0 -> table
    creators: dict[tuple[str, str], tuple[str, int]] = {}  # (factory, topic0) -> (child, word)
    by_name = {c["name"]: c for c in config["contracts"]}
    for c in config["contracts"]:
        wanted = c.get("events")
        evs = [e for e in _events(c["abi"]) if wanted is None or e["name"] in wanted]
        topics = {topic0(e): table_of(c["name"], e["name"]) for e in evs}
        if c.get("factory"):
            child_topics[c["name"]] = topics
            f = c["factory"]
            ev = next(e for e in _events(by_name[f["contract"]]["abi"]) if e["name"] == f["event"])
            word = [i["name"] for i in ev["inputs"] if not i["indexed"]].index(f["parameter"])
            factory_addrs = by_name[f["contract"]]["address"]
            for fa in factory_addrs if isinstance(factory_addrs, list) else [factory_addrs]:
                creators[(fa.lower(), topic0(ev))] = (c["name"], word)
            continue
        addrs = c["address"] if isinstance(c["address"], list) else [c["address"]]
        for a in addrs:
            fixed[a.lower()] = topics
    children: dict[str, str] = {}  # child address -> contract
    expected: Counter[str] = Counter()
    total = 0
    with JsonRpc(url, timeout=600) as rpc:
        for lo in range(0, head + 1, step):
            got = rpc.call("eth_getLogs", {"fromBlock": hex(lo),
                                           "toBlock": hex(min(lo + step - 1, head))})
            total += len(got)
            for lg in got:
                addr, t0 = lg["address"].lower(), lg["topics"][0] if lg["topics"] else ""
                table = fixed.get(addr, {}).get(t0)
                if table is None and addr in children:
                    table = child_topics[children[addr]].get(t0)
                if table is not None:
                    expected[table] += 1
                made = creators.get((addr, t0))
                if made is not None:
                    child, word = made
                    data = lg["data"][2:]
                    children["0x" + data[64 * word + 24:64 * word + 64]] = child
    kinds = Counter(children.values())
    return {"logs": total, "expected": dict(sorted(expected.items())),
            "children": dict(sorted(kinds.items()))}


def chain_config(facts: dict[str, Any], *, get_logs_max_range: int = 100,
                 partition_blocks: int = 1_000_000) -> dict[str, Any]:
    """The indexer's chain file for the chain ``generate`` made (ABI paths absolute; the RPC
    from ANVIL_RPC_URL)."""
    a = facts["addresses"]
    contracts: list[dict[str, Any]] = []
    for name, abi_file, wanted in SOURCES:
        c: dict[str, Any] = {"name": name, "abi": str(ABIS / abi_file)}
        if name in FACTORIES:
            factory, event, param = FACTORIES[name]
            c["factory"] = {"contract": factory, "event": event, "parameter": param}
        else:
            c["address"] = a[name]
        if wanted is not None:
            c["events"] = wanted
        contracts.append(c)
    return {
        "name": "anvil", "chain_id": 31337,
        "rpc": [{"url": "${ANVIL_RPC_URL:-http://127.0.0.1:8545}"}],
        "block_time": "1s", "finality_depth": 0, "start_block": 0,
        "get_logs_max_range": get_logs_max_range, "partition_blocks": partition_blocks,
        "contracts": contracts,
    }
