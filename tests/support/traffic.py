"""Realistic, deterministic traffic on the deployed demo system, and bulk log generation.

`run_traffic` drives ERC20 transfers and approvals, WETH deposits, withdrawals and transfers,
and Uniswap V2 pair creation (A/B first, A/WETH and B/WETH later in the run), liquidity adds and
removals and swaps in both directions. The same seed and rounds give the same sequence of
transactions. By default each transaction is its own block (anvil automine); `txs_per_block`
packs several per block with automine off and `evm_mine`.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_utils import to_checksum_address
from web3.contract import Contract

from tests.support.contracts import ACCOUNT0, ACCOUNTS, Deployed, receipt, send
from tests.support.rpc import JsonRpc

E18 = 10**18
MAX_UINT = 2**256 - 1
DEADLINE = 2**63
USERS = ACCOUNTS[1:]
USER_TOKENS = 1_000_000 * E18
USER_WETH = 50 * E18

GAS = {
    "transfer": 120_000,
    "approve": 100_000,
    "weth": 100_000,
    "create_pair": 5_000_000,
    "liquidity": 400_000,
    "swap": 400_000,
}


@dataclass
class TrafficReport:
    first_block: int
    last_block: int
    tx_hashes: list[str] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    pair_created_at: dict[str, int] = field(default_factory=dict)  # pair label -> round


@dataclass
class BulkReport:
    first_block: int
    last_block: int
    n_logs: int
    n_txs: int
    seconds: float


class _Sender:
    """Sends encoded calls from unlocked dev accounts; optionally packs txs into blocks."""

    def __init__(self, deployed: Deployed, txs_per_block: int | None) -> None:
        self.d = deployed
        self.rpc: JsonRpc = deployed.rpc
        self.txs_per_block = txs_per_block
        self.pending = 0
        self.hashes: list[str] = []

    def call(
        self, sender: str, contract: Contract, fn: str, *args: Any, gas: int, value: int = 0
    ) -> str:
        data = contract.encode_abi(fn, args)
        tx = send(self.rpc, sender, contract.address, data, value=value, gas=gas)
        self.hashes.append(tx)
        if not self.txs_per_block:
            # anvil mines asynchronously even with automine: without waiting, a loaded machine
            # can put two transactions in one block.
            receipt(self.rpc, tx)
            return tx
        self.pending += 1
        if self.pending >= self.txs_per_block:
            self.mine()
        return tx

    def mine(self) -> None:
        """Mine everything pending (only meaningful with automine off)."""
        if not self.txs_per_block:
            return
        while self.pending:
            self.rpc.call("evm_mine")
            status = self.rpc.call("txpool_status")
            self.pending = int(status["pending"], 16) + int(status["queued"], 16)

    def settle(self) -> None:
        """Wait for all sent transactions and check that none reverted."""
        self.mine()
        for tx in self.hashes:
            receipt(self.rpc, tx)


class _Traffic:
    def __init__(
        self, deployed: Deployed, rng: random.Random, sender: _Sender, report: TrafficReport
    ) -> None:
        self.d = deployed
        self.rng = rng
        self.s = sender
        self.report = report
        a = deployed.addresses
        self.tokens = {"A": deployed.token_a, "B": deployed.token_b}
        self.pair_tokens = {
            "A/B": (a.token_a, a.token_b),
            "A/WETH": (a.token_a, a.weth),
            "B/WETH": (a.token_b, a.weth),
        }
        # pair label -> LP holder -> LP units it may still remove (a lower bound of its balance)
        self.lp_holders: dict[str, dict[str, int]] = {}

    # ---- setup (idempotent enough: re-running only adds transfers and approvals)

    def prepare(self) -> None:
        router = self.d.addresses.router
        for user in USERS:
            for token in self.tokens.values():
                self.s.call(ACCOUNT0, token, "transfer", user, USER_TOKENS, gas=GAS["transfer"])
            self.s.call(user, self.d.weth, "deposit", gas=GAS["weth"], value=USER_WETH)
        for user in [ACCOUNT0, *USERS]:
            for token in [*self.tokens.values(), self.d.weth]:
                self.s.call(user, token, "approve", router, MAX_UINT, gas=GAS["approve"])
        self.report.actions["prepare"] += 1

    # ---- pairs

    def create_pair(self, label: str, round_no: int) -> None:
        t0, t1 = self.pair_tokens[label]
        router, lp = self.d.router, ACCOUNT0
        if t1 == self.d.addresses.weth:
            self.s.call(
                lp,
                router,
                "addLiquidityETH",
                t0,
                100_000 * E18,
                0,
                0,
                lp,
                DEADLINE,
                gas=GAS["create_pair"],
                value=100 * E18,
            )
        else:
            self.s.call(
                lp,
                router,
                "addLiquidity",
                t0,
                t1,
                100_000 * E18,
                50_000 * E18,
                0,
                0,
                lp,
                DEADLINE,
                gas=GAS["create_pair"],
            )
        self.s.mine()
        receipt(self.s.rpc, self.s.hashes[-1])
        pair = self.d.pair(t0, t1)
        assert pair is not None, f"pair {label} not created"
        self.s.call(
            lp,
            self.d.contract("UniswapV2Pair", pair),
            "approve",
            self.d.addresses.router,
            MAX_UINT,
            gas=GAS["approve"],
        )
        self.lp_holders[label] = {lp: 10**21}
        self.report.pair_created_at[label] = round_no
        self.report.actions["create_pair"] += 1

    # ---- actions (each returns False when not possible yet)

    def token_transfer(self) -> bool:
        token = self.tokens[self.rng.choice("AB")]
        src, dst = self.rng.sample(USERS, 2)
        self.s.call(
            src, token, "transfer", dst, self.rng.randint(1, 1000) * E18, gas=GAS["transfer"]
        )
        return True

    def token_approve(self) -> bool:
        token = self.tokens[self.rng.choice("AB")]
        src, spender = self.rng.sample(USERS, 2)
        self.s.call(
            src, token, "approve", spender, self.rng.randint(0, 10**6) * E18, gas=GAS["approve"]
        )
        return True

    def weth_deposit(self) -> bool:
        user = self.rng.choice(USERS)
        self.s.call(
            user,
            self.d.weth,
            "deposit",
            gas=GAS["weth"],
            value=self.rng.randint(1, 100) * E18 // 100,
        )
        return True

    def weth_withdraw(self) -> bool:
        user = self.rng.choice(USERS)
        self.s.call(
            user, self.d.weth, "withdraw", self.rng.randint(1, 100) * E18 // 1000, gas=GAS["weth"]
        )
        return True

    def weth_transfer(self) -> bool:
        src, dst = self.rng.sample(USERS, 2)
        self.s.call(
            src,
            self.d.weth,
            "transfer",
            dst,
            self.rng.randint(1, 100) * E18 // 1000,
            gas=GAS["transfer"],
        )
        return True

    def swap_tokens(self) -> bool:
        if "A/B" not in self.lp_holders:
            return False
        a, b = self.d.addresses.token_a, self.d.addresses.token_b
        path = [a, b] if self.rng.random() < 0.5 else [b, a]
        user = self.rng.choice(USERS)
        self.s.call(
            user,
            self.d.router,
            "swapExactTokensForTokens",
            self.rng.randint(1, 500) * E18,
            0,
            path,
            user,
            DEADLINE,
            gas=GAS["swap"],
        )
        return True

    def swap_eth(self) -> bool:
        labels = [p for p in ("A/WETH", "B/WETH") if p in self.lp_holders]
        if not labels:
            return False
        token = self.pair_tokens[self.rng.choice(labels)][0]
        weth, user = self.d.addresses.weth, self.rng.choice(USERS)
        if self.rng.random() < 0.5:
            self.s.call(
                user,
                self.d.router,
                "swapExactETHForTokens",
                0,
                [weth, token],
                user,
                DEADLINE,
                gas=GAS["swap"],
                value=self.rng.randint(1, 100) * E18 // 1000,
            )
        else:
            self.s.call(
                user,
                self.d.router,
                "swapExactTokensForETH",
                self.rng.randint(1, 100) * E18,
                0,
                [token, weth],
                user,
                DEADLINE,
                gas=GAS["swap"],
            )
        return True

    def add_liquidity(self) -> bool:
        if not self.lp_holders:
            return False
        label = self.rng.choice(sorted(self.lp_holders))
        t0, t1 = self.pair_tokens[label]
        user = self.rng.choice(USERS)
        amount = self.rng.randint(10, 1000) * E18
        if t1 == self.d.addresses.weth:
            self.s.call(
                user,
                self.d.router,
                "addLiquidityETH",
                t0,
                amount,
                0,
                0,
                user,
                DEADLINE,
                gas=GAS["liquidity"],
                value=amount // 1000,
            )
        else:
            self.s.call(
                user,
                self.d.router,
                "addLiquidity",
                t0,
                t1,
                amount,
                amount,
                0,
                0,
                user,
                DEADLINE,
                gas=GAS["liquidity"],
            )
        holders = self.lp_holders[label]
        if user not in holders:
            pair = self.d.pair(t0, t1)
            assert pair is not None
            self.s.call(
                user,
                self.d.contract("UniswapV2Pair", pair),
                "approve",
                self.d.addresses.router,
                MAX_UINT,
                gas=GAS["approve"],
            )
        # >= 10 tokens (and amount/1000 ETH) mint well over 1e17 LP units in every demo pair.
        holders[user] = holders.get(user, 0) + 10**17
        return True

    def remove_liquidity(self) -> bool:
        if not self.lp_holders:
            return False
        label = self.rng.choice(sorted(self.lp_holders))
        t0, t1 = self.pair_tokens[label]
        liquidity = self.rng.randint(1, 1000) * 10**12
        holders = self.lp_holders[label]
        candidates = sorted(u for u, credit in holders.items() if credit >= liquidity)
        if not candidates:
            return False
        user = self.rng.choice(candidates)
        holders[user] -= liquidity
        if t1 == self.d.addresses.weth:
            self.s.call(
                user,
                self.d.router,
                "removeLiquidityETH",
                t0,
                liquidity,
                0,
                0,
                user,
                DEADLINE,
                gas=GAS["liquidity"],
            )
        else:
            self.s.call(
                user,
                self.d.router,
                "removeLiquidity",
                t0,
                t1,
                liquidity,
                0,
                0,
                user,
                DEADLINE,
                gas=GAS["liquidity"],
            )
        return True

    def actions(self) -> dict[str, Callable[[], bool]]:
        return {
            "token_transfer": self.token_transfer,
            "token_approve": self.token_approve,
            "weth_deposit": self.weth_deposit,
            "weth_withdraw": self.weth_withdraw,
            "weth_transfer": self.weth_transfer,
            "swap_tokens": self.swap_tokens,
            "swap_eth": self.swap_eth,
            "add_liquidity": self.add_liquidity,
            "remove_liquidity": self.remove_liquidity,
        }

    def round(self, round_no: int, schedule: dict[int, list[str]]) -> None:
        for label in schedule.get(round_no, []):
            if label not in self.lp_holders:
                self.create_pair(label, round_no)
        table = self.actions()
        for name in self.rng.choices(sorted(table), k=self.rng.randint(2, 6)):
            if table[name]():
                self.report.actions[name] += 1

    def sweep(self) -> None:
        """One of every action, so a run of any length covers every event kind."""
        for name, action in self.actions().items():
            if action():
                self.report.actions[name] += 1


def pair_schedule(rounds: int) -> dict[int, list[str]]:
    """A/B in the first round, A/WETH a third of the way in, B/WETH two thirds in."""
    schedule: dict[int, list[str]] = {}
    for label, at in (("A/B", 0), ("A/WETH", rounds // 3), ("B/WETH", 2 * rounds // 3)):
        schedule.setdefault(at, []).append(label)
    return schedule


def run_traffic(
    deployed: Deployed,
    rounds: int = 30,
    seed: int = 0,
    *,
    txs_per_block: int | None = None,
    prepare: bool = True,
    sweep: bool = True,
) -> TrafficReport:
    """Drive `rounds` rounds of mixed activity; returns the blocks it spans and what it did.

    `txs_per_block=None` keeps automine (one tx per block); an int turns automine off and mines
    a block every that many transactions (restored afterwards). All three pairs exist when it
    returns; with `sweep` every event kind (Transfer, Approval, Deposit, Withdrawal, PairCreated,
    Mint, Burn, Swap, Sync) has been emitted at least once.
    """
    rpc = deployed.rpc
    first = int(rpc.call("eth_blockNumber"), 16) + 1
    report = TrafficReport(first_block=first, last_block=first - 1)
    sender = _Sender(deployed, txs_per_block)
    traffic = _Traffic(deployed, random.Random(seed), sender, report)
    for label, (t0, t1) in traffic.pair_tokens.items():
        pair = deployed.pair(t0, t1)
        if pair is not None:  # a previous run created it: LP (account 0) approved already
            traffic.lp_holders[label] = {ACCOUNT0: 10**21}
    if txs_per_block:
        rpc.call("evm_setAutomine", False)
    try:
        if prepare:
            traffic.prepare()
        schedule = pair_schedule(rounds)
        for r in range(rounds):
            traffic.round(r, schedule)
        for labels in schedule.values():  # rounds < 3 still creates every pair
            for label in labels:
                if label not in traffic.lp_holders:
                    traffic.create_pair(label, rounds)
        if sweep:
            traffic.sweep()
        sender.settle()
    finally:
        if txs_per_block:
            rpc.call("evm_setAutomine", True)
    report.tx_hashes = sender.hashes
    report.last_block = int(rpc.call("eth_blockNumber"), 16)
    return report


def bulk_transfers(
    url: str,
    token: str,
    n_logs: int,
    *,
    logs_per_tx: int = 1000,
    txs_per_block: int = 10,
    sender: str = ACCOUNT0,
    amount: int = 1,
) -> BulkReport:
    """Emit `n_logs` Transfer events from TestToken.emitTransfers (no storage writes), packing
    `txs_per_block` transactions of `logs_per_tx` events into each block.

    The block gas limit must hold txs_per_block * (about 2,100 * logs_per_tx) gas: start anvil
    with a larger `gas_limit` or `--disable-block-gas-limit` for big packs. Transactions that do
    not fit spill into the next block. Restores automine afterwards.
    """
    from tests.support.contracts import abi, connect

    w3 = connect(url)
    contract = w3.eth.contract(address=to_checksum_address(token), abi=abi("TestToken"))
    gas_per_tx = 2_200 * logs_per_tx + 60_000
    t0 = time.perf_counter()
    with JsonRpc(url) as rpc:
        first = int(rpc.call("eth_blockNumber"), 16) + 1
        nonce = int(rpc.call("eth_getTransactionCount", sender, "pending"), 16)
        chunks = [logs_per_tx] * (n_logs // logs_per_tx) + (
            [n_logs % logs_per_tx] if n_logs % logs_per_tx else []
        )
        rpc.call("evm_setAutomine", False)
        hashes: list[str] = []
        try:
            for start in range(0, len(chunks), txs_per_block):
                calls = []
                for n in chunks[start : start + txs_per_block]:
                    tx = {
                        "from": sender,
                        "to": contract.address,
                        "nonce": hex(nonce),
                        "gas": hex(gas_per_tx),
                        "data": contract.encode_abi("emitTransfers", [n, amount]),
                    }
                    calls.append(("eth_sendTransaction", [tx]))
                    nonce += 1
                hashes += rpc.batch(calls)
                _mine_all(rpc)
        finally:
            rpc.call("evm_setAutomine", True)
        for i in range(0, len(hashes), 500):
            for got in rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes[i : i + 500]]):
                if got is None or int(got["status"], 16) != 1:
                    raise RuntimeError(f"bulk transaction failed or not mined: {got}")
        last = int(rpc.call("eth_blockNumber"), 16)
    return BulkReport(first, last, n_logs, len(chunks), time.perf_counter() - t0)


def _mine_all(rpc: JsonRpc) -> None:
    while True:
        rpc.call("evm_mine")
        status = rpc.call("txpool_status")
        if int(status["pending"], 16) + int(status["queued"], 16) == 0:
            return
