"""The ``contracts:`` list of a chain file: each contract's ABI, addresses, events and factory,
checked against each other (names, table prefixes, factory targets and cycles)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.abi import abi_events, event_signature, find_events
from indexer.config.model import ContractConfig, FactorySpec
from indexer.config.reader import Reader
from indexer.config.values import (
    UNSET,
    Bad,
    describe,
    load_abi,
    parse_address,
    parse_identifier,
    parse_int,
    parse_str,
)
from indexer.naming import snake_case

_CONTRACT_KEYS = ("name", "abi", "address", "factory", "start_block", "events")
_FACTORY_KEYS = ("contract", "event", "parameter")


@dataclass
class Draft:
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


def read_contracts(r: Reader, top: dict[Any, Any], chain_start: int) -> list[Draft]:
    drafts: list[Draft] = []
    for i, item in enumerate(r.items(top, "contracts", "", "contract")):
        draft = _read_contract(r, item, f"contracts[{i}]", chain_start)
        if draft is not None:
            drafts.append(draft)
    by_name: dict[str, Draft] = {}
    tables: dict[str, Draft] = {}
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


def final(d: Draft) -> ContractConfig:
    """The contract of a draft in a file where no problem was found."""
    assert d.name is not None and d.abi_path is not None and d.abi is not None
    assert d.addresses is not None and d.start_block is not None
    return ContractConfig(name=d.name, abi_path=d.abi_path, abi=d.abi, addresses=d.addresses,
                          start_block=d.start_block, events=d.events, factory=d.factory)


def _read_contract(r: Reader, item: Any, at: str, chain_start: int) -> Draft | None:
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
    return Draft(at=at, name=name, abi_path=abi_path, abi=abi, addresses=addresses,
                  start_block=r.get(node, "start_block", at, parse_int, default=chain_start),
                  events=events, factory_node=node.get("factory") if has_factory else None)


def _read_addresses(r: Reader, value: Any, at: str) -> tuple[str, ...] | None:
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


def _abi(r: Reader, path: Path, at: str) -> tuple[dict[str, Any], ...] | None:
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


def _read_events(r: Reader, value: Any, at: str, abi: tuple[dict[str, Any], ...],
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


def _read_factory(r: Reader, draft: Draft, by_name: dict[str, Draft]) -> FactorySpec | None:
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


def _check_factory_cycles(r: Reader, drafts: list[Draft], by_name: dict[str, Draft]) -> None:
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
