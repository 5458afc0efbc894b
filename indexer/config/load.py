"""Chain YAML (public contract 2): schema, ``${VAR}`` expansion and validation.

Every error names the file, the key path and what is wrong; nothing is started before the
whole file is valid. All problems of a file are collected and reported at once, one line each:
``chains/avalanche.yaml: contracts[1].address: '0xabc' is not a 20-byte hex address (...)``.

Decisions beyond the contract's text:
- ``block_time`` and ``finality_depth`` are required: reorg safety depends on them.
- ``partition_blocks`` is any positive integer (small spans are for tests; on a real chain keep
  the number of partitions, head / partition_blocks, to a few thousand).
- ``events`` items are names (every overload of that name) or full signatures such as
  ``Transfer(address,address,uint256)`` (that one event); signatures are stored canonical.
- A factory may not name its own contract, nor form a cycle of factories.
- Numbers and booleans read from YAML keep their YAML type; a string is read as a number only
  when it came from a ``${VAR}`` (``chain_id: "1"`` is refused, ``chain_id: ${ID}`` is not).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from indexer.abi import AbiError, abi_events, event_signature, event_specs, find_events
from indexer.config.model import (
    DEFAULT_GET_LOGS_MAX_RANGE,
    DEFAULT_PARTITION_BLOCKS,
    ChainConfig,
    ConfigError,
    ContractConfig,
    FactorySpec,
    RpcEndpoint,
)
from indexer.config.values import (
    UNSET,
    Bad,
    StrictYamlLoader,
    at_key,
    describe,
    expand_tree,
    load_abi,
    parse_address,
    parse_chain_name,
    parse_duration,
    parse_identifier,
    parse_int,
    parse_positive_int,
    parse_positive_number,
    parse_str,
    parse_url,
    parse_ws_url,
)
from indexer.naming import snake_case

_TOP_KEYS = ("name", "chain_id", "rpc", "ws_url", "block_time", "finality_depth",
             "poll_interval", "start_block", "get_logs_max_range", "partition_blocks",
             "contracts")
_RPC_KEYS = ("url", "max_requests_per_second", "max_batch_size")
_CONTRACT_KEYS = ("name", "abi", "address", "factory", "start_block", "events")
_FACTORY_KEYS = ("contract", "event", "parameter")
_REQUIRED: Any = object()


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
                problems.append(f"{_shown(chain.source)}: {attr}: {getattr(chain, attr)!r} "
                                f"is also the {attr} of {_shown(other.source)}")
    if problems:
        raise ConfigError("\n".join(problems), problems)
    return chains


def load_chain(path: Path, env: Mapping[str, str] | None = None) -> ChainConfig:
    """Read, expand and validate one chain file; raise ``ConfigError`` listing every problem."""
    path = Path(path)
    shown = _shown(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: cannot read chain file: {exc}") from None
    try:
        tree = yaml.load(text, Loader=StrictYamlLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: invalid YAML: {exc}") from None
    reader = _Reader(path, shown)
    tree = expand_tree(tree, os.environ if env is None else env, "", reader.problem)
    chain = _read_chain(reader, tree)
    if chain is not None:
        _check_event_types(reader, chain)
    if reader.lines or chain is None:
        raise ConfigError("\n".join(reader.lines), reader.lines)
    return chain


def _check_event_types(r: _Reader, chain: ChainConfig) -> None:
    """Every selected event must map to columns (a type like ``uint7`` or ``fixed`` cannot)."""
    for i, c in enumerate(chain.contracts):
        try:
            event_specs(c.name, list(c.abi), list(c.events) if c.events else None)
        except AbiError as exc:
            r.problem(f"contracts[{i}].abi", f"{c.abi_path.name}: {exc}")


# ---------------------------------------------------------------------------- reading


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class _Reader:
    """Reads one file's tree, recording each problem with its key path instead of stopping."""

    def __init__(self, source: Path, shown: str) -> None:
        self.source = source
        self.shown = shown
        self.lines: list[str] = []
        self.abis: dict[Path, tuple[dict[str, Any], ...] | Bad] = {}

    def problem(self, at: str, reason: str) -> None:
        self.lines.append(f"{self.shown}: {at}: {reason}" if at else f"{self.shown}: {reason}")

    def mapping(self, node: Any, at: str, allowed: Sequence[str]) -> dict[Any, Any] | None:
        if node is UNSET:
            return None
        if not isinstance(node, dict):
            self.problem(at, f"expected a mapping, got {describe(node)}")
            return None
        for key in node:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(allowed)})"
                self.problem(at_key(at, key), f"unknown key{hint}")
        return node

    def get(self, node: dict[Any, Any], key: str, at: str, parse: Callable[[Any], Any],
            default: Any = _REQUIRED) -> Any:
        """``parse(node[key])``; a missing or null key takes ``default``. None when invalid."""
        value = node.get(key)
        if value is None:
            if default is _REQUIRED:
                self.problem(at_key(at, key), "required key is missing")
                return None
            return default
        if value is UNSET:
            return None
        try:
            return parse(value)
        except Bad as exc:
            self.problem(at_key(at, key), str(exc))
            return None

    def items(self, node: dict[Any, Any], key: str, at: str, what: str) -> list[Any]:
        """The non-empty list ``node[key]``, or [] after reporting why not."""
        value = node.get(key)
        where = at_key(at, key)
        if value is None:
            self.problem(where, "required key is missing")
        elif value is UNSET:
            pass
        elif not isinstance(value, list):
            self.problem(where, f"expected a list of {what}s, got {describe(value)}")
        elif not value:
            self.problem(where, f"must list at least one {what}")
        else:
            return value
        return []


def _read_chain(r: _Reader, tree: Any) -> ChainConfig | None:
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
    )
    drafts = _read_contracts(r, top, start_block or 0)
    if r.lines:
        return None
    return ChainConfig(source=r.source, contracts=tuple(_final(d) for d in drafts), **values)


def _read_rpc(r: _Reader, top: dict[Any, Any]) -> tuple[RpcEndpoint, ...]:
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


# ---------------------------------------------------------------------------- contracts


@dataclass
class _Draft:
    """A contract while its file is being read; None marks a part found invalid."""

    at: str
    name: str | None
    abi_path: Path | None
    abi: tuple[dict[str, Any], ...] | None
    addresses: tuple[str, ...] | None
    start_block: int | None
    events: tuple[str, ...] | None
    factory_node: Any = None
    factory: FactorySpec | None = None


def _read_contracts(r: _Reader, top: dict[Any, Any], chain_start: int) -> list[_Draft]:
    drafts: list[_Draft] = []
    for i, item in enumerate(r.items(top, "contracts", "", "contract")):
        draft = _read_contract(r, item, f"contracts[{i}]", chain_start)
        if draft is not None:
            drafts.append(draft)
    by_name: dict[str, _Draft] = {}
    tables: dict[str, _Draft] = {}
    for draft in drafts:
        if draft.name is None:
            continue
        by_name.setdefault(draft.name, draft)
        other = tables.setdefault(snake_case(draft.name), draft)
        if other is not draft:
            same = "name" if other.name == draft.name else f"table prefix as {other.name!r}"
            r.problem(f"{draft.at}.name", f"{draft.name!r} has the same {same} in {other.at}")
    for draft in drafts:
        if draft.factory_node is not None:
            draft.factory = _read_factory(r, draft, by_name)
    _check_factory_cycles(r, drafts, by_name)
    return drafts


def _final(d: _Draft) -> ContractConfig:
    """The contract of a draft in a file where no problem was found."""
    assert d.name is not None and d.abi_path is not None and d.abi is not None
    assert d.addresses is not None and d.start_block is not None
    return ContractConfig(name=d.name, abi_path=d.abi_path, abi=d.abi, addresses=d.addresses,
                          start_block=d.start_block, events=d.events, factory=d.factory)


def _read_contract(r: _Reader, item: Any, at: str, chain_start: int) -> _Draft | None:
    node = r.mapping(item, at, _CONTRACT_KEYS)
    if node is None:
        return None
    name = r.get(node, "name", at, parse_identifier)
    abi_path = r.get(node, "abi", at, lambda v: r.source.parent / parse_str(v))
    abi = _abi(r, abi_path, f"{at}.abi") if abi_path is not None else None
    has_address, has_factory = node.get("address") is not None, node.get("factory") is not None
    if has_address == has_factory:
        r.problem(at, "has both 'address' and 'factory'; give one" if has_address
                  else "needs 'address' (fixed contracts) or 'factory' (discovered ones)")
    addresses = _read_addresses(r, node["address"], f"{at}.address") if has_address else ()
    events = None
    if node.get("events") is not None and abi is not None:
        events = _read_events(r, node["events"], f"{at}.events", abi, node.get("abi"))
    return _Draft(at=at, name=name, abi_path=abi_path, abi=abi, addresses=addresses,
                  start_block=r.get(node, "start_block", at, parse_int, default=chain_start),
                  events=events, factory_node=node.get("factory") if has_factory else None)


def _read_addresses(r: _Reader, value: Any, at: str) -> tuple[str, ...] | None:
    if value is UNSET:
        return None
    if not isinstance(value, list):
        try:
            return (parse_address(value),)
        except Bad as exc:
            r.problem(at, str(exc))
            return None
    if not value:
        r.problem(at, "must list at least one address")
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        try:
            address = parse_address(item) if item is not UNSET else None
        except Bad as exc:
            r.problem(f"{at}[{i}]", str(exc))
            continue
        if address is not None and seen.setdefault(address, i) != i:
            r.problem(f"{at}[{i}]", f"same address as {at}[{seen[address]}]")
    return tuple(seen)


def _abi(r: _Reader, path: Path, at: str) -> tuple[dict[str, Any], ...] | None:
    key = path.resolve()
    if key not in r.abis:
        try:
            r.abis[key] = load_abi(path)
        except Bad as exc:
            r.abis[key] = exc
    loaded = r.abis[key]
    if isinstance(loaded, Bad):
        r.problem(at, str(loaded))
        return None
    return loaded


def _not_an_event(abi: tuple[dict[str, Any], ...], wanted: str, where: str) -> str:
    names = list(dict.fromkeys(e["name"] for e in abi_events(abi)))
    close = difflib.get_close_matches(wanted.split("(")[0], names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{wanted!r} is not an event of {where} ({hint}events there: {', '.join(names)})"


def _read_events(r: _Reader, value: Any, at: str, abi: tuple[dict[str, Any], ...],
                 abi_name: Any) -> tuple[str, ...] | None:
    if value is UNSET:
        return None
    if not isinstance(value, list) or not value:
        r.problem(at, "expected a non-empty list of event names or signatures "
                      f"(leave the key out for every event), got {describe(value)}")
        return None
    chosen: dict[str, int] = {}
    for i, item in enumerate(value):
        if item is UNSET:
            continue
        try:
            wanted = parse_str(item)
        except Bad as exc:
            r.problem(f"{at}[{i}]", str(exc))
            continue
        if not find_events(abi, wanted):
            r.problem(f"{at}[{i}]", _not_an_event(abi, wanted, str(abi_name)))
            continue
        key = "".join(wanted.split())
        if chosen.setdefault(key, i) != i:
            r.problem(f"{at}[{i}]", f"{wanted!r} is already listed at {at}[{chosen[key]}]")
    return tuple(chosen)


def _read_factory(r: _Reader, draft: _Draft, by_name: dict[str, _Draft]) -> FactorySpec | None:
    at = f"{draft.at}.factory"
    node = r.mapping(draft.factory_node, at, _FACTORY_KEYS)
    if node is None:
        return None
    contract, event, parameter = (r.get(node, key, at, parse_str) for key in _FACTORY_KEYS)
    if contract is None or event is None or parameter is None:
        return None
    target = by_name.get(contract)
    if target is None or target is draft:
        close = difflib.get_close_matches(contract, [n for n in by_name if n != draft.name], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        why = "is this contract itself" if target is draft else "names no contract in this file"
        r.problem(f"{at}.contract", f"{contract!r} {why}{hint}")
        return None
    spec = FactorySpec(contract=contract, event=event, parameter=parameter)
    if target.abi is None:  # its ABI problem is reported at the target
        return spec
    matches = find_events(target.abi, event)
    if not matches:
        r.problem(f"{at}.event", _not_an_event(target.abi, event, f"{contract}'s ABI"))
    for entry in matches:
        inputs = {p.get("name"): p["type"] for p in entry["inputs"]}
        if parameter not in inputs:
            names = ", ".join(str(p.get("name") or "(unnamed)") for p in entry["inputs"])
            r.problem(f"{at}.parameter", f"{event_signature(entry)} has no parameter "
                                         f"{parameter!r} (its parameters: {names})")
        elif inputs[parameter] != "address":
            r.problem(f"{at}.parameter", f"{parameter!r} of {event_signature(entry)} is "
                                         f"{inputs[parameter]}, not address")
    return spec


def _check_factory_cycles(r: _Reader, drafts: list[_Draft], by_name: dict[str, _Draft]) -> None:
    for draft in drafts:
        seen = [draft]
        current = draft
        while current.factory is not None and current.factory.contract in by_name:
            current = by_name[current.factory.contract]
            if current is draft:
                names = " -> ".join(str(d.name) for d in [*seen, draft])
                r.problem(f"{draft.at}.factory", f"factories form a cycle: {names}")
                break
            if current in seen:
                break
            seen.append(current)
