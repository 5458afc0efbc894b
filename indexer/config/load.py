"""Chain YAML (public contract 2): schema, ``${VAR}`` expansion and validation.

Every error names the file, the key path and what is wrong; nothing is started before the
whole file is valid. All problems of a file are collected and reported at once, one line each:
``chains/avalanche.yaml: contracts[1].address: '0xabc' is not a 20-byte hex address (...)``.

Decisions beyond the contract's text:
- ``block_time`` and ``finality_depth`` are required: reorg safety depends on them.
- ``max_reorg_depth`` (optional: the deepest repair the live tail makes on its own, default
  max(10 x finality_depth, 256)) is at least ``finality_depth``.
- ``partition_blocks`` is any positive integer (small spans are for tests; on a real chain keep
  the number of partitions, head / partition_blocks, to a few thousand).
- ``events`` items are names (every overload of that name) or full signatures such as
  ``Transfer(address,address,uint256)`` (that one event); signatures are stored canonical.
- A factory may not name its own contract, nor form a cycle of factories.
- Numbers and booleans read from YAML keep their YAML type; a string is read as a number only
  when it came from a ``${VAR}`` (``chain_id: "1"`` is refused, ``chain_id: ${ID}`` is not).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from indexer.abi import AbiError, event_specs
from indexer.config.contracts import final, read_contracts
from indexer.config.model import (
    DEFAULT_GET_LOGS_MAX_RANGE,
    DEFAULT_PARTITION_BLOCKS,
    ChainConfig,
    ConfigError,
    RpcEndpoint,
    VerifyConfig,
)
from indexer.config.reader import Reader, shown
from indexer.config.values import (
    StrictYamlLoader,
    expand_tree,
    parse_bool,
    parse_chain_name,
    parse_duration,
    parse_fraction,
    parse_int,
    parse_positive_int,
    parse_positive_number,
    parse_url,
    parse_ws_url,
)

_TOP_KEYS = ("name", "chain_id", "rpc", "ws_url", "block_time", "finality_depth",
             "max_reorg_depth", "poll_interval", "start_block", "get_logs_max_range",
             "partition_blocks", "contracts", "verify")
_RPC_KEYS = ("url", "max_requests_per_second", "max_batch_size")
_VERIFY_KEYS = ("sample", "repair", "proof")


# ---------------------------------------------------------------------------- public API


def resolve_chain(name_or_path: str, cwd: Path | None = None) -> Path:
    """The chain file for ``--chain``: a path as given, else ``./chains/NAME.yaml``, else shipped."""
    cwd = cwd or Path.cwd()
    if "/" in name_or_path or os.sep in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        path = cwd / name_or_path
        if not path.is_file():
            raise ConfigError(f"{name_or_path}: chain file not found")
        return path
    places = [cwd / "chains", shipped_chains_dir()]
    for folder in places:
        if (folder / f"{name_or_path}.yaml").is_file():
            return folder / f"{name_or_path}.yaml"
    available = "; ".join(
        f"in {folder}: {', '.join(sorted(p.stem for p in folder.glob('*.yaml'))) or 'none'}"
        for folder in dict.fromkeys(p.resolve() for p in places)
    )
    raise ConfigError(f"unknown chain {name_or_path!r}; chain files {available}")


def shipped_chains_dir() -> Path:
    import indexer

    return Path(indexer.__file__).resolve().parent.parent / "chains"


def load_chains(
    names_or_paths: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> list[ChainConfig]:
    """Load several chains; every file's problems are reported together, and two chains may
    not share a name or a chain id."""
    chains: list[ChainConfig] = []
    problems: list[str] = []
    for item in names_or_paths:
        try:
            chains.append(load_chain(resolve_chain(item, cwd), env))
        except ConfigError as exc:
            problems.extend(exc.problems)
    for attr in ("name", "chain_id"):
        seen: dict[object, ChainConfig] = {}
        for chain in chains:
            other = seen.setdefault(getattr(chain, attr), chain)
            if other is not chain:
                problems.append(f"{shown(chain.source)}: {attr}: {getattr(chain, attr)!r} "
                                f"is also the {attr} of {shown(other.source)}")
    if problems:
        raise ConfigError("\n".join(problems), problems)
    return chains


def load_chain(path: Path, env: Mapping[str, str] | None = None) -> ChainConfig:
    """Read, expand and validate one chain file; raise ``ConfigError`` listing every problem."""
    path = Path(path)
    label = shown(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot read chain file: {exc}") from None
    try:
        tree = yaml.load(text, Loader=StrictYamlLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: invalid YAML: {exc}") from None
    reader = Reader(path, label)
    tree = expand_tree(tree, os.environ if env is None else env, "", reader.problem)
    chain = _read_chain(reader, tree)
    if chain is not None:
        _check_event_types(reader, chain)
    if reader.lines or chain is None:
        raise ConfigError("\n".join(reader.lines), reader.lines)
    return chain


def _check_event_types(r: Reader, chain: ChainConfig) -> None:
    """Every selected event must map to columns (a type like ``uint7`` or ``fixed`` cannot)."""
    for i, c in enumerate(chain.contracts):
        try:
            event_specs(c.name, list(c.abi), list(c.events) if c.events else None)
        except AbiError as exc:
            r.problem(f"contracts[{i}].abi", f"{c.abi_path.name}: {exc}")


def _read_chain(r: Reader, tree: Any) -> ChainConfig | None:
    if tree is None:
        r.problem("", "the file is empty; expected a mapping of chain settings")
        return None
    top = r.mapping(tree, "", _TOP_KEYS)
    if top is None:
        return None
    start_block = r.get(top, "start_block", "", parse_int, default=0)
    values = dict(
        name=r.get(top, "name", "", parse_chain_name),
        chain_id=r.get(top, "chain_id", "", parse_positive_int),
        rpc=_read_rpc(r, top),
        block_time=r.get(top, "block_time", "", parse_duration),
        finality_depth=r.get(top, "finality_depth", "", parse_int),
        start_block=start_block,
        get_logs_max_range=r.get(top, "get_logs_max_range", "", parse_positive_int,
                                 default=DEFAULT_GET_LOGS_MAX_RANGE),
        partition_blocks=r.get(top, "partition_blocks", "", parse_positive_int,
                               default=DEFAULT_PARTITION_BLOCKS),
        poll_interval=r.get(top, "poll_interval", "", parse_duration, default=None),
        ws_url=r.get(top, "ws_url", "", parse_ws_url, default=None),
        verify=_read_verify(r, top),
        max_reorg_depth=r.get(top, "max_reorg_depth", "", parse_positive_int, default=None),
    )
    depth, cap = values["finality_depth"], values["max_reorg_depth"]
    if depth is not None and cap is not None and cap < depth:
        r.problem("max_reorg_depth", f"{cap} must be at least finality_depth ({depth}): a "
                  "reorg within the finality depth is routine")
    drafts = read_contracts(r, top, start_block or 0)
    if r.lines:
        return None
    return ChainConfig(source=r.source, contracts=tuple(final(d) for d in drafts), **values)


def _read_verify(r: Reader, top: dict[Any, Any]) -> VerifyConfig:
    value = top.get("verify")
    node = r.mapping(value, "verify", _VERIFY_KEYS) if value is not None else None
    if node is None:
        return VerifyConfig()
    return VerifyConfig(
        sample=r.get(node, "sample", "verify", parse_fraction, default=0.0),
        repair=r.get(node, "repair", "verify", parse_bool, default=False),
        proof=r.get(node, "proof", "verify", parse_bool, default=False),
    )


def _read_rpc(r: Reader, top: dict[Any, Any]) -> tuple[RpcEndpoint, ...]:
    endpoints: list[RpcEndpoint] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(r.items(top, "rpc", "", "endpoint")):
        at = f"rpc[{i}]"
        node = r.mapping({"url": item} if isinstance(item, str) else item, at, _RPC_KEYS)
        if node is None:
            continue
        url = r.get(node, "url", at, parse_url)
        if url is not None and seen.setdefault(url, i) != i:
            r.problem(f"{at}.url", f"same URL as rpc[{seen[url]}]")
        endpoints.append(RpcEndpoint(
            url=url,
            max_requests_per_second=r.get(node, "max_requests_per_second", at,
                                          parse_positive_number, default=None),
            max_batch_size=r.get(node, "max_batch_size", at, parse_positive_int, default=None),
        ))
    return tuple(endpoints)
