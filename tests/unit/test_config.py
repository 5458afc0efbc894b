"""Chain YAML loading: values, ``${VAR}`` expansion, and one precise error per broken rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.config import (
    ChainConfig,
    ConfigError,
    ContractConfig,
    FactorySpec,
    RpcEndpoint,
    load_chain,
    load_chains,
    resolve_chain,
)


def _event(name: str, *params: tuple[str, str, bool]) -> dict:
    inputs = [{"name": n, "type": t, "indexed": i} for n, t, i in params]
    return {"type": "event", "name": name, "inputs": inputs, "anonymous": False}


ERC20 = [
    _event("Transfer", ("from", "address", True), ("to", "address", True), ("value", "uint256", False)),
    _event("Approval", ("owner", "address", True), ("spender", "address", True), ("value", "uint256", False)),
    {"type": "function", "name": "totalSupply", "inputs": [], "outputs": [{"name": "", "type": "uint256"}],
     "stateMutability": "view"},
]
V2_FACTORY = [
    _event("PairCreated", ("token0", "address", True), ("token1", "address", True),
           ("pair", "address", False), ("", "uint256", False)),
]
V2_PAIR = [
    _event("Sync", ("reserve0", "uint112", False), ("reserve1", "uint112", False)),
    _event("Swap", ("sender", "address", True), ("amount0In", "uint256", False),
           ("amount1In", "uint256", False), ("amount0Out", "uint256", False),
           ("amount1Out", "uint256", False), ("to", "address", True)),
]

CONTRACTS = """\
contracts:
  - name: Token
    abi: abis/erc20.json
    address: "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    start_block: 820
    events: [Transfer, "Approval(address, address, uint256)"]
  - name: UniswapV2Factory
    abi: abis/uniswap_v2_factory.json
    address:
      - "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
      - "0xCF7ED3ACCA5A467E9E704C703E8D87F634FB0FC9"
  - name: UniswapV2Pair
    abi: abis/uniswap_v2_pair.json
    factory: {contract: UniswapV2Factory, event: PairCreated, parameter: pair}
    events: [Swap, Sync]
"""
BASE = """\
name: testchain
chain_id: 7
rpc:
  - url: ${TEST_RPC_URL:-https://rpc.example.org}
    max_requests_per_second: 25
    max_batch_size: 50
  - wss://ws.example.org
block_time: 2s
finality_depth: 32
start_block: 100
get_logs_max_range: 2048
partition_blocks: 500000
""" + CONTRACTS

FILE = "chains/test.yaml"


@pytest.fixture
def chains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with chains/abis/*.json; chain files are written to chains/."""
    monkeypatch.chdir(tmp_path)
    abis = tmp_path / "chains" / "abis"
    abis.mkdir(parents=True)
    (abis / "erc20.json").write_text(json.dumps(ERC20))
    (abis / "uniswap_v2_factory.json").write_text(json.dumps({"contractName": "F", "abi": V2_FACTORY}))
    (abis / "uniswap_v2_pair.json").write_text(json.dumps(V2_PAIR))
    (abis / "broken.json").write_text('[{"type": "event",')
    (abis / "no_events.json").write_text(json.dumps(ERC20[2:]))
    return tmp_path / "chains"


def _load(chains: Path, text: str, env: dict[str, str] | None = None) -> ChainConfig:
    path = chains / "test.yaml"
    path.write_text(text)
    return load_chain(path, env={} if env is None else env)


def _problems(chains: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(chains, text, env)
    lines = str(info.value).splitlines()
    assert list(info.value.problems) == lines
    return lines


def test_valid_file_loads_into_dataclasses(chains: Path) -> None:
    chain = _load(chains, BASE)
    assert chain.name == "testchain"
    assert chain.chain_id == 7
    assert chain.rpc == (
        RpcEndpoint("https://rpc.example.org", 25.0, 50),
        RpcEndpoint("wss://ws.example.org"),
    )
    assert (chain.block_time, chain.finality_depth, chain.start_block) == (2.0, 32, 100)
    assert (chain.get_logs_max_range, chain.partition_blocks) == (2048, 500000)
    assert chain.source == chains / "test.yaml"
    token, factory, pair = chain.contracts
    assert token == ContractConfig(
        name="Token",
        abi_path=chains / "abis" / "erc20.json",
        abi=tuple(ERC20),
        addresses=("0x5fbdb2315678afecb367f032d93f642f64180aa3",),
        start_block=820,
        events=("Transfer", "Approval(address,address,uint256)"),
    )
    assert factory.addresses == (
        "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512",
        "0xcf7ed3acca5a467e9e704c703e8d87f634fb0fc9",
    )
    assert factory.abi == tuple(V2_FACTORY)  # read from the artifact's "abi" key
    assert factory.events is None
    assert factory.start_block == 100  # the chain's default
    assert pair.addresses == ()
    assert pair.factory == FactorySpec("UniswapV2Factory", "PairCreated", "pair")


def test_optional_keys_take_defaults(chains: Path) -> None:
    text = BASE.replace("start_block: 100\nget_logs_max_range: 2048\npartition_blocks: 500000\n", "")
    chain = _load(chains, text)
    assert (chain.start_block, chain.get_logs_max_range, chain.partition_blocks) == (0, 2000, 1_000_000)
    assert chain.rpc[1].max_requests_per_second is None


def test_variable_set_in_env_is_used(chains: Path) -> None:
    chain = _load(chains, BASE, env={"TEST_RPC_URL": "https://private.example.org/key"})
    assert chain.rpc[0].url == "https://private.example.org/key"


@pytest.mark.parametrize("env", [{}, {"TEST_RPC_URL": ""}], ids=["unset", "empty"])
def test_default_applies_when_variable_unset_or_empty(chains: Path, env: dict[str, str]) -> None:
    assert _load(chains, BASE, env=env).rpc[0].url == "https://rpc.example.org"


def test_double_dollar_is_a_literal_dollar(chains: Path) -> None:
    text = BASE.replace("wss://ws.example.org", "wss://ws.example.org/$${KEY}/$$x")
    assert _load(chains, text).rpc[1].url == "wss://ws.example.org/${KEY}/$x"


def test_numbers_and_durations_from_variables_are_converted(chains: Path) -> None:
    text = (BASE.replace("chain_id: 7", "chain_id: ${CHAIN_ID}")
            .replace("finality_depth: 32", "finality_depth: ${DEPTH:-12}")
            .replace("block_time: 2s", "block_time: ${BLOCK_TIME:-250ms}")
            .replace("max_requests_per_second: 25", "max_requests_per_second: ${RPS:-2.5}"))
    chain = _load(chains, text, env={"CHAIN_ID": "25"})
    assert (chain.chain_id, chain.finality_depth, chain.block_time) == (25, 12, 0.25)
    assert chain.rpc[0].max_requests_per_second == 2.5


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2s", 2.0), ("250ms", 0.25), ("12", 12.0), ("0.25", 0.25), ("1m", 60.0), ("1.5s", 1.5)],
)
def test_block_time_durations(chains: Path, value: str, seconds: float) -> None:
    assert _load(chains, BASE.replace("block_time: 2s", f"block_time: {value}")).block_time == seconds


# (case id, [(old, new) edits of BASE], key path, reason): each edit breaks exactly one rule.
BAD = [
    ("unknown top key", [("partition_blocks:", "partition_block:")], "partition_block",
     "unknown key (did you mean 'partition_blocks'?)"),
    ("unknown contract key", [("start_block: 820", "start_blok: 820")], "contracts[0].start_blok",
     "unknown key (did you mean 'start_block'?)"),
    ("unknown rpc key", [("max_batch_size", "max_batch_sise")], "rpc[0].max_batch_sise",
     "unknown key (did you mean 'max_batch_size'?)"),
    ("unknown factory key", [("parameter: pair", "parameter: pair, evnt: X")],
     "contracts[2].factory.evnt", "unknown key (did you mean 'event'?)"),
    ("missing chain_id", [("chain_id: 7\n", "")], "chain_id", "required key is missing"),
    ("missing finality_depth", [("finality_depth: 32\n", "")], "finality_depth",
     "required key is missing"),
    ("missing abi", [("    abi: abis/erc20.json\n", "")], "contracts[0].abi", "required key is missing"),
    ("bad name", [("name: testchain", "name: Test-Chain")], "name",
     "'Test-Chain' must be 1-40 characters of a-z, 0-9 and _"),
    ("name too long", [("name: testchain", "name: " + "a" * 41)], "name", "must be 1-40 characters"),
    ("bad contract name", [("name: Token", "name: 1Token")], "contracts[0].name", "is not an identifier"),
    ("chain_id zero", [("chain_id: 7", "chain_id: 0")], "chain_id", "must be a positive integer, got 0"),
    ("chain_id word", [("chain_id: 7", "chain_id: seven")], "chain_id",
     "expected an integer, got the string 'seven'"),
    ("chain_id quoted", [("chain_id: 7", 'chain_id: "7"')], "chain_id",
     "expected an integer, got the string '7'"),
    ("chain_id float", [("chain_id: 7", "chain_id: 7.5")], "chain_id", "expected an integer, got 7.5"),
    ("empty rpc", [("""\
rpc:
  - url: ${TEST_RPC_URL:-https://rpc.example.org}
    max_requests_per_second: 25
    max_batch_size: 50
  - wss://ws.example.org
""", "rpc: []\n")], "rpc", "must list at least one endpoint"),
    ("rpc not a list", [("""\
rpc:
  - url: ${TEST_RPC_URL:-https://rpc.example.org}
    max_requests_per_second: 25
    max_batch_size: 50
  - wss://ws.example.org
""", "rpc: {url: https://x.example.org}\n")], "rpc", "expected a list of endpoints, got a mapping"),
    ("bad url scheme", [("-https://rpc.example.org", "-ftp://rpc.example.org")], "rpc[0].url",
     "URL has scheme 'ftp'; expected one of http, https, ws, wss"),
    ("url without host", [("wss://ws.example.org", "wss://")], "rpc[1].url", "URL has no host"),
    ("zero rate limit", [("max_requests_per_second: 25", "max_requests_per_second: 0")],
     "rpc[0].max_requests_per_second", "must be a positive number, got 0"),
    ("bad duration", [("block_time: 2s", "block_time: 2 weeks")], "block_time",
     "'2 weeks' is not a duration"),
    ("zero duration", [("block_time: 2s", "block_time: 0ms")], "block_time", "must be longer than 0"),
    ("negative finality_depth", [("finality_depth: 32", "finality_depth: -1")], "finality_depth",
     "must be an integer >= 0, got -1"),
    ("zero get_logs_max_range", [("get_logs_max_range: 2048", "get_logs_max_range: 0")],
     "get_logs_max_range", "must be a positive integer, got 0"),
    ("wrong type for a number", [("partition_blocks: 500000", "partition_blocks: [1]")],
     "partition_blocks", "expected an integer, got a list"),
    ("missing ABI file", [("abis/erc20.json", "abis/nope.json")], "contracts[0].abi",
     "nope.json' does not exist"),
    ("ABI not JSON", [("abis/erc20.json", "abis/broken.json")], "contracts[0].abi",
     "ABI file 'broken.json' is not JSON"),
    ("ABI without events", [("abis/erc20.json", "abis/no_events.json")], "contracts[0].abi",
     "ABI file 'no_events.json' has no events"),
    ("unknown event", [("[Transfer,", "[Transfers,")], "contracts[0].events[0]",
     "'Transfers' is not an event of abis/erc20.json (did you mean 'Transfer'?"),
    ("unknown event signature", [("Approval(address, address, uint256)", "Approval(address,uint256)")],
     "contracts[0].events[1]", "'Approval(address,uint256)' is not an event"),
    ("event listed twice", [("[Swap, Sync]", "[Swap, Sync, Swap]")], "contracts[2].events[2]",
     "'Swap' is already listed at contracts[2].events[0]"),
    ("address too short", [("0x5FbDB2315678afecb367f032d93F642f64180aa3", "0x5FbDB2315678afecb367f032d93F642f64180aa")],
     "contracts[0].address", "is not a 20-byte hex address (has 39 hex digits, not 40)"),
    ("address not hex", [("0x5FbDB2315678afecb367f032d93F642f64180aa3", "0x5FbDB2315678afecb367f032d93F642f64180aZ3")],
     "contracts[0].address", "is not a 20-byte hex address (has non-hex characters)"),
    ("address bad checksum", [("0x5FbDB2315678afecb367f032d93F642f64180aa3", "0x5FbDB2315678afecb367f032d93F642f64180aA3")],
     "contracts[0].address", "fails its EIP-55 checksum"),
    ("address unquoted", [('"0x5FbDB2315678afecb367f032d93F642f64180aa3"', "0x5FbDB2315678afecb367f032d93F642f64180aa3")],
     "contracts[0].address", "put the address in quotes"),
    ("address in list", [("0xCF7ED3ACCA5A467E9E704C703E8D87F634FB0FC9", "0xabc")],
     "contracts[1].address[1]", "'0xabc' is not a 20-byte hex address"),
    ("duplicate address", [("0xCF7ED3ACCA5A467E9E704C703E8D87F634FB0FC9", "0xE7F1725E7734CE288F8367E1BB143E90BB3F0512")],
     "contracts[1].address[1]", "same address as contracts[1].address[0]"),
    ("duplicate contract name", [("name: UniswapV2Pair", "name: Token")], "contracts[2].name",
     "'Token' has the same name in contracts[0]"),
    ("same table prefix", [("name: Token", "name: uniswap_v2_factory")], "contracts[1].name",
     "'UniswapV2Factory' has the same table prefix as 'uniswap_v2_factory' in contracts[0]"),
    ("both address and factory", [("    factory: {", '    address: "0x5fbdb2315678afecb367f032d93f642f64180aa3"\n    factory: {')],
     "contracts[2]", "has both 'address' and 'factory'; give one"),
    ("neither address nor factory", [("    factory: {contract: UniswapV2Factory, event: PairCreated, parameter: pair}\n", "")],
     "contracts[2]", "needs 'address' (fixed contracts) or 'factory' (discovered ones)"),
    ("factory names no contract", [("contract: UniswapV2Factory", "contract: UniswapV3Factory")],
     "contracts[2].factory.contract", "'UniswapV3Factory' names no contract in this file (did you mean 'UniswapV2Factory'?)"),
    ("factory is itself", [("contract: UniswapV2Factory", "contract: UniswapV2Pair")],
     "contracts[2].factory.contract", "'UniswapV2Pair' is this contract itself"),
    ("factory event not in ABI", [("event: PairCreated", "event: PoolCreated")],
     "contracts[2].factory.event", "'PoolCreated' is not an event of UniswapV2Factory's ABI"),
    ("factory parameter missing", [("parameter: pair", "parameter: pool")],
     "contracts[2].factory.parameter",
     "PairCreated(address,address,address,uint256) has no parameter 'pool' (its parameters: token0, token1, pair, (unnamed))"),
    ("factory parameter not an address", [("{contract: UniswapV2Factory, event: PairCreated, parameter: pair}", "{contract: Token, event: Transfer, parameter: value}")],
     "contracts[2].factory.parameter", "'value' of Transfer(address,address,uint256) is uint256, not address"),
    ("factory not a mapping", [("{contract: UniswapV2Factory, event: PairCreated, parameter: pair}", "[UniswapV2Factory, PairCreated, pair]")],
     "contracts[2].factory", "expected a mapping, got a list"),
    ("contract not a mapping", [("  - name: Token\n", "  - Token\n  - name: Token2\n")],
     "contracts[0]", "expected a mapping, got the string 'Token'"),
    ("empty contracts", [(CONTRACTS, "contracts: []\n")], "contracts", "must list at least one contract"),
    ("unset variable", [("${TEST_RPC_URL:-https://rpc.example.org}", "${TEST_RPC_URL}")], "rpc[0].url",
     "environment variable TEST_RPC_URL is not set"),
    ("malformed variable", [("${TEST_RPC_URL:-https://rpc.example.org}", "${TEST_RPC_URL-https://rpc.example.org}")],
     "rpc[0].url", "malformed variable reference"),
]


@pytest.mark.parametrize(("edits", "at", "reason"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_file_reports_file_key_path_and_reason(
    chains: Path, edits: list[tuple[str, str]], at: str, reason: str
) -> None:
    text = BASE
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    (line,) = _problems(chains, text)
    assert line.startswith(f"{FILE}: {at}: "), line
    assert reason in line


@pytest.mark.parametrize(
    ("old", "new", "where", "reason"),
    [
        ("events: [Swap, Sync]", "events: [Swap, Sync}", f"{FILE}:27:24:", "expected ',' or ']'"),
        ("    abi: abis/erc20.json", "   abi: abis/erc20.json", f"{FILE}:15:4:", "invalid YAML"),
        ("finality_depth: 32", "finality_depth: 32: 3", f"{FILE}:9:19:", "mapping values are not allowed"),
        ("chain_id: 7\n", "chain_id: 7\nchain_id: 8\n", f"{FILE}:3:1:", "key 'chain_id' appears twice"),
    ],
    ids=["unbalanced flow list", "bad indentation", "stray colon", "duplicate key"],
)
def test_yaml_syntax_error_names_line_and_column(
    chains: Path, old: str, new: str, where: str, reason: str
) -> None:
    (line,) = _problems(chains, BASE.replace(old, new))
    assert line.startswith(where), line
    assert reason in line


def test_all_problems_are_reported_at_once(chains: Path) -> None:
    text = (BASE.replace("chain_id: 7", "chain_id: -7")
            .replace("block_time: 2s", "block_time: soon")
            .replace("event: PairCreated", "event: Nope"))
    assert [line.split(": ")[1] for line in _problems(chains, text)] == [
        "chain_id", "block_time", "contracts[2].factory.event",
    ]


def test_empty_file_is_refused(chains: Path) -> None:
    assert _problems(chains, "# nothing\n") == [
        f"{FILE}: the file is empty; expected a mapping of chain settings"
    ]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read chain file"):
        load_chain(tmp_path / "absent.yaml", env={})


def test_resolve_prefers_local_chains_folder(chains: Path) -> None:
    (chains / "test.yaml").write_text(BASE)
    assert resolve_chain("test", cwd=chains.parent) == chains / "test.yaml"
    assert resolve_chain("chains/test.yaml", cwd=chains.parent) == chains / "test.yaml"


def test_resolve_falls_back_to_shipped_chain_files(tmp_path: Path) -> None:
    path = resolve_chain("anvil", cwd=tmp_path)
    assert path.name == "anvil.yaml" and path.is_file()


def test_resolve_unknown_name_lists_available_chains(chains: Path) -> None:
    (chains / "test.yaml").write_text(BASE)
    with pytest.raises(ConfigError) as info:
        resolve_chain("nowhere", cwd=chains.parent)
    message = str(info.value)
    assert "unknown chain 'nowhere'" in message
    assert "test" in message and "anvil" in message and "ethereum" in message


def test_resolve_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="chain file not found"):
        resolve_chain("elsewhere/x.yaml", cwd=tmp_path)


def test_load_chains_refuses_shared_name_and_chain_id(chains: Path) -> None:
    (chains / "a.yaml").write_text(BASE)
    (chains / "b.yaml").write_text(BASE.replace("name: testchain", "name: other"))
    (chains / "c.yaml").write_text(BASE.replace("chain_id: 7", "chain_id: 8"))
    with pytest.raises(ConfigError) as info:
        load_chains(["a", "b", "c"], env={})
    assert info.value.problems == (
        "chains/c.yaml: name: 'testchain' is also the name of chains/a.yaml",
        "chains/b.yaml: chain_id: 7 is also the chain_id of chains/a.yaml",
    )


def test_load_chains_loads_distinct_chains(chains: Path) -> None:
    (chains / "a.yaml").write_text(BASE)
    (chains / "b.yaml").write_text(BASE.replace("name: testchain", "name: other").replace("chain_id: 7", "chain_id: 8"))
    assert [(c.name, c.chain_id) for c in load_chains(["a", "chains/b.yaml"], env={})] == [
        ("testchain", 7), ("other", 8),
    ]


def test_an_abi_type_without_a_column_type_is_refused_at_load(tmp_path):
    (tmp_path / "odd.json").write_text(
        '[{"type":"event","name":"Odd","anonymous":false,'
        '"inputs":[{"name":"x","type":"uint7","indexed":false}]}]'
    )
    path = tmp_path / "odd.yaml"
    path.write_text(
        "name: odd\nchain_id: 1\nrpc: [https://rpc.example]\nblock_time: 1s\n"
        "finality_depth: 0\ncontracts:\n  - name: Odd\n    abi: odd.json\n"
        '    address: "0x5fbdb2315678afecb367f032d93f642f64180aa3"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_chain(path, env={})
    text = str(err.value)
    assert "odd.yaml" in text and "contracts[0].abi" in text and "uint7" in text


def test_live_tail_keys_poll_interval_and_ws_url(chains: Path) -> None:
    chain = _load(chains, BASE)
    assert (chain.poll_interval, chain.ws_url) == (None, None)
    assert chain.live_poll_interval == pytest.approx(0.2)  # a tenth of the 2 s block time
    text = BASE.replace("finality_depth: 32\n", "finality_depth: 32\npoll_interval: 50ms\n"
                        "ws_url: wss://ws.example.org/v1\n")
    chain = _load(chains, text)
    assert (chain.poll_interval, chain.live_poll_interval) == (0.05, 0.05)
    assert chain.ws_url == "wss://ws.example.org/v1"
    slow = _load(chains, BASE.replace("block_time: 2s", "block_time: 12s"))
    assert slow.live_poll_interval == 1.0  # at most 1 s


def test_bad_live_tail_keys_are_named(chains: Path) -> None:
    text = BASE.replace("finality_depth: 32\n", "finality_depth: 32\npoll_interval: soon\n"
                        "ws_url: https://rpc.example.org\n")
    problems = _problems(chains, text)
    assert any("poll_interval" in p and "not a duration" in p for p in problems), problems
    assert any("ws_url" in p and "websocket URL" in p for p in problems), problems


def test_the_verify_section_is_read_and_checked(tmp_path):
    from indexer.config import ConfigError, VerifyConfig, load_chain

    base = (Path(__file__).resolve().parents[2] / "chains" / "anvil.yaml").read_text()
    base = base.replace("abis/", str(Path(__file__).resolve().parents[2] / "chains" / "abis") + "/")
    good = tmp_path / "good.yaml"
    good.write_text(base + "verify:\n  sample: 1%\n  repair: true\n")
    assert load_chain(good).verify == VerifyConfig(sample=0.01, repair=True, proof=False)
    none = tmp_path / "none.yaml"
    none.write_text(base)
    assert load_chain(none).verify == VerifyConfig()
    bad = tmp_path / "bad.yaml"
    bad.write_text(base + "verify:\n  sample: 2\n  repair: yes please\n  proff: true\n")
    with pytest.raises(ConfigError) as e:
        load_chain(bad)
    text = str(e.value)
    assert "verify.sample: must be between 0 and 1" in text
    assert "verify.repair: expected true or false" in text
    assert "verify.proff: unknown key (did you mean 'proof'?)" in text
def test_max_reorg_depth_defaults_to_ten_finality_depths_and_at_least_256(chains: Path) -> None:
    assert _load(chains, BASE).max_reorg_depth is None
    assert _load(chains, BASE).reorg_depth_cap == 320  # 10 x 32
    shallow = _load(chains, BASE.replace("finality_depth: 32", "finality_depth: 0"))
    assert shallow.reorg_depth_cap == 256
    text = BASE.replace("finality_depth: 32\n", "finality_depth: 32\nmax_reorg_depth: 5000\n")
    chain = _load(chains, text)
    assert (chain.max_reorg_depth, chain.reorg_depth_cap) == (5000, 5000)


@pytest.mark.parametrize(("value", "reason"), [
    ("0", "must be a positive integer, got 0"),
    ("many", "expected an integer, got the string 'many'"),
    ("31", "must be at least finality_depth (32): a reorg within the finality depth is routine"),
])
def test_bad_max_reorg_depth_is_named(chains: Path, value: str, reason: str) -> None:
    text = BASE.replace("finality_depth: 32\n", f"finality_depth: 32\nmax_reorg_depth: {value}\n")
    (line,) = _problems(chains, text)
    assert line.startswith(f"{FILE}: max_reorg_depth: "), line
    assert reason in line
