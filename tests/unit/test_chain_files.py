"""The chain files and ABIs shipped in chains/: they load, and their facts are right."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from Crypto.Hash import keccak

from indexer.config import ChainConfig, load_chain, shipped_chains_dir

CHAINS_DIR = shipped_chains_dir()
CHAIN_FILES = sorted(CHAINS_DIR.glob("*.yaml"))
ABIS_DIR = CHAINS_DIR / "abis"

KNOWN_CHAIN_IDS = {
    "ethereum": 1,
    "avalanche": 43114,
    "polygon": 137,
    "arbitrum": 42161,
    "optimism": 10,
    "base": 8453,
    "bsc": 56,
    "gnosis": 100,
    "linea": 59144,
    "scroll": 534352,
    "zksync": 324,
    "sonic": 146,
    "fantom": 250,
    "anvil": 31337,
}

# topic0 of well-known events, as published on block explorers.
KNOWN_TOPIC0 = {
    "Transfer(address,address,uint256)":
        "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
    "PairCreated(address,address,address,uint256)":
        "0d3648bd0f6ba80134a33ba9275ac585d9d315f0ad8355cddefde31afa28d0e9",
    "Swap(address,uint256,uint256,uint256,uint256,address)":
        "d78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822",
    "Sync(uint112,uint112)":
        "1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1",
    "Deposit(address,uint256)":
        "e1fffcc4923d04b559f4d29a8bfc6cda04eb5b0d3c460751c2402c5c5cc9109c",
}

# Every event of every shipped ABI: name(type indexed? name, ...) in ABI order.
EXPECTED_EVENTS = {
    "erc20.json": {
        "Transfer(address indexed from, address indexed to, uint256 value)",
        "Approval(address indexed owner, address indexed spender, uint256 value)",
    },
    "weth9.json": {
        "Approval(address indexed src, address indexed guy, uint256 wad)",
        "Transfer(address indexed src, address indexed dst, uint256 wad)",
        "Deposit(address indexed dst, uint256 wad)",
        "Withdrawal(address indexed src, uint256 wad)",
    },
    "uniswap_v2_factory.json": {
        "PairCreated(address indexed token0, address indexed token1, address pair, uint256 )",
    },
    "uniswap_v2_pair.json": {
        "Approval(address indexed owner, address indexed spender, uint256 value)",
        "Transfer(address indexed from, address indexed to, uint256 value)",
        "Mint(address indexed sender, uint256 amount0, uint256 amount1)",
        "Burn(address indexed sender, uint256 amount0, uint256 amount1, address indexed to)",
        "Swap(address indexed sender, uint256 amount0In, uint256 amount1In, uint256 amount0Out,"
        " uint256 amount1Out, address indexed to)",
        "Sync(uint112 reserve0, uint112 reserve1)",
    },
    "uniswap_v3_factory.json": {
        "PoolCreated(address indexed token0, address indexed token1, uint24 indexed fee,"
        " int24 tickSpacing, address pool)",
        "FeeAmountEnabled(uint24 indexed fee, int24 indexed tickSpacing)",
        "OwnerChanged(address indexed oldOwner, address indexed newOwner)",
    },
    "uniswap_v3_pool.json": {
        "Initialize(uint160 sqrtPriceX96, int24 tick)",
        "Mint(address sender, address indexed owner, int24 indexed tickLower,"
        " int24 indexed tickUpper, uint128 amount, uint256 amount0, uint256 amount1)",
        "Collect(address indexed owner, address recipient, int24 indexed tickLower,"
        " int24 indexed tickUpper, uint128 amount0, uint128 amount1)",
        "Burn(address indexed owner, int24 indexed tickLower, int24 indexed tickUpper,"
        " uint128 amount, uint256 amount0, uint256 amount1)",
        "Swap(address indexed sender, address indexed recipient, int256 amount0, int256 amount1,"
        " uint160 sqrtPriceX96, uint128 liquidity, int24 tick)",
        "Flash(address indexed sender, address indexed recipient, uint256 amount0,"
        " uint256 amount1, uint256 paid0, uint256 paid1)",
        "IncreaseObservationCardinalityNext(uint16 observationCardinalityNextOld,"
        " uint16 observationCardinalityNextNew)",
        "SetFeeProtocol(uint8 feeProtocol0Old, uint8 feeProtocol1Old, uint8 feeProtocol0New,"
        " uint8 feeProtocol1New)",
        "CollectProtocol(address indexed sender, address indexed recipient, uint128 amount0,"
        " uint128 amount1)",
    },
}

# V3 topic0s, as published on block explorers.
KNOWN_V3_TOPIC0 = {
    "PoolCreated": "783cca1c0412dd0d695e784568c96da2e9c22ff989357a2e8b1d9b2b4e6b7118",
    "Swap": "c42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67",
    "Mint": "7a53080ba414158be7ec69b987b5fb7d07dee101fe85488f0853ae16239d0bde",
    "Burn": "0c396cd989a39f4459b5fa1aed6a9a8dcdbc45908acfd67e028cd568da98982c",
    "Collect": "70935338e69775456a85ddef226c395fb668b63fa0115f5f20610b388e6ca9c0",
    "Initialize": "98636036cb66a9c19a37435efc1e90142190214e8abeb821bdba3f2990dd4c95",
    "Flash": "bdbdb71d7860376ba52b25a5028beea23581364a40522f6bcfb86bb1f2dca633",
}


def _keccak_hex(text: str) -> str:
    return keccak.new(digest_bits=256, data=text.encode()).hexdigest()


def _events(abi_file: str) -> list[dict]:
    data = json.loads((ABIS_DIR / abi_file).read_text())
    return [e for e in data if e["type"] == "event"]


def _signature(event: dict) -> str:
    return f"{event['name']}({','.join(p['type'] for p in event['inputs'])})"


def _described(event: dict) -> str:
    params = ", ".join(
        f"{p['type']}{' indexed' if p['indexed'] else ''} {p['name']}" for p in event["inputs"]
    )
    return f"{event['name']}({params})"


@pytest.fixture(scope="module")
def loaded() -> dict[str, ChainConfig]:
    return {path.stem: load_chain(path, env={}) for path in CHAIN_FILES}


def test_every_known_chain_has_a_file() -> None:
    assert {path.stem for path in CHAIN_FILES} >= set(KNOWN_CHAIN_IDS)


@pytest.mark.parametrize("path", CHAIN_FILES, ids=lambda p: p.stem)
def test_chain_file_loads_with_defaults(path: Path) -> None:
    chain = load_chain(path, env={})
    assert chain.name == path.stem
    assert chain.contracts


@pytest.mark.parametrize(("name", "chain_id"), sorted(KNOWN_CHAIN_IDS.items()))
def test_known_chain_ids(loaded: dict[str, ChainConfig], name: str, chain_id: int) -> None:
    assert loaded[name].chain_id == chain_id


def test_names_and_chain_ids_are_unique(loaded: dict[str, ChainConfig]) -> None:
    chains = list(loaded.values())
    assert len({c.name for c in chains}) == len(chains)
    assert len({c.chain_id for c in chains}) == len(chains)


def test_default_rpc_urls_are_https_except_local(loaded: dict[str, ChainConfig]) -> None:
    for name, chain in loaded.items():
        schemes = {urlsplit(endpoint.url).scheme for endpoint in chain.rpc}
        assert schemes == ({"http"} if name == "anvil" else {"https"}), name


def test_same_contract_name_means_same_abi_across_chains(loaded: dict[str, ChainConfig]) -> None:
    """Contracts of one name share event tables, so they must decode with one ABI."""
    abi_of: dict[str, str] = {}
    for chain in loaded.values():
        for contract in chain.contracts:
            assert abi_of.setdefault(contract.name, contract.abi_path.name) == contract.abi_path.name


def test_anvil_indexes_the_demo_deployment(loaded: dict[str, ChainConfig]) -> None:
    anvil = loaded["anvil"]
    assert (anvil.block_time, anvil.finality_depth, anvil.start_block) == (1.0, 0, 0)
    assert anvil.rpc[0].url == "http://127.0.0.1:8545"
    contracts = {c.name: c for c in anvil.contracts}
    # CREATE addresses of anvil's first account at nonces 0, 1, 3 and 4.
    assert contracts["WETH9"].addresses == ("0x5fbdb2315678afecb367f032d93f642f64180aa3",)
    assert contracts["UniswapV2Factory"].addresses == ("0xe7f1725e7734ce288f8367e1bb143e90bb3f0512",)
    assert contracts["DemoToken"].addresses == (
        "0xcf7ed3acca5a467e9e704c703e8d87f634fb0fc9",
        "0xdc64a140aa3e981100a9beca4e685f962f0cf6c9",
    )
    pair = contracts["UniswapV2Pair"]
    assert pair.addresses == ()
    assert pair.factory is not None and pair.factory.parameter == "pair"
    assert pair.events == ("Swap", "Sync", "Mint", "Burn", "Transfer")


def _rlp_create_address(sender: str, nonce: int) -> str:
    sender_bytes = bytes.fromhex(sender[2:])
    nonce_bytes = b"\x80" if nonce == 0 else bytes([nonce])  # nonce < 128 here
    payload = bytes([0x80 + len(sender_bytes)]) + sender_bytes + nonce_bytes
    digest = keccak.new(digest_bits=256, data=bytes([0xC0 + len(payload)]) + payload).digest()
    return "0x" + digest[12:].hex()


def test_anvil_addresses_follow_the_create_formula(loaded: dict[str, ChainConfig]) -> None:
    deployer = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    contracts = {c.name: c for c in loaded["anvil"].contracts}
    assert contracts["WETH9"].addresses == (_rlp_create_address(deployer, 0),)
    assert contracts["UniswapV2Factory"].addresses == (_rlp_create_address(deployer, 1),)
    assert contracts["DemoToken"].addresses == (
        _rlp_create_address(deployer, 3),
        _rlp_create_address(deployer, 4),
    )


@pytest.mark.parametrize("abi_file", sorted(EXPECTED_EVENTS))
def test_abi_has_exactly_the_expected_events(abi_file: str) -> None:
    assert {_described(e) for e in _events(abi_file)} == EXPECTED_EVENTS[abi_file]


def test_every_shipped_abi_is_checked() -> None:
    assert {p.name for p in ABIS_DIR.glob("*.json")} == set(EXPECTED_EVENTS)


@pytest.mark.parametrize(
    ("abi_file", "signature"),
    [
        ("erc20.json", "Transfer(address,address,uint256)"),
        ("weth9.json", "Transfer(address,address,uint256)"),
        ("weth9.json", "Deposit(address,uint256)"),
        ("uniswap_v2_pair.json", "Transfer(address,address,uint256)"),
        ("uniswap_v2_pair.json", "Swap(address,uint256,uint256,uint256,uint256,address)"),
        ("uniswap_v2_pair.json", "Sync(uint112,uint112)"),
        ("uniswap_v2_factory.json", "PairCreated(address,address,address,uint256)"),
    ],
)
def test_known_topic0(abi_file: str, signature: str) -> None:
    assert signature in {_signature(e) for e in _events(abi_file)}
    assert _keccak_hex(signature) == KNOWN_TOPIC0[signature]


def test_uniswap_v3_topic0() -> None:
    topics = {
        e["name"]: _keccak_hex(_signature(e))
        for abi_file in ("uniswap_v3_factory.json", "uniswap_v3_pool.json")
        for e in _events(abi_file)
    }
    assert {name: topics[name] for name in KNOWN_V3_TOPIC0} == KNOWN_V3_TOPIC0
