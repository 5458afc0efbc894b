"""The shape of the package, kept: no import circles, no import that runs back up the layers,
the backfill and the live tail apart, no private names imported across modules, modules
readable in one sitting, and no implementation inherited across modules (errors, protocols and
enums aside)."""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "indexer"
MAX_LINES = 400
LONG_ON_PURPOSE: set[str] = set()  # none now: the provider catalogue fits as data of its own

# Lower layers never import higher ones; modules of one layer may import each other (without
# circles).
LAYERS: list[tuple[str, int]] = [
    ("indexer.types", 0), ("indexer.naming", 0), ("indexer.cancel", 0), ("indexer.clock", 0),
    ("indexer.faults", 0), ("indexer.metrics", 0),
    ("indexer.abi", 1), ("indexer.codegen", 1), ("indexer.decode", 1), ("indexer.plan", 1),
    ("indexer.keys", 1),
    ("indexer.config", 1),
    ("indexer.rpc", 2), ("indexer.lease", 2), ("indexer.sink", 2), ("indexer.retry", 2),
    ("indexer.settings", 2),
    ("indexer.chain", 3),
    ("indexer.backfill", 4), ("indexer.live", 4), ("indexer.verify", 4),
    ("indexer.serve", 4),
    ("indexer.ops", 5),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(name: str) -> int:
    for prefix, rank in LAYERS:
        if name == prefix or name.startswith(prefix + "."):
            return rank
    if name == "indexer" or name == "indexer.__main__":
        return 0 if name == "indexer" else 5
    raise AssertionError(f"{name} is in no layer of test_architecture.LAYERS")


def imports(name: str) -> dict[str, list[str]]:
    """Modules of the package ``name`` imports (at any depth of its code) -> names taken."""
    tree = ast.parse(MODULES[name].read_text())
    found: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            target = node.module
            if not target.startswith("indexer"):
                continue
            names = [a.name for a in node.names]
            for n in names:  # ``from indexer.sink import blocks`` imports a module
                if f"{target}.{n}" in MODULES:
                    found.setdefault(f"{target}.{n}", [])
            taken = [n for n in names if f"{target}.{n}" not in MODULES]
            if target in MODULES and taken:
                found.setdefault(target, []).extend(taken)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("indexer") and a.name in MODULES:
                    found.setdefault(a.name, [])
    found.pop(name, None)
    return found


GRAPH = {name: imports(name) for name in MODULES}


def test_every_module_is_in_a_layer():
    for name in MODULES:
        layer(name)


def test_no_import_runs_back_up_the_layers():
    wrong = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
             for a, deps in GRAPH.items() for b in deps
             if layer(b) > layer(a) and not (a == "indexer" or b == "indexer")]
    assert wrong == []


def test_the_backfill_and_the_live_tail_do_not_import_each_other():
    def room(name: str) -> str:
        return name.split(".")[1] if "." in name else ""

    crossing = [(a, b) for a, deps in GRAPH.items() for b in deps
                if {room(a), room(b)} == {"backfill", "live"}]
    assert crossing == []


def test_there_is_no_import_circle():
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in GRAPH[node]:
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in MODULES:
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_no_module_imports_another_modules_private_names():
    private = [f"{a} imports {n} from {b}" for a, deps in GRAPH.items()
               for b, names in deps.items() for n in names
               if n.startswith("_") and not n.endswith("__")]
    assert private == []


@pytest.mark.parametrize("name", sorted(set(MODULES) - LONG_ON_PURPOSE))
def test_modules_are_readable_in_one_sitting(name: str):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by concern"


def _allowed_base(base: type) -> bool:
    return (issubclass(base, BaseException) or bool(getattr(base, "_is_protocol", False))
            or issubclass(base, enum.Enum))


def test_no_class_inherits_implementation_from_another_module():
    wrong = []
    for name in MODULES:
        if name == "indexer.__main__":
            continue  # running it is running the command
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name:
                continue
            for base in cls.__mro__[1:]:
                home = base.__module__
                if home.startswith("indexer") and home != name and not _allowed_base(base):
                    wrong.append(f"{name}.{cls_name} inherits from {home}.{base.__name__}")
    assert wrong == []
