"""`indexer chain check` against anvil through a proxy of our own that fails some calls: each
check that fails prints FAIL and the next checks still run; the exit code says one failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.cli import env_for, indexer, write_chain
from tests.support.contracts import Deployed
from tests.support.proxy import RpcProxy


def test_an_rpc_error_after_the_chain_id_fails_that_check_and_the_next_ones_run(
    deployed: Deployed, tmp_path: Path
) -> None:
    a = deployed.addresses
    broken = a.factory.lower()

    def rewrite(request: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        method, params = request.get("method"), request.get("params") or []
        if method == "eth_blockNumber" or (method == "eth_getCode" and params[0].lower() == broken):
            return {"jsonrpc": "2.0", "id": reply.get("id"),
                    "error": {"code": -32603, "message": "internal error"}}
        return reply

    with RpcProxy(deployed.url, rewrite) as proxy:
        chain = write_chain(tmp_path / "anvil.yaml")
        res = indexer(["chain", "check", str(chain)], env_for(None, proxy.url))
    out = res.out
    assert res.code == 1, res.out + res.err
    assert "Traceback" not in res.err
    lines = out.splitlines()
    assert any(x.startswith("ok   rpc[0] 0:127.0.0.1: chain id 31337") for x in lines), out
    assert any(x.startswith("FAIL rpc[0] 0:127.0.0.1: head:") and "eth_blockNumber" in x
               for x in lines), out
    assert any(x.startswith(f"FAIL UniswapV2Factory {broken}: cannot read its code:")
               for x in lines), out
    for name, addr in (("WETH9", a.weth), ("DemoToken", a.token_a), ("DemoToken", a.token_b)):
        assert any(x.startswith(f"ok   {name} {addr.lower()}: ") for x in lines), out


def test_two_events_that_would_share_a_table_are_refused_before_any_rpc(tmp_path: Path) -> None:
    """``Uniswap`` + ``V2PairSwap`` and ``UniswapV2Pair`` + ``Swap`` are both
    ``uniswap_v2_pair_swap``: refused naming both, exit 2, as ``run`` refuses it at start."""
    abi = tmp_path / "other.json"
    abi.write_text('[{"type": "event", "name": "V2PairSwap", "anonymous": false, "inputs": []}]')
    pair = str((Path(__file__).parents[2] / "chains" / "abis" / "uniswap_v2_pair.json").resolve())
    chain = write_chain(tmp_path / "anvil.yaml", contracts=[
        {"name": "Uniswap", "abi": str(abi), "address": "0x" + "11" * 20},
        {"name": "UniswapV2Pair", "abi": pair, "address": "0x" + "22" * 20},
    ])
    for args in (["chain", "check", str(chain)], ["run", "--chain", str(chain), "--once"]):
        res = indexer(args, env_for("postgresql://127.0.0.1:1/none", "http://127.0.0.1:1"))
        assert res.code == 2, res.out + res.err
        assert "Traceback" not in res.err
        assert "would both write to table uniswap_v2_pair_swap" in res.err, res.err
        assert "Uniswap.V2PairSwap()" in res.err and "UniswapV2Pair.Swap(" in res.err
