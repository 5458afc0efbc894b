"""The ``indexer`` command (public contract 1): arguments, the environment read once
(``Settings``), and every error that can end a command turned into one line and an exit code:
0 done, 1 a runtime failure, 2 an invalid chain file, argument or setting, 130 interrupted."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from indexer import __version__

log = logging.getLogger(__name__)

EXIT_RUNTIME = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="indexer", description="Index EVM contract events into Postgres.")
    p.add_argument("--version", action="version", version=f"indexer {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="index one or more chains")
    run.add_argument("--chain", action="append", required=True, metavar="NAME|PATH",
                     help="chains/NAME.yaml, a shipped chain, or a path; repeat for several")
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="worker processes on this host (default 1)")
    run.add_argument("--until", type=int, metavar="BLOCK", help="index up to BLOCK, then exit")
    run.add_argument("--once", action="store_true", help="index up to the safe head, then exit")
    run.add_argument("--concurrency", type=int, default=4, metavar="K",
                     help="units in flight per chain and process (default 4)")
    run.add_argument("--target-logs", type=int, default=10_000, metavar="N",
                     help="logs per eth_getLogs the range size aims at (default 10000)")
    run.add_argument("--worker-id", metavar="ID",
                     help="name of this worker in leases and status (default HOST:PID)")
    run.add_argument("--watch", action="store_true",
                     help="apply the chain files whenever they change (as SIGHUP does)")

    st = sub.add_parser("status", help="per chain: head, indexed block, lag, rows per table")
    st.add_argument("--chain", action="append", metavar="NAME|PATH")
    st.add_argument("--json", action="store_true")

    sub.add_parser("migrate", help="create or upgrade the system tables")

    rs = sub.add_parser("reset", help="delete everything indexed for a chain")
    rs.add_argument("--chain", required=True, metavar="NAME|PATH")
    rs.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    ri = sub.add_parser("reindex", help="fetch a contract's indexed blocks again and replace "
                        "their rows (after an ABI fix)")
    ri.add_argument("--chain", required=True, metavar="NAME|PATH")
    ri.add_argument("--contract", required=True, metavar="C", help="as named in the chain file")
    ri.add_argument("--event", metavar="E", help="one event (name or signature); default all")
    ri.add_argument("--from-block", type=int, metavar="N", help="default: the contract's start")
    ri.add_argument("--to-block", type=int, metavar="M", help="default: its highest done block")

    ve = sub.add_parser("verify", help="prove the tables equal the chain; --repair what differs")
    ve.add_argument("--chain", required=True, metavar="NAME|PATH")
    ve.add_argument("--contract", metavar="C", help="one contract (default: all)")
    ve.add_argument("--from-block", type=int, metavar="N")
    ve.add_argument("--to-block", type=int, metavar="M", help="default: the highest indexed "
                    "block, at most the safe head")
    ve.add_argument("--repair", action="store_true",
                    help="fetch the differing blocks again, replace their rows, check again")
    ve.add_argument("--proof", action="store_true",
                    help="compare with the logs of the blocks' receipts, proven against "
                    "each block's receiptsRoot and canonical hash, not the eth_getLogs answer")
    ve.add_argument("--json", action="store_true")

    pr = sub.add_parser("prune", help="delete a contract's rows on a chain (after removing it "
                        "from the chain file)")
    pr.add_argument("--chain", required=True, metavar="NAME|PATH")
    pr.add_argument("--contract", required=True, metavar="C")
    pr.add_argument("--event", metavar="E", help="one event (name or signature); default all")
    pr.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    ch = sub.add_parser("chain", help="chain files")
    chsub = ch.add_subparsers(dest="chain_command", required=True)
    chk = chsub.add_parser("check", help="validate a chain file, its ABIs and its RPC")
    chk.add_argument("chain", metavar="NAME|PATH")
    add = chsub.add_parser("add", help="probe an RPC and write chains/NAME.yaml")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--rpc", required=True, action="append", metavar="URL",
                     help="endpoint to probe (repeat for several)")
    add.add_argument("--from-block", type=int, metavar="N", help="start_block (default: head)")
    add.add_argument("--ws", metavar="URL", help="websocket endpoint (eth_subscribe newHeads)")
    add.add_argument("--dir", type=Path, default=Path("chains"), metavar="DIR",
                     help="where to write NAME.yaml (default ./chains)")
    add.add_argument("--force", action="store_true", help="overwrite an existing file")

    sv = sub.add_parser("serve", help="the query API: GraphQL and read-only SQL over HTTP, "
                        "live subscriptions (a separate, stateless, read-only process)")
    sv.add_argument("--port", type=int, default=8080, help="default 8080")
    sv.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (0.0.0.0: all)")
    sv.add_argument("--chain", action="append", metavar="NAME|PATH",
                    help="serve these chains (repeatable): their files' sources decide the "
                    "indexed block, their nodes give the head; default every chain indexed")
    sv.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                    help="statement timeout of every query (default 5)")
    sv.add_argument("--row-limit", type=int, default=10_000, metavar="N",
                    help="most rows one /sql statement may return (default 10000)")
    sv.add_argument("--poll-interval", type=float, default=0.1, metavar="SECONDS",
                    help="how often the database is read for new blocks and repairs: the "
                    "latency of live pushes (default 0.1)")
    sv.add_argument("--pool", type=int, default=8, metavar="N",
                    help="database connections for queries (default 8)")
    sv.add_argument("--cache-ttl", type=float, default=1.0, metavar="SECONDS",
                    help="identical queries read at the same indexed blocks share one answer "
                    "for at most this long (default 1; 0: every query asks the database)")
    sv.add_argument("--rate-limit", type=float, default=0.0, metavar="PER_SECOND",
                    help="requests per second per client address (default 0: no limit)")

    db = sub.add_parser("db", help="the database in use (embedded when DATABASE_URL is unset)")
    db.add_argument("action", choices=["url", "psql", "stop"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    from indexer.ops.commands import run_command

    try:
        return run_command(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as e:  # noqa: BLE001 - the top of the command: every error ends here
        code = exit_code(e)
        if code is None:
            raise
        print(f"error: {describe(e)}", file=sys.stderr)
        return code


def exit_code(error: BaseException) -> int | None:
    """The exit code of an error that ends a command, None for one that is a bug (shown with
    its traceback)."""
    import asyncpg

    from indexer.abi import AbiError
    from indexer.config import ConfigError
    from indexer.live.reorgs import RepairRefused
    from indexer.ops.pgembed import EmbeddedUnavailable
    from indexer.rpc.errors import RpcError
    from indexer.settings import SettingsError
    from indexer.sink.api import SinkError

    if isinstance(error, ConfigError | AbiError | SettingsError):
        return EXIT_CONFIG
    if isinstance(error, RpcError | SinkError | RepairRefused | EmbeddedUnavailable | OSError
                  | TimeoutError | asyncpg.PostgresError | asyncpg.InterfaceError):
        return EXIT_RUNTIME
    return None


def describe(error: BaseException) -> str:
    """One line (or the lines of a config error) saying what went wrong."""
    import asyncpg

    if isinstance(error, asyncpg.PostgresError | asyncpg.InterfaceError):
        return f"database: {type(error).__name__}: {error}"
    if isinstance(error, OSError) and not str(error):
        return type(error).__name__
    if isinstance(error, TimeoutError) and not str(error):
        return "timed out"
    return str(error)
