"""Contract artifacts and the deterministic deployment of the demo system on anvil.

Deployment order is fixed (account 0, nonces 0..4) so addresses are known in advance; the
anvil chain file (chains/anvil.yaml) relies on them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi import encode
from eth_utils import to_checksum_address
from eth_utils.abi import collapse_if_tuple
from web3 import HTTPProvider, Web3
from web3.contract import Contract

from tests.support.rpc import JsonRpc
from tests.support.services import NPM_MODULES
from tests.support.solc import CONTRACTS_DIR, Compiled, compile_contract, compile_sources

# anvil's default mnemonic ("test test ... junk"): the dev accounts it unlocks.
ACCOUNTS = [
    to_checksum_address(a)
    for a in (
        "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
        "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc",
        "0x90f79bf6eb2c4f870365e785982e1f101e93b906",
        "0x15d34aaf54267db7d7c367839aaf71a00a2c6a65",
        "0x9965507d1a55bcc2695c58ba16fb37d819b0a4dc",
        "0x976ea74026e726554db657fa54763abd0c3a0aa9",
        "0x14dc79964da2c08b23698b3d3cc7ca32193d9955",
        "0x23618e81e3f5cdf7f54c3d65f7fbc0abf5b21e8f",
        "0xa0ee7a142d267c1f36714e4a8f75612f20a79720",
    )
]
ACCOUNT0 = ACCOUNTS[0]

TOKEN_SUPPLY = 10**9 * 10**18

NPM_ARTIFACTS = {
    "WETH9": "canonical-weth/build/contracts/WETH9.json",
    "UniswapV2Factory": "@uniswap/v2-core/build/UniswapV2Factory.json",
    "UniswapV2Pair": "@uniswap/v2-core/build/UniswapV2Pair.json",
    "UniswapV2ERC20": "@uniswap/v2-core/build/UniswapV2ERC20.json",
    "UniswapV2Router02": "@uniswap/v2-periphery/build/UniswapV2Router02.json",
}


@dataclass(frozen=True)
class Addresses:
    weth: str
    factory: str
    router: str
    token_a: str
    token_b: str

    def as_dict(self) -> dict[str, str]:
        return {
            "WETH9": self.weth,
            "UniswapV2Factory": self.factory,
            "UniswapV2Router02": self.router,
            "TestTokenA": self.token_a,
            "TestTokenB": self.token_b,
        }


# Account 0, nonces 0..4: WETH9, UniswapV2Factory, UniswapV2Router02, TestToken A, TestToken B.
EXPECTED = Addresses(
    weth="0x5FbDB2315678afecb367f032d93F642f64180aa3",
    factory="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    router="0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
    token_a="0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",
    token_b="0xDc64a140Aa3E981100a9becA4E685f962f0cF6C9",
)


@cache
def artifact(name: str) -> Compiled:
    """ABI and creation bytecode: an npm artifact (WETH9, UniswapV2*) or a contract compiled
    from tests/contracts (<name>.sol first, then any file defining it)."""
    if name in NPM_ARTIFACTS:
        data = json.loads((NPM_MODULES / NPM_ARTIFACTS[name]).read_text())
        code = data["bytecode"] if isinstance(data["bytecode"], str) else data["bytecode"]["object"]
        return Compiled(data["abi"], code if code.startswith("0x") else "0x" + code)
    if (CONTRACTS_DIR / f"{name}.sol").exists():
        return compile_contract(name)
    for path in sorted(CONTRACTS_DIR.glob("*.sol")):  # e.g. NftLike lives in AllTypes.sol
        compiled = compile_sources([path])
        if name in compiled:
            return compiled[name]
    raise KeyError(f"no artifact {name}: not an npm artifact nor a contract in {CONTRACTS_DIR}")


def abi(name: str) -> list[dict[str, Any]]:
    return artifact(name).abi


def constructor_args(contract_abi: list[dict[str, Any]], args: tuple[Any, ...]) -> bytes:
    ctor = next((e for e in contract_abi if e.get("type") == "constructor"), {"inputs": []})
    return encode([collapse_if_tuple(i) for i in ctor["inputs"]], list(args))


def connect(url: str) -> Web3:
    return Web3(HTTPProvider(url, request_kwargs={"timeout": 60}))


@dataclass
class Deployed:
    """The deployed demo system: web3 handles plus a fast raw RPC client for sending."""

    url: str
    w3: Web3
    rpc: JsonRpc
    addresses: Addresses
    weth: Contract
    factory: Contract
    router: Contract
    token_a: Contract
    token_b: Contract
    deploy_block: int

    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=to_checksum_address(address), abi=abi(name))

    def pair(self, token0: str, token1: str) -> str | None:
        """The pair address for two tokens, or None before it is created."""
        got = self.factory.functions.getPair(token0, token1).call()
        return None if int(got, 16) == 0 else str(got)

    def pairs(self) -> list[str]:
        n = self.factory.functions.allPairsLength().call()
        return [self.factory.functions.allPairs(i).call() for i in range(n)]


def send(
    rpc: JsonRpc,
    sender: str,
    to: str | None,
    data: str = "0x",
    *,
    value: int = 0,
    gas: int = 1_000_000,
) -> str:
    """eth_sendTransaction from an unlocked dev account; explicit gas skips estimation."""
    tx: dict[str, Any] = {"from": sender, "data": data, "gas": hex(gas), "value": hex(value)}
    if to is not None:
        tx["to"] = to
    return str(rpc.call("eth_sendTransaction", tx))


def receipt(rpc: JsonRpc, tx_hash: str, timeout: float = 30.0) -> dict[str, Any]:
    """The receipt once mined (anvil mines asynchronously even with automine); raises if the
    transaction reverted or is not mined within `timeout` (automine off?)."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while (got := rpc.call("eth_getTransactionReceipt", tx_hash)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no receipt for {tx_hash} after {timeout}s (automine off?)")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    if int(got["status"], 16) != 1:
        raise RuntimeError(f"transaction {tx_hash} reverted: {got}")
    return dict(got)


class Deployer:
    """Deploys WETH9, UniswapV2Factory, UniswapV2Router02 and two TestTokens from account 0."""

    def __init__(self, url: str, *, sender: str = ACCOUNT0) -> None:
        self.url = url
        self.w3 = connect(url)
        self.rpc = JsonRpc(url)
        self.sender = sender

    def _create(self, name: str, *args: Any, gas: int = 6_000_000) -> str:
        art = artifact(name)
        data = art.bytecode + constructor_args(art.abi, args).hex()
        got = receipt(self.rpc, send(self.rpc, self.sender, None, data, gas=gas))
        return to_checksum_address(got["contractAddress"])

    def deploy(self, *, check_addresses: bool = True) -> Deployed:
        nonce = int(self.rpc.call("eth_getTransactionCount", self.sender, "latest"), 16)
        if check_addresses and (nonce != 0 or self.sender != ACCOUNT0):
            raise RuntimeError(
                f"fixed addresses need a fresh chain and account 0 (nonce is {nonce})"
            )
        weth = self._create("WETH9")
        factory = self._create("UniswapV2Factory", self.sender)
        router = self._create("UniswapV2Router02", factory, weth)
        token_a = self._create("TestToken", "DemoToken A", "DTA", TOKEN_SUPPLY)
        token_b = self._create("TestToken", "DemoToken B", "DTB", TOKEN_SUPPLY)
        got = Addresses(weth, factory, router, token_a, token_b)
        if check_addresses and got != EXPECTED:
            raise RuntimeError(f"deployed at {got}, expected {EXPECTED}")
        c = self.w3.eth.contract
        return Deployed(
            url=self.url,
            w3=self.w3,
            rpc=self.rpc,
            addresses=got,
            weth=c(address=weth, abi=abi("WETH9")),
            factory=c(address=factory, abi=abi("UniswapV2Factory")),
            router=c(address=router, abi=abi("UniswapV2Router02")),
            token_a=c(address=token_a, abi=abi("TestToken")),
            token_b=c(address=token_b, abi=abi("TestToken")),
            deploy_block=int(self.rpc.call("eth_blockNumber"), 16),
        )


def deploy_contract(
    url: str, name: str, *args: Any, sender: str = ACCOUNT0, gas: int = 8_000_000
) -> Contract:
    """Deploy one artifact (npm or tests/contracts/<name>.sol) and return its web3 contract."""
    art = artifact(name)
    with JsonRpc(url) as rpc:
        got = receipt(
            rpc,
            send(rpc, sender, None, art.bytecode + constructor_args(art.abi, args).hex(), gas=gas),
        )
    return connect(url).eth.contract(
        address=to_checksum_address(got["contractAddress"]), abi=art.abi
    )


def deploy(url: str) -> Deployed:
    return Deployer(url).deploy()
