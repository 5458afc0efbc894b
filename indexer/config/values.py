"""Values of chain files: ``${VAR}`` expansion, integers, durations, URLs, addresses, ABIs.

Each parser takes one value as YAML produced it and returns it typed, or raises ``Bad`` with
the reason; the loader adds the file and the key path. Only ``load_abi`` reads a file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from indexer.abi import keccak256


class Bad(Exception):
    """One value is invalid; ``str()`` is the reason, without file or key path."""


class Expanded(str):
    """A string that held ``${VAR}`` references: numeric keys read it as a number."""


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


# Stands for a value whose variable was unset: already reported, so no other rule looks at it.
UNSET: Any = _Unset()

_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}|\$\{[^}]*\}?")


def expand(text: str, env: Mapping[str, str]) -> str:
    """``${VAR}``, ``${VAR:-default}`` (default when unset or empty) and ``$$`` for ``$``.

    A default is taken literally (it is not expanded again).
    """
    unset: list[str] = []
    referenced = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal referenced
        token = match.group(0)
        if token == "$$":
            return "$"
        name = match.group(1)
        if name is None:
            raise Bad(
                f"malformed variable reference {token!r}: write ${{NAME}} or "
                "${NAME:-default}, and $$ for a literal $"
            )
        referenced = True
        value = env.get(name)
        if match.group(2) is not None and not value:
            return match.group(3)
        if value is None:
            unset.append(name)
            return ""
        return value

    out = _REFERENCE.sub(substitute, text)
    if unset:
        names = ", ".join(unset)
        raise Bad(
            f"environment variable {names} is not set "
            f"(set it, or give a default: ${{{unset[0]}:-value}})"
        )
    return Expanded(out) if referenced else out


def expand_tree(node: Any, env: Mapping[str, str], at: str, report: Callable[[str, str], None]) -> Any:
    """Expand every string value (not keys) of a parsed YAML tree; bad ones become ``UNSET``."""
    if isinstance(node, dict):
        return {k: expand_tree(v, env, at_key(at, k), report) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_tree(v, env, f"{at}[{i}]", report) for i, v in enumerate(node)]
    if isinstance(node, str):
        try:
            return expand(node, env)
        except Bad as exc:
            report(at, str(exc))
            return UNSET
    return node


class StrictYamlLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (YAML would keep the last)."""


def _construct_mapping(loader: StrictYamlLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, str | int) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
            )
        if isinstance(key, str | int):
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


StrictYamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def at_key(at: str, key: object) -> str:
    return f"{at}.{key}" if at else str(key)


def describe(value: Any) -> str:
    """How a wrong value is named in a message."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "nothing"
    return repr(value).lower() if isinstance(value, bool) else repr(value)


def parse_str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise Bad(f"expected a non-empty string, got {describe(value)}")
    return str(value)


CHAIN_NAME = re.compile(r"[a-z0-9_]{1,40}")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_chain_name(value: Any) -> str:
    name = parse_str(value)
    if not CHAIN_NAME.fullmatch(name):
        raise Bad(f"{name!r} must be 1-40 characters of a-z, 0-9 and _")
    return name


def parse_identifier(value: Any) -> str:
    name = parse_str(value)
    if not IDENTIFIER.fullmatch(name):
        raise Bad(f"{name!r} is not an identifier (letters, digits and _, not starting with a digit)")
    return name


def parse_int(value: Any, minimum: int = 0) -> int:
    """An integer >= ``minimum``; a string only if it came from a variable."""
    if isinstance(value, Expanded):
        try:
            value = int(value.strip())
        except ValueError:
            raise Bad(f"expected an integer, got {describe(str(value))}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Bad(f"expected an integer, got {describe(value)}")
    if value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise Bad(f"must be {kind}, got {value}")
    return value


def parse_positive_int(value: Any) -> int:
    return parse_int(value, minimum=1)


def parse_positive_number(value: Any) -> float:
    if isinstance(value, Expanded):
        try:
            value = float(value.strip())
        except ValueError:
            raise Bad(f"expected a number, got {describe(str(value))}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Bad(f"expected a number, got {describe(value)}")
    if not (value > 0 and math.isfinite(value)):
        raise Bad(f"must be a positive number, got {value}")
    return float(value)


def parse_fraction(value: Any) -> float:
    """A number from 0 to 1 (``0.01``, or ``1%``)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            value = float(value.strip()[:-1]) / 100
        except ValueError:
            raise Bad(f"expected a fraction such as 0.01 or 1%, got {describe(value)}") from None
    elif isinstance(value, Expanded):
        try:
            value = float(value.strip())
        except ValueError:
            raise Bad(f"expected a fraction such as 0.01 or 1%, got {describe(str(value))}") \
                from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Bad(f"expected a fraction such as 0.01 or 1%, got {describe(value)}")
    if not 0 <= value <= 1:
        raise Bad(f"must be between 0 and 1 (or 0% and 100%), got {value}")
    return float(value)


def parse_bool(value: Any) -> bool:
    if isinstance(value, Expanded) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise Bad(f"expected true or false, got {describe(value)}")
    return value


_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds, from ``2s``, ``250ms``, ``1m``, ``1h`` or a bare number of seconds (``12``, 0.25)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Bad(f"expected a duration such as 2s or 250ms, got {describe(value)}")
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise Bad(f"{value!r} is not a duration (write e.g. 2s, 250ms, 1m or 12)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    else:
        seconds = float(value)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise Bad(f"must be longer than 0, got {value!r}")
    return seconds


_URL_SCHEMES = ("http", "https", "ws", "wss")


def parse_url(value: Any) -> str:
    """An http(s) or ws(s) URL. Messages never repeat the URL: it may hold an API key."""
    if not isinstance(value, str) or not value.strip():
        raise Bad(f"expected a URL, got {describe(value) if not isinstance(value, str) else 'an empty string'}")
    parts = urlsplit(value.strip())
    if parts.scheme.lower() not in _URL_SCHEMES:
        shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise Bad(f"URL has {shown}; expected one of {', '.join(_URL_SCHEMES)}")
    if not parts.hostname:
        raise Bad("URL has no host")
    return value.strip()


def parse_ws_url(value: Any) -> str:
    """A websocket (ws:// or wss://) URL."""
    url = parse_url(value)
    if urlsplit(url).scheme.lower() not in ("ws", "wss"):
        raise Bad("expected a websocket URL (ws:// or wss://) for eth_subscribe newHeads")
    return url


_HEX40 = re.compile(r"0x[0-9a-fA-F]{40}")


def to_checksum_address(address: str) -> str:
    """EIP-55 mixed-case form of a 0x-prefixed 20-byte hex address."""
    hex_lower = address[2:].lower()
    digest = keccak256(hex_lower.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if int(d, 16) >= 8 else c for c, d in zip(hex_lower, digest[:40], strict=True))


def parse_address(value: Any) -> str:
    """A 20-byte hex address, lower-cased; a mixed-case one must carry a valid EIP-55 checksum."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise Bad("YAML reads an unquoted 0x... value as a number: put the address in quotes")
    if not isinstance(value, str):
        raise Bad(f"expected a 0x-prefixed address, got {describe(value)}")
    if not _HEX40.fullmatch(value):
        digits = value[2:] if value[:2].lower() == "0x" else value
        why = "must start with 0x" if not value.startswith("0x") else (
            "has non-hex characters" if re.search(r"[^0-9a-fA-F]", digits)
            else f"has {len(digits)} hex digits, not 40"
        )
        raise Bad(f"{value!r} is not a 20-byte hex address ({why})")
    digits = value[2:]
    if digits not in (digits.lower(), digits.upper()) and to_checksum_address(value) != value:
        raise Bad(
            f"{value!r} fails its EIP-55 checksum (a typo?); a mixed-case address must match "
            "its checksum exactly"
        )
    return value.lower()


# ---------------------------------------------------------------------------- ABI files


def load_abi(path: Path) -> tuple[dict[str, Any], ...]:
    """A bare JSON ABI list, or a compiler artifact with an ``abi`` list; needs one event."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Bad(f"ABI file {str(path)!r} does not exist") from None
    except json.JSONDecodeError as exc:
        raise Bad(f"ABI file {path.name!r} is not JSON: {exc.msg} at line {exc.lineno}, "
                  f"column {exc.colno}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Bad(f"cannot read ABI file {path.name!r}: {exc}") from None
    entries = data.get("abi") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise Bad(f"ABI file {path.name!r} is neither a JSON ABI list nor an object with an 'abi' list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise Bad(f"ABI file {path.name!r}: entry {i} is not an object")
        if entry.get("type") == "event" and not _well_formed_event(entry):
            raise Bad(f"ABI file {path.name!r}: event entry {i} needs a name and inputs with types")
    if not any(entry.get("type") == "event" for entry in entries):
        raise Bad(f"ABI file {path.name!r} has no events")
    return tuple(entries)


def _well_formed_event(entry: dict[str, Any]) -> bool:
    def ok(params: Any) -> bool:
        return isinstance(params, list) and all(
            isinstance(p, dict) and isinstance(p.get("type"), str)
            and (not p["type"].startswith("tuple") or ok(p.get("components")))
            for p in params
        )
    return isinstance(entry.get("name"), str) and bool(entry["name"]) and ok(entry.get("inputs"))
