"""``indexer chain add NAME --rpc URL``: probe an endpoint and write ``chains/NAME.yaml``.

The probe asks what the file needs: the chain id (all endpoints must agree), the block time from
recent headers, whether the ``finalized`` tag answers and how far behind the head it is, the
largest ``eth_getLogs`` range and JSON-RPC batch each endpoint accepts, and, when given, whether
a websocket endpoint takes ``eth_subscribe``. A chain id the project knows (a shipped chain file
or the table below) fills the reviewed defaults and that chain's contracts; any other chain gets
defaults derived from the probe and one placeholder contract to replace, so that the file loads
and runs as written.

Probing is separate from choosing values (``choose``) and from writing text (``render``): both
are pure and tested without a network.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from indexer.config import (
    DEFAULT_GET_LOGS_MAX_RANGE,
    ConfigError,
    load_chain,
    shipped_chains_dir,
)
from indexer.config.values import Bad, parse_chain_name, parse_duration
from indexer.ops.probe import (
    BATCH_SIZES,
    LOG_RANGES,
    PLACEHOLDER_ADDRESS,
    Probe,
    ProbeError,
    probe_endpoints,
)
from indexer.rpc.transport import endpoint_label

EXIT_CONFIG = 2


@dataclass(frozen=True, slots=True)
class Known:
    """Reviewed defaults of a chain id the project knows but does not ship a file for."""

    label: str
    block_time: float
    finality_depth: int
    partition_blocks: int


# Public networks without a shipped file (testnets and other EVM chains). Shipped chain files
# are known too: their values and contracts are read from chains/*.yaml.
KNOWN: dict[int, Known] = {
    11155111: Known("Ethereum Sepolia", 12.0, 64, 1_000_000),
    17000: Known("Ethereum Holesky", 12.0, 64, 1_000_000),
    560048: Known("Ethereum Hoodi", 12.0, 64, 1_000_000),
    84532: Known("Base Sepolia", 2.0, 30, 1_000_000),
    11155420: Known("OP Sepolia", 2.0, 30, 1_000_000),
    421614: Known("Arbitrum Sepolia", 0.25, 240, 10_000_000),
    42170: Known("Arbitrum Nova", 0.25, 240, 10_000_000),
    80002: Known("Polygon Amoy", 2.0, 256, 1_000_000),
    43113: Known("Avalanche Fuji", 2.0, 32, 1_000_000),
    97: Known("BNB Smart Chain testnet", 0.75, 30, 2_000_000),
    5000: Known("Mantle", 2.0, 30, 1_000_000),
    81457: Known("Blast", 2.0, 30, 1_000_000),
    34443: Known("Mode", 2.0, 30, 1_000_000),
    7777777: Known("Zora", 2.0, 30, 1_000_000),
    130: Known("Unichain", 1.0, 60, 2_000_000),
    1101: Known("Polygon zkEVM", 3.0, 20, 1_000_000),
    42220: Known("Celo", 1.0, 60, 2_000_000),
    1284: Known("Moonbeam", 6.0, 10, 1_000_000),
    25: Known("Cronos", 6.0, 20, 1_000_000),
    1088: Known("Metis", 2.0, 30, 1_000_000),
    204: Known("opBNB", 1.0, 60, 2_000_000),
    31337: Known("a local anvil or hardhat node", 1.0, 0, 1_000_000),
}


@dataclass(frozen=True, slots=True)
class Choice:
    """The values written to the file, each with the comment that explains it."""

    name: str
    chain_id: int
    label: str
    block_time: float
    finality_depth: int
    start_block: int
    get_logs_max_range: int
    partition_blocks: int
    comments: dict[str, str]
    contracts: list[dict[str, Any]]
    abis: list[str]  # ABI paths (relative to chains/) the contracts use
    placeholder: bool


# ---------------------------------------------------------------------------- entry point


async def add_chain(args: argparse.Namespace) -> int:
    try:
        name = parse_chain_name(args.name)
    except Bad as e:
        print(f"error: chain name {e}", file=sys.stderr)
        return EXIT_CONFIG
    folder = Path(args.dir)
    target = folder / f"{name}.yaml"
    if target.exists() and not args.force:
        print(f"error: {target} exists; pass --force to overwrite it", file=sys.stderr)
        return EXIT_CONFIG
    urls = list(dict.fromkeys(args.rpc))
    for url in urls:
        if urlsplit(url).scheme not in ("http", "https"):
            print(f"error: --rpc {endpoint_label(url, 0)}: expected an http(s) URL "
                  "(give a websocket endpoint with --ws)", file=sys.stderr)
            return EXIT_CONFIG
    try:
        probe = await probe_endpoints(urls, args.ws)
    except ProbeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    report(probe)
    if args.from_block is not None and args.from_block > probe.head:
        print(f"error: --from-block {args.from_block:,} is above the head ({probe.head:,})",
              file=sys.stderr)
        return EXIT_CONFIG
    choice = choose(name, probe, args.from_block, shipped_chain_by_id())
    folder.mkdir(parents=True, exist_ok=True)
    _copy_abis(choice.abis, folder)
    target.write_text(render(choice, urls, probe), encoding="utf-8")
    try:
        load_chain(target)
    except ConfigError as e:  # a bug of this module: say so rather than leave a bad file
        print(f"error: the written file does not load:\n{e}", file=sys.stderr)
        return 1
    print(f"wrote {target}")
    print(_next_steps(name, target, choice, urls))
    return 0


def report(p: Probe) -> None:
    bt = "unknown" if p.block_time is None else f"{p.block_time:.3g} s over {p.sample_blocks} blocks"
    print(f"chain id {p.chain_id}, head {p.head:,}, block time {bt}")
    fin = "not supported" if p.finalized is None else f"block {p.finalized:,} ({p.head - p.finalized:,} behind the head)"
    print(f"finalized tag: {fin}")
    for label, size in p.logs_range.items():
        refused = p.logs_refusal.get(label)
        tail = f"; refused the next size: {refused}" if refused else ""
        shown = "refused every size tried" if size is None else f"{size:,} blocks"
        print(f"{label}: eth_getLogs range {shown}{tail}; batch {p.batch.get(label) or 'refused'}")
    if p.ws is not None:
        print(f"websocket: {p.ws}")


def _next_steps(name: str, target: Path, c: Choice, urls: list[str]) -> str:
    lines = ["next:"]
    if c.placeholder:
        lines.append(f"  1. replace the placeholder contract in {target} with yours "
                     "(ABI files go in abis/ beside it)")
    else:
        lines.append(f"  1. review the contracts in {target} (copied from the shipped {c.label} file)")
    lines.append(f"  2. indexer chain check {name if target.parent == Path('chains') else target}")
    lines.append(f"  3. indexer run --chain {name if target.parent == Path('chains') else target}")
    if any(_looks_secret(u) for u in urls):
        lines.append(f"  note: an RPC URL looks like it holds an API key; it is read from "
                     f"${_env_name(name, 0)} (set it before running), not written into the file")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- choosing (pure)


def shipped_chain_by_id() -> dict[int, dict[str, Any]]:
    """Raw YAML of every shipped chain file, by chain id (the known chains with contracts)."""
    out: dict[int, dict[str, Any]] = {}
    for path in sorted(shipped_chains_dir().glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("chain_id"), int):
            data["_file"] = path.name
            out.setdefault(data["chain_id"], data)
    return out


def duration_text(seconds: float) -> str:
    """``12s``, ``2s``, ``250ms``: how a block time is written in a chain file."""
    if seconds >= 1 and abs(seconds - round(seconds)) < 0.05:
        return f"{round(seconds)}s"
    return f"{max(50, round(seconds * 1000 / 50) * 50)}ms"


def round_block_time(seconds: float) -> float:
    """A measured block time rounded the way chain files write it (50 ms steps below 1 s,
    else whole seconds, or 50 ms steps when clearly fractional)."""
    if seconds >= 1 and abs(seconds - round(seconds)) < 0.15:
        return float(round(seconds))
    return max(0.05, round(seconds * 20) / 20)


def partition_span(block_time: float) -> int:
    """About four weeks of blocks, as 1M, 2M, 5M or 10M (shipped files use the same steps)."""
    blocks = 28 * 86_400 / block_time
    return min((1_000_000, 2_000_000, 5_000_000, 10_000_000), key=lambda s: abs(s - blocks))


def default_finality(block_time: float) -> int:
    """About a minute of blocks, between 5 and 256: the margin shipped L2 files use."""
    return max(5, min(256, math.ceil(60 / block_time)))


def choose(name: str, p: Probe, from_block: int | None,
           shipped: dict[int, dict[str, Any]]) -> Choice:
    comments: dict[str, str] = {}
    measured = None if p.block_time is None else round_block_time(p.block_time)
    measured_text = ("not measurable (recent headers share one timestamp)" if measured is None
                     else f"measured {p.block_time:.3g} s over the last {p.sample_blocks} blocks")
    base = shipped.get(p.chain_id)
    known = KNOWN.get(p.chain_id)
    if base is not None:
        label = str(base["name"])
        block_time = _seconds(base["block_time"])
        depth = int(base["finality_depth"])
        span = int(base.get("partition_blocks", 1_000_000))
        comments["block_time"] = f"from the shipped {base['_file']}; {measured_text}"
        comments["finality_depth"] = f"from the shipped {base['_file']}"
        comments["partition_blocks"] = f"from the shipped {base['_file']}"
    elif known is not None:
        label = known.label
        block_time, depth, span = known.block_time, known.finality_depth, known.partition_blocks
        comments["block_time"] = f"default for {known.label}; {measured_text}"
        comments["finality_depth"] = f"default for {known.label}"
        comments["partition_blocks"] = f"default for {known.label}: about four weeks of blocks"
    else:
        label = f"chain id {p.chain_id}"
        block_time = measured if measured is not None else 2.0
        comments["block_time"] = measured_text if measured is not None else f"{measured_text}; 2s assumed: set it"
        depth, comments["finality_depth"] = _probed_finality(p, block_time)
        span = partition_span(block_time)
        comments["partition_blocks"] = "about four weeks of blocks"
    if base is None and p.finalized is not None:
        comments["finality_depth"] += f"; the finalized tag is {p.head - p.finalized:,} blocks behind"
    elif p.finalized is None:
        comments["finality_depth"] += "; the endpoint does not answer the finalized tag"
    start = p.head if from_block is None else from_block
    comments["start_block"] = ("the head when this file was written: history before it is not indexed"
                               if from_block is None else "from --from-block")
    logs_range, comments["get_logs_max_range"] = _logs_range(p)
    contracts, abis, placeholder = _contracts(base, start)
    return Choice(name, p.chain_id, label, block_time, depth, start, logs_range, span, comments,
                  contracts, abis, placeholder)


def _logs_range(p: Probe) -> tuple[int, str]:
    accepted = [v for v in p.logs_range.values() if v is not None]
    if not accepted:
        return 1_000, "every eth_getLogs probe was refused; a guess: the indexer splits refused ranges"
    if not p.logs_refusal and min(accepted) >= p.head + 1:
        return (DEFAULT_GET_LOGS_MAX_RANGE,
                f"no limit met up to the head ({p.head + 1:,} blocks); the default")
    refused = "" if p.logs_refusal else f", none refused up to {LOG_RANGES[-1]:,}"
    return min(accepted), (f"largest eth_getLogs range every endpoint accepted{refused}; "
                           "the indexer adapts below it")


def _probed_finality(p: Probe, block_time: float) -> tuple[int, str]:
    fallback = default_finality(block_time)
    if p.finalized is not None and p.finalized > 0:
        behind = p.head - p.finalized
        if 0 <= behind <= 600 / block_time:
            return behind, "distance of the finalized tag from the head"
    return fallback, "about a minute of blocks (no reorg beyond it is expected on most chains)"


def _seconds(value: Any) -> float:
    return parse_duration(value)


def _contracts(base: dict[str, Any] | None, start: int) -> tuple[list[dict[str, Any]], list[str], bool]:
    if base is None or not base.get("contracts"):
        contract = {"name": "Placeholder", "abi": "abis/erc20.json", "address": PLACEHOLDER_ADDRESS,
                    "events": ["Transfer"]}
        return [contract], ["abis/erc20.json"], True
    contracts = []
    for c in base["contracts"]:
        c = dict(c)
        c.pop("start_block", None)  # the file's start_block applies: from the head or --from-block
        contracts.append(c)
    return contracts, sorted({str(c["abi"]) for c in contracts}), False


# ---------------------------------------------------------------------------- writing (pure)


def _looks_secret(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.username or parts.password or parts.query
                or re.search(r"[A-Za-z0-9_-]{20,}", parts.path))


def _env_name(name: str, index: int) -> str:
    return f"{name.upper()}_RPC_URL" + (f"_{index + 1}" if index else "")


def render(c: Choice, urls: list[str], p: Probe) -> str:
    when = time.strftime("%Y-%m-%d", time.gmtime())
    lines = [
        f"# {c.label}: written by `indexer chain add {c.name}` on {when} after probing the RPC.",
        f"# Probe: chain id {p.chain_id}, head {p.head:,}; every value below says where it came from.",
        f"name: {c.name}",
        f"chain_id: {c.chain_id}",
        "rpc:",
    ]
    for i, url in enumerate(urls):
        label = endpoint_label(url, i)
        env = _env_name(c.name, i)
        value = f"${{{env}}}" if _looks_secret(url) else f"${{{env}:-{url}}}"
        lines.append(f"  - url: {value}")
        batch = p.batch.get(label)
        if batch is not None and batch < BATCH_SIZES[-1]:
            lines.append(f"    max_batch_size: {batch}          # largest JSON-RPC batch it answered")
        elif batch is None:
            lines.append("    max_batch_size: 1           # it refused JSON-RPC batches")
        else:
            lines.append(f"    # batches of {batch} answered (the client's default size)")
    if p.ws_url is not None:
        env = f"{c.name.upper()}_WS_URL"
        value = f"${{{env}}}" if _looks_secret(p.ws_url) else f"${{{env}:-{p.ws_url}}}"
        lines.append(f"ws_url: {value}".ljust(35) + " # eth_subscribe newHeads answered: wakes "
                     "the live tail (polling stays the safety net)")
    elif p.ws is not None:
        lines.append(f"# websocket probe: {p.ws}; not used (the live tail polls over HTTP)")
    if p.finalized is not None or p.safe is not None:
        tags = ", ".join(t for t, v in (("finalized", p.finalized), ("safe", p.safe)) if v is not None)
        lines.append(f"# tags answered: {tags}")
    lines += [
        f"block_time: {duration_text(c.block_time)}".ljust(36) + f"# {c.comments['block_time']}",
        f"finality_depth: {c.finality_depth}".ljust(36) + f"# {c.comments['finality_depth']}",
        f"start_block: {c.start_block}".ljust(36) + f"# {c.comments['start_block']}",
        f"get_logs_max_range: {c.get_logs_max_range}".ljust(36)
        + f"# {c.comments['get_logs_max_range']}",
        f"partition_blocks: {c.partition_blocks}".ljust(36) + f"# {c.comments['partition_blocks']}",
    ]
    if c.placeholder:
        lines += [
            "# Placeholder so that the file loads and runs as written: nothing is ever emitted by",
            "# the zero address. Replace it with your contracts (ABI files in abis/ beside this",
            "# file); `indexer chain check` reports it as having no code until then.",
        ]
    else:
        lines.append(f"# Contracts copied from the shipped {c.label} file; they start at start_block.")
    body = yaml.safe_dump({"contracts": c.contracts}, sort_keys=False, default_flow_style=None,
                          width=100)
    return "\n".join(lines) + "\n" + body


def _copy_abis(abis: list[str], folder: Path) -> None:
    """Copy the shipped ABI files the contracts use next to the new file, unless present."""
    for rel in abis:
        src = shipped_chains_dir() / rel
        dst = folder / rel
        if not dst.exists() and src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)

