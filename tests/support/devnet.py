"""A local demo chain: anvil + the demo system + traffic.

    python -m tests.support.devnet --port 8545 [--rounds N] [--keep-mining SECONDS]
                                   [--duration SECONDS] [--exit] [--json] [--host 0.0.0.0]

Starts anvil (chain id 31337) in this process group, deploys WETH9, the Uniswap V2 factory and
router and two TestTokens at their fixed addresses, runs `--rounds` rounds of traffic and prints
the RPC URL and the addresses. Then the node stays up until interrupted (or `--duration`
elapses), sending one more traffic round every `--keep-mining` seconds if given; `--exit` stops
anvil and exits right after printing.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from tests.support.contracts import Deployer
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
    return p.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (docker, scripts) and SIGINT (also when started with `&`, which ignores it) both
    # stop anvil cleanly.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    node = Anvil(port=args.port, host=args.host, chain_id=args.chain_id)
    try:
        node.start()
        system = Deployer(node.url).deploy()
        report = run_traffic(
            system, rounds=args.rounds, seed=args.seed, txs_per_block=args.txs_per_block
        )
        info = {
            "rpc_url": node.url,
            "chain_id": args.chain_id,
            "head": report.last_block,
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
        seed = args.seed
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
