"""A local demo chain: anvil + the demo system + traffic.

    python -m tests.support.devnet --port 8545 [--rounds N] [--keep-mining SECONDS]
                                   [--duration SECONDS] [--exit] [--json] [--host 0.0.0.0]
                                   [--state FILE [--state-interval SECONDS]] [--timestamp T]

Starts anvil (chain id 31337) in this process group, deploys WETH9, the Uniswap V2 factory and
router and two TestTokens at their fixed addresses, runs `--rounds` rounds of traffic and prints
the RPC URL and the addresses. Then the node stays up until interrupted (or `--duration`
elapses), sending one more traffic round every `--keep-mining` seconds if given; `--exit` stops
anvil and exits right after printing.

`--state FILE` keeps the chain across restarts (what docker-compose.yml does): anvil loads FILE
when it exists and writes it every `--state-interval` seconds and on exit; a chain loaded with
the demo system already deployed is continued (no deployment, no setup rounds). The genesis
timestamp of a new chain is recorded beside it (FILE.genesis-timestamp) and given to anvil on
every later start, because anvil may rebuild block 0 when it loads a state: the same FILE is
the same chain (same genesis hash, same blocks), and a new FILE is a new chain (a new genesis,
which the indexer refuses until `indexer reset`). After SIGKILL the blocks mined since the last
write are gone: the chain continues from there (a reorg, to the indexer).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from tests.support.contracts import ACCOUNT0, EXPECTED, Deployed, Deployer, abi, connect
from tests.support.rpc import JsonRpc
from tests.support.services import Anvil
from tests.support.traffic import run_traffic


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.support.devnet", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--port", type=int, default=8545)
    p.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 inside a container)")
    p.add_argument("--chain-id", type=int, default=31337)
    p.add_argument(
        "--rounds", type=int, default=30, help="traffic rounds before printing (default 30)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--txs-per-block",
        type=int,
        default=None,
        help="pack txs per block (default: one per block)",
    )
    p.add_argument(
        "--keep-mining",
        type=float,
        default=None,
        metavar="SECONDS",
        help="send one traffic round every SECONDS (default: the node stays up, idle)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=0,
        metavar="SECONDS",
        help="stop after SECONDS (default: run until interrupted)",
    )
    p.add_argument("--exit", action="store_true", help="stop anvil and exit once traffic is done")
    p.add_argument(
        "--json", action="store_true", help="print the URL and addresses as one JSON line"
    )
    p.add_argument(
        "--state",
        type=Path,
        default=None,
        metavar="FILE",
        help="keep the chain in FILE across restarts (anvil --state); continue it when it exists",
    )
    p.add_argument(
        "--state-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="with --state: write the state every SECONDS too, not only on exit (default 2)",
    )
    p.add_argument(
        "--timestamp",
        type=int,
        default=None,
        metavar="UNIX_SECONDS",
        help="genesis timestamp (default: now; with --state: the one recorded for FILE)",
    )
    args = p.parse_args(argv)
    if args.state is not None and args.state_interval <= 0:
        p.error("--state-interval must be > 0")
    return args


def genesis_timestamp(state: Path | None, given: int | None) -> int | None:
    """The genesis timestamp to start anvil with: with a state file, the one recorded beside it
    (written now for a new chain, from `given` or the clock); without one, `given`."""
    if state is None:
        return given
    record = state.with_name(state.name + ".genesis-timestamp")
    if record.exists():
        recorded = int(record.read_text().strip())
        if given is not None and given != recorded:
            raise SystemExit(
                f"devnet: --timestamp {given} differs from the {recorded} recorded in {record} "
                f"for the chain in {state}; drop the option or delete both files for a new chain"
            )
        return recorded
    if state.exists():
        raise SystemExit(
            f"devnet: {state} exists but {record} does not: its genesis timestamp is unknown; "
            f"delete {state} for a new chain"
        )
    stamp = given if given is not None else int(time.time())
    state.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(f"{stamp}\n")
    return stamp


def attach(url: str) -> Deployed | None:
    """The demo system on a chain loaded from a state, or None on a fresh chain; raises when the
    chain holds a partial deployment (killed while deploying)."""
    with JsonRpc(url) as rpc:
        nonce = int(rpc.call("eth_getTransactionCount", ACCOUNT0, "latest"), 16)
        if nonce == 0:
            return None
        missing = [
            name
            for name, address in EXPECTED.as_dict().items()
            if len(rpc.call("eth_getCode", address, "latest")) <= 2
        ]
        head = int(rpc.call("eth_blockNumber"), 16)
    if missing:
        raise RuntimeError(
            f"the chain holds a partial demo deployment (no code for {', '.join(missing)}): "
            f"delete the state file for a new chain"
        )
    w3 = connect(url)
    c = w3.eth.contract
    a = EXPECTED
    return Deployed(
        url=url,
        w3=w3,
        rpc=JsonRpc(url),
        addresses=a,
        weth=c(address=a.weth, abi=abi("WETH9")),
        factory=c(address=a.factory, abi=abi("UniswapV2Factory")),
        router=c(address=a.router, abi=abi("UniswapV2Router02")),
        token_a=c(address=a.token_a, abi=abi("TestToken")),
        token_b=c(address=a.token_b, abi=abi("TestToken")),
        deploy_block=head,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (docker, scripts) and SIGINT (also when started with `&`, which ignores it) both
    # stop anvil cleanly.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    extra: list[str] = []
    stamp = genesis_timestamp(args.state, args.timestamp)
    if stamp is not None:
        extra += ["--timestamp", str(stamp)]
    if args.state is not None:
        extra += ["--state", str(args.state), "--state-interval", f"{args.state_interval:g}"]
    node = Anvil(port=args.port, host=args.host, chain_id=args.chain_id, extra_args=extra)
    try:
        node.start()
        system = attach(node.url) if args.state is not None else None
        continued = system is not None
        if system is None:
            system = Deployer(node.url).deploy()
            head = run_traffic(
                system, rounds=args.rounds, seed=args.seed, txs_per_block=args.txs_per_block
            ).last_block
        else:
            head = int(system.rpc.call("eth_blockNumber"), 16)
        info = {
            "rpc_url": node.url,
            "chain_id": args.chain_id,
            "head": head,
            "continued": continued,
            **system.addresses.as_dict(),
            "pairs": system.pairs(),
        }
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            for key, value in info.items():
                print(f"{key}: {value}", flush=True)
        if args.exit:
            return 0
        deadline = time.monotonic() + args.duration if args.duration else float("inf")
        # a continued chain gets new rounds (another seed sequence than its first run's)
        seed = args.seed + (head if continued else 0)
        while time.monotonic() < deadline:
            time.sleep(args.keep_mining or 1.0)
            if node.proc is None or node.proc.poll() is not None:
                return 0  # Ctrl-C reached anvil (same process group) before us
            if args.keep_mining is None:
                continue
            seed += 1
            try:
                run_traffic(
                    system,
                    rounds=1,
                    seed=seed,
                    prepare=False,
                    sweep=False,
                    txs_per_block=args.txs_per_block,
                )
            except OSError:
                if node.proc.poll() is not None:
                    return 0
                raise
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
