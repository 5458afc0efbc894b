"""Compile Solidity with the npm-pinned solc (solcjs under node), cached by input hash.

Imports such as `@openzeppelin/...` resolve from scripts/npm/node_modules, others relative to
the importing file's folder. The cache key covers the standard-JSON input and the npm lock file
(which pins solc and every importable library), so a rerun with the same inputs is instant.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from tests.support.services import NPM_MODULES, REPO_ROOT

CACHE_DIR = REPO_ROOT / ".cache" / "solc"
CONTRACTS_DIR = REPO_ROOT / "tests" / "contracts"
# Anvil 1.7 defaults to a later fork; cancun code runs unchanged there and on older test chains.
EVM_VERSION = "cancun"

_DRIVER = r"""
const fs = require('fs');
const path = require('path');
const modules = process.env.SOLC_NODE_MODULES;
const solc = require(path.join(modules, 'solc'));
const input = fs.readFileSync(0, 'utf8');
function findImports(p) {
  const candidates = [path.join(modules, p), path.resolve(p)];
  for (const c of candidates) {
    if (fs.existsSync(c)) return {contents: fs.readFileSync(c, 'utf8')};
  }
  return {error: 'not found: ' + p};
}
const out = solc.compile(input, {import: findImports});
process.stdout.write(JSON.stringify({version: solc.version(), output: JSON.parse(out)}));
"""


class Compiled(NamedTuple):
    abi: list[dict[str, Any]]
    bytecode: str  # 0x-prefixed creation code ("0x" for interfaces and abstract contracts)


class CompileError(RuntimeError):
    pass


def _lock_digest() -> str:
    lock = NPM_MODULES.parent / "package-lock.json"
    return hashlib.sha256(lock.read_bytes()).hexdigest() if lock.exists() else "no-lock"


def _standard_input(sources: dict[str, str], optimize_runs: int) -> dict[str, Any]:
    return {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sorted(sources.items())},
        "settings": {
            "optimizer": {"enabled": True, "runs": optimize_runs},
            "evmVersion": EVM_VERSION,
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }


def _run_solcjs(standard_input: dict[str, Any], cwd: Path) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise CompileError("node not found: install Node.js and run scripts/setup")
    if not (NPM_MODULES / "solc").is_dir():
        raise CompileError(f"solc not installed under {NPM_MODULES}: run scripts/setup")
    proc = subprocess.run(
        [node, "-e", _DRIVER],
        input=json.dumps(standard_input).encode(),
        capture_output=True,
        cwd=cwd,
        env={**os.environ, "SOLC_NODE_MODULES": str(NPM_MODULES)},
        check=False,
    )
    if proc.returncode != 0:
        raise CompileError(f"solcjs failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(proc.stdout)


def compile_sources(
    paths: Iterable[str | Path], *, optimize_runs: int = 200
) -> dict[str, Compiled]:
    """Compile the given .sol files together; returns {contract name: Compiled} for contracts
    defined in those files (not in their imports). Raises CompileError with solc's messages."""
    files = [Path(p).resolve() for p in paths]
    if not files:
        return {}
    base = Path(os.path.commonpath([f.parent for f in files]))
    sources = {str(f.relative_to(base)): f.read_text() for f in files}
    standard_input = _standard_input(sources, optimize_runs)
    key = hashlib.sha256(
        json.dumps(standard_input, sort_keys=True).encode() + _lock_digest().encode()
    ).hexdigest()
    cached = CACHE_DIR / f"{key}.json"
    if cached.exists():
        result = json.loads(cached.read_text())
    else:
        result = _run_solcjs(standard_input, base)
        errors = [e for e in result["output"].get("errors", []) if e.get("severity") == "error"]
        if errors:
            raise CompileError("\n".join(e.get("formattedMessage", e["message"]) for e in errors))
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(cached)
    out: dict[str, Compiled] = {}
    for source_name in sources:
        for name, data in result["output"].get("contracts", {}).get(source_name, {}).items():
            if name in out:
                raise CompileError(f"contract {name} is defined in more than one source")
            out[name] = Compiled(data["abi"], "0x" + data["evm"]["bytecode"]["object"])
    return out


def compile_contract(name: str, path: str | Path | None = None) -> Compiled:
    """One contract from `path` (default tests/contracts/<name>.sol)."""
    source = Path(path) if path is not None else CONTRACTS_DIR / f"{name}.sol"
    compiled = compile_sources([source])
    if name not in compiled:
        raise CompileError(f"{source} defines no contract {name} (found {sorted(compiled)})")
    return compiled[name]


def solc_version() -> str:
    """Version of the npm-pinned solc (runs the compiler on an empty input)."""
    return str(_run_solcjs(_standard_input({}, 200), REPO_ROOT)["version"])
