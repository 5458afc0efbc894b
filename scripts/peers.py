"""Other indexers run by scripts/bench on the same chain: Ponder and cryo.

- ``ponder``: Ponder 1.0.0 (npm; pinned with its lock file in scripts/peers/ponder), installed
  into .cache/peers/ponder. Its config, schema and handlers are written here from the
  indexer's chain file, so it indexes the same contracts (factory children included) and the
  same events: one table per event with the block number and time, transaction hash and index,
  log index, address and every parameter, one ``context.db.insert`` per event, into Postgres
  (``ponder start --schema``). Timed until its ``/ready`` endpoint answers 200 (historical
  indexing done up to ``endBlock``, the chain's head), then stopped.
- ``cryo``: cryo 0.3.2 (PyPI ``cryo``, Python bindings of the Rust tool), installed into the
  venv .cache/peers/cryo-venv; ``cryo.freeze("logs")`` dumps every raw log of the blocks to
  Parquet (no decoding, no database). Rows are counted in the files afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "scripts" / "peers" / "ponder"
WORK = REPO / ".cache" / "peers"
PONDER = WORK / "ponder"
CRYO_VENV = WORK / "cryo-venv"
CRYO_VERSION = "0.3.2"

if TYPE_CHECKING:
    from scripts.bench import Context
    from scripts.benchlib import CpuMeter, Measured


def install(name: str) -> None:
    """Install a peer from its registry (once; again when its pins change)."""
    if name == "ponder":
        PONDER.mkdir(parents=True, exist_ok=True)
        want = (TEMPLATE / "package.json").read_text() + (TEMPLATE / "package-lock.json").read_text()
        stamp = PONDER / "node_modules" / ".bench-stamp"
        if stamp.exists() and stamp.read_text() == want:
            return
        for f in ("package.json", "package-lock.json"):
            shutil.copy(TEMPLATE / f, PONDER / f)
        print("ponder: npm ci (ponder 1.0.0)", flush=True)
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=PONDER)
        if done.returncode != 0:
            raise SystemExit(f"ponder: npm ci failed ({done.returncode}) in {PONDER}")
        stamp.write_text(want)
    elif name == "cryo":
        py = CRYO_VENV / "bin" / "python"
        if py.exists() and subprocess.run(
                [str(py), "-c", f"import cryo, pyarrow; assert cryo.__version__ == '{CRYO_VERSION}'"],
                capture_output=True).returncode == 0:
            return
        print(f"cryo: pip install cryo=={CRYO_VERSION} pyarrow into {CRYO_VENV}", flush=True)
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(CRYO_VENV)], check=True)
        done = subprocess.run([str(py), "-m", "pip", "install", "--quiet",
                               f"cryo=={CRYO_VERSION}", "pyarrow"])
        if done.returncode != 0:
            raise SystemExit(f"cryo: pip install failed ({done.returncode})")
    else:
        raise SystemExit(f"unknown peer {name}")


def describe(name: str, ctx: Context) -> str:
    if name == "ponder":
        return "ponder 1.0.0, every event of the chain file into Postgres"
    return f"cryo {CRYO_VERSION}, every raw log to Parquet"


def run(name: str, ctx: Context, url: str, meter: CpuMeter) -> tuple[Measured, int]:
    if name == "ponder":
        return _run_ponder(ctx, url, meter)
    return _run_cryo(ctx, meter)


# ------------------------------------------------------------------------------------ ponder


_TS_TYPES = {"address": "t.hex()", "bool": "t.boolean()", "string": "t.text()"}


def _column(abi_type: str) -> str:
    if abi_type in _TS_TYPES:
        return _TS_TYPES[abi_type]
    if abi_type.startswith(("uint", "int")):
        return "t.bigint()"
    if abi_type.startswith("bytes"):
        return "t.hex()"
    return "t.json()"


def ponder_project(tree: dict[str, Any], head: int) -> dict[str, str]:
    """ponder.config.ts, ponder.schema.ts and src/index.ts for the contracts and events of an
    indexer chain file (its parsed YAML, ABI paths absolute)."""
    from tests.support.mixed import table_of

    by_name = {c["name"]: c for c in tree["contracts"]}
    config, schema, handlers = [], [], []
    tables = []
    for c in tree["contracts"]:
        abi = [e for e in json.loads(Path(c["abi"]).read_text()) if e.get("type") == "event"]
        wanted = c.get("events")
        events = [e for e in abi if wanted is None or e["name"] in wanted]
        if c.get("factory"):
            f = c["factory"]
            fabi = json.loads(Path(by_name[f["contract"]]["abi"]).read_text())
            ev = next(e for e in fabi if e.get("type") == "event" and e["name"] == f["event"])
            address = (f"factory({{ address: {json.dumps(by_name[f['contract']]['address'])}, "
                       f"event: {json.dumps(ev)}, parameter: {json.dumps(f['parameter'])} }})")
        else:
            address = json.dumps(c["address"])
        config.append(f"    {c['name']}: {{ network: \"anvil\", abi: {json.dumps(events)}, "
                      f"address: {address}, startBlock: 0, endBlock: {head} }},")
        for e in events:
            table = table_of(c["name"], e["name"])
            tables.append(table)
            args = [(i.get("name") or f"arg{k}", i["type"]) for k, i in enumerate(e["inputs"])]
            cols = "".join(f"  a_{n}: {_column(t)},\n" for n, t in args)
            schema.append(
                f"export const {table} = onchainTable(\"{table}\", (t) => ({{\n"
                "  id: t.text().primaryKey(),\n  blockNumber: t.bigint().notNull(),\n"
                "  blockTime: t.bigint().notNull(),\n  txHash: t.hex().notNull(),\n"
                "  txIndex: t.integer().notNull(),\n  logIndex: t.integer().notNull(),\n"
                f"  address: t.hex().notNull(),\n{cols}}}));\n")
            # viem gives the args as an array when a parameter has no name, else by name
            unnamed = any(not i.get("name") for i in e["inputs"])
            values = "".join(f" a_{n}: event.args[{k}]," if unnamed else f" a_{n}: event.args.{n},"
                             for k, (n, _) in enumerate(args))
            handlers.append(
                f"ponder.on(\"{c['name']}:{e['name']}\", async ({{ event, context }}) => {{\n"
                f"  await context.db.insert(schema.{table}).values({{ id: event.id,"
                " blockNumber: event.block.number, blockTime: event.block.timestamp,"
                " txHash: event.transaction.hash, txIndex: event.transaction.transactionIndex,"
                f" logIndex: event.log.logIndex, address: event.log.address,{values} }});\n}});\n")
    rpc_env = "PONDER_RPC_URL_31337"
    return {
        "ponder.config.ts": (
            "import { createConfig, factory } from \"ponder\";\nimport { http } from \"viem\";\n\n"
            "export default createConfig({\n"
            "  database: { kind: \"postgres\", connectionString: process.env.DATABASE_URL },\n"
            f"  networks: {{ anvil: {{ chainId: {tree['chain_id']}, "
            f"transport: http(process.env.{rpc_env}), maxRequestsPerSecond: 100000 }} }},\n"
            "  contracts: {\n" + "\n".join(config) + "\n  },\n});\n"),
        "ponder.schema.ts": "import { onchainTable } from \"ponder\";\n\n" + "\n".join(schema),
        "src/index.ts": ("import { ponder } from \"ponder:registry\";\n"
                         "import * as schema from \"ponder:schema\";\n\n" + "\n".join(handlers)),
        # Ponder 1.0 wants an API file; it serves nothing the bench uses.
        "src/api/index.ts": ("import { Hono } from \"hono\";\n\nconst app = new Hono();\n\n"
                             "export default app;\n"),
        "tables.json": json.dumps(tables),
    }


# Ponder logs this once historical indexing is done and flushed (its /ready answers 200 as
# soon as the sync of the raw logs is done, before every event is indexed).
DONE = "Started returning 200 responses from /ready endpoint"


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def _run_ponder(ctx: Context, url: str, meter: CpuMeter) -> tuple[Measured, int]:
    import asyncio

    from scripts.bench import check_counts
    from scripts.benchlib import run_measured, table_counts
    from tests.support.services import free_port

    tree = yaml.safe_load(ctx.chain.config.read_text())
    files = ponder_project(tree, ctx.chain.facts["head"])
    for rel, text in files.items():
        path = PONDER / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    shutil.rmtree(PONDER / ".ponder", ignore_errors=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PONDER", "DATABASE"))}
    env.update(DATABASE_URL=url, PONDER_RPC_URL_31337=ctx.node.url,
               PONDER_TELEMETRY_DISABLED="true", NODE_ENV="production")
    cmd = ["node", str(PONDER / "node_modules" / "ponder" / "dist" / "esm" / "bin" / "ponder.js"),
           "start", "--schema", "bench_ponder", "--port", str(port), "--hostname", "127.0.0.1"]
    m = run_measured(cmd, env=env, cwd=PONDER, meter=meter, what="ponder",
                     timeout=ctx.a.timeout, until=lambda out: DONE in out and _ready(port))
    counts = asyncio.run(table_counts(url, "bench_ponder"))
    ours = {t: n for t, n in counts.items() if t in set(json.loads(files["tables.json"]))}
    return m, check_counts("ponder", ours, ctx.chain.facts["expected"])


# -------------------------------------------------------------------------------------- cryo


_CRYO = """
import sys, cryo
rpc, out, last = sys.argv[1], sys.argv[2], int(sys.argv[3])
cryo.freeze("logs", start_block=0, end_block=last + 1, rpc=rpc, output_dir=out,
            chunk_size=50, verbose=False)
"""

_COUNT = """
import sys, pathlib, pyarrow.parquet as pq
print(sum(pq.ParquetFile(p).metadata.num_rows for p in pathlib.Path(sys.argv[1]).glob("*.parquet")))
"""


def _run_cryo(ctx: Context, meter: CpuMeter) -> tuple[Measured, int]:
    from scripts.benchlib import run_measured

    out = WORK / "cryo-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    py = str(CRYO_VENV / "bin" / "python")
    m = run_measured([py, "-c", _CRYO, ctx.node.url, str(out), str(ctx.chain.facts["head"])],
                     env=dict(os.environ), cwd=WORK, meter=meter, what="cryo",
                     timeout=ctx.a.timeout)
    got = subprocess.run([py, "-c", _COUNT, str(out)], capture_output=True, text=True)
    if got.returncode != 0:
        raise SystemExit(f"cryo: counting the Parquet rows failed: {got.stderr[-2000:]}")
    rows = int(got.stdout.strip())
    if rows != ctx.chain.facts["logs"]:
        raise SystemExit(f"cryo: {rows:,} logs in the Parquet files, the chain has "
                         f"{ctx.chain.facts['logs']:,}")
    shutil.rmtree(out, ignore_errors=True)
    return m, rows
