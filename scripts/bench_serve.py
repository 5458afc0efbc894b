"""Load on the query API: the typical queries of a dApp against `indexer serve`, with 1 and 2
serve processes sharing the port, measured by wrk (or an async load generator).

    scripts/bench-serve [--processes 1,2] [--duration 15] [--connections 32]
                        [--scenarios swaps,window,counts] [--loadgen wrk|async] [--json FILE]

The chain is the bench's ``mixed`` workload (about 500,000 logs of DeFi-like traffic: 27
Uniswap V2 pairs, 8 tokens...; scripts/bench.py, cached under .cache/bench/chains), indexed
once into a fresh database by `indexer run --once` (which makes the API's indexes), analysed,
then anvil is stopped: the load generator, Postgres and the serve processes have the machine.

Scenarios (each request picks the next of several pairs or tokens, so no two in a row are the
same query):
- ``swaps``: the 20 latest swaps of a pair (GraphQL, ``order_by: block_number_desc``);
- ``window``: 100 transfers of a token in a block window (GraphQL, ``block_number_gte``/``_lt``);
- ``counts``: row counts of the swap, sync and transfer tables (``POST /sql``).

Every answer of the measured runs must be a 200 (wrk counts the others; the bench fails on
any), and before each scenario one answer is checked against the same query in SQL. Figures:
requests/s and the latency percentiles wrk measures (p50, p99), with 32 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench import prepare_chain  # noqa: E402
from bench import serve as serve_chain  # noqa: E402

from tests.support.services import (  # noqa: E402
    database_url_for_tests,
    drop_database,
    free_port,
    fresh_database,
)

SWAP = "uniswap_v2_pair_swap"
TRANSFER = "token_transfer"


@dataclass
class Scenario:
    name: str
    path: str
    bodies: list[dict[str, Any]]
    check: Any  # (body, answer) -> None, raises when the answer is wrong


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench-serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", default="1,2", help="serve processes, comma-separated")
    p.add_argument("--duration", type=int, default=15, help="seconds per measured run")
    p.add_argument("--warmup", type=int, default=3, help="seconds of load before each run")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--scenarios", default="swaps,window,counts")
    p.add_argument("--loadgen", choices=["wrk", "async"], default=None,
                   help="default: wrk when installed, else the async generator")
    p.add_argument("--mixed-logs", type=int, default=500_000)
    p.add_argument("--fresh-chain", action="store_true")
    p.add_argument("--cache", default="on",
                   help="serve's answer cache: on (the default --cache-ttl), off (--cache-ttl "
                   "0), or both (each run twice)")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    a.process_counts = [int(x) for x in a.processes.split(",")]
    a.scenario_names = a.scenarios.split(",")
    a.loadgen = a.loadgen or ("wrk" if shutil.which("wrk") else "async")
    a.caches = {"on": [True], "off": [False], "both": [True, False]}[a.cache]
    return a


async def _fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    return asyncio.run(_fetch(url, sql, *args))


def post(base: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def scenarios(url: str) -> dict[str, Scenario]:
    pairs = [bytes(r["address"]) for r in fetch(
        url, f"SELECT address FROM chaindata.{SWAP} GROUP BY 1 ORDER BY count(*) DESC LIMIT 8")]
    swap_query = (f"query($p: Bytes) {{ {SWAP}(where: {{address: $p}}, order_by: "
                  f"block_number_desc, first: 20) {{ items {{ block_number log_index tx_hash "
                  f"sender amount0_in amount1_in amount0_out amount1_out to }} next }} }}")

    def check_swaps(body: dict[str, Any], answer: Any) -> None:
        pair = bytes.fromhex(body["variables"]["p"][2:])
        want = [(r["block_number"], r["log_index"]) for r in fetch(
            url, f"SELECT block_number, log_index FROM chaindata.{SWAP} WHERE address = $1"
            " ORDER BY block_number DESC, log_index DESC LIMIT 20", pair)]
        got = [(int(i["block_number"]), i["log_index"]) for i in answer["data"][SWAP]["items"]]
        assert got == want and len(got) == 20, (got, want)

    tokens = [bytes(r["address"]) for r in fetch(
        url, f"SELECT address FROM chaindata.{TRANSFER} GROUP BY 1 ORDER BY count(*) DESC LIMIT 4")]
    head = fetch(url, f"SELECT max(block_number) AS m FROM chaindata.{TRANSFER}")[0]["m"]
    windows = []
    for i, token in enumerate(tokens * 2):
        lo = head // 4 + i * (head // 16)
        windows.append({"t": "0x" + token.hex(), "lo": str(lo), "hi": str(lo + 200)})
    window_query = (f"query($t: Bytes, $lo: BigInt, $hi: BigInt) {{ {TRANSFER}(where: "
                    f"{{address: $t, block_number_gte: $lo, block_number_lt: $hi}}, first: 100) "
                    f"{{ items {{ block_number log_index tx_hash from to value }} next }} }}")

    def check_window(body: dict[str, Any], answer: Any) -> None:
        v = body["variables"]
        want = [(r["block_number"], r["log_index"]) for r in fetch(
            url, f"SELECT block_number, log_index FROM chaindata.{TRANSFER} WHERE address = $1"
            " AND block_number >= $2 AND block_number < $3 ORDER BY 1, 2 LIMIT 100",
            bytes.fromhex(v["t"][2:]), int(v["lo"]), int(v["hi"]))]
        got = [(int(i["block_number"]), i["log_index"]) for i in answer["data"][TRANSFER]["items"]]
        assert got == want and len(got) == 100, (len(got), len(want))

    counts_sql = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM chaindata.{t}"
                                    for t in (SWAP, "uniswap_v2_pair_sync", TRANSFER))

    def check_counts(body: dict[str, Any], answer: Any) -> None:
        want = [[r["t"], r["n"]] for r in fetch(url, counts_sql)]
        assert sorted(map(tuple, answer["rows"])) == sorted(map(tuple, want)), (answer, want)

    return {
        "swaps": Scenario("20 latest swaps of a pair", "/graphql",
                          [{"query": swap_query, "variables": {"p": "0x" + p.hex()}}
                           for p in pairs], check_swaps),
        "window": Scenario("100 transfers of a token in a block window", "/graphql",
                           [{"query": window_query, "variables": w} for w in windows],
                           check_window),
        "counts": Scenario("row counts of 3 tables (SQL)", "/sql",
                           [{"sql": counts_sql, "params": []}], check_counts),
    }


# ------------------------------------------------------------------------- load generators


def wrk(base: str, s: Scenario, seconds: int, a: argparse.Namespace) -> dict[str, Any]:
    bodies = ", ".join("[[" + json.dumps(b) + "]]" for b in s.bodies)
    script = (f"local bodies = {{ {bodies} }}\nlocal i = 0\nrequest = function()\n"
              f"  i = i % #bodies + 1\n  return wrk.format('POST', '{s.path}', "
              f"{{['Content-Type'] = 'application/json'}}, bodies[i])\nend\n")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(["wrk", "-t", str(a.threads), "-c", str(a.connections), "-d",
                              f"{seconds}s", "--latency", "-s", f.name, base], text=True,
                             capture_output=True, check=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(f.name)
    return parse_wrk(out)


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {p: _ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M)}
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"rps": rps, "p50_ms": lat["50"], "p99_ms": lat["99"], "requests": total,
            "errors": errors}


async def _async_load(base: str, s: Scenario, seconds: float, connections: int
                      ) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    bodies = [json.dumps(b).encode() for b in s.bodies]
    end = time.perf_counter() + seconds

    async def one(session: aiohttp.ClientSession, k: int) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < end:
            i += 1
            t0 = time.perf_counter()
            async with session.post(base + s.path, data=bodies[i % len(bodies)],
                                    headers={"Content-Type": "application/json"}) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as ses:
        await asyncio.gather(*(one(ses, k) for k in range(connections)))
    latencies.sort()
    return {"rps": len(latencies) / seconds, "requests": len(latencies), "errors": errors,
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000}


def load(base: str, s: Scenario, seconds: int, a: argparse.Namespace) -> dict[str, Any]:
    if a.loadgen == "wrk":
        return wrk(base, s, seconds, a)
    return asyncio.run(_async_load(base, s, seconds, a.connections))


# ----------------------------------------------------------------------------------- main


def start_serves(n: int, env: dict[str, str], port: int, logs: Path,
                 cache: bool) -> list[subprocess.Popen]:
    args = [] if cache else ["--cache-ttl", "0"]
    procs = [subprocess.Popen([str(REPO / ".venv" / "bin" / "indexer"), "serve", "--port",
                               str(port), *args], env=env,
                              stdout=open(logs / f"serve{i}.log", "wb"),
                              stderr=subprocess.STDOUT) for i in range(n)]
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200 and all(p.poll() is None for p in procs):
                    time.sleep(1.0)  # every process is up (they share the port)
                    return procs
        except OSError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            raise SystemExit(f"serve did not start; see {logs}")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    admin = database_url_for_tests()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; load generator "
          f"{a.loadgen}", flush=True)
    ns = argparse.Namespace(mixed_logs=a.mixed_logs, mixed_block_logs=1000,
                            fresh_chain=a.fresh_chain, logs=0, dense=0, uniswap_rounds=0)
    chain = prepare_chain("mixed", ns)
    url = asyncio.run(fresh_database(admin, prefix="bench_serve"))
    logs = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    results: list[dict[str, Any]] = []
    try:
        node = serve_chain(chain)
        env = {**os.environ, "DATABASE_URL": url, "ANVIL_RPC_URL": node.url,
               "INDEXER_METRICS_PORT": "0"}
        t0 = time.perf_counter()
        subprocess.run([str(REPO / ".venv" / "bin" / "indexer"), "run", "--chain",
                        str(chain.config), "--once"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=open(logs / "run.log", "wb"))
        node.stop()
        fetch(url, "VACUUM ANALYZE")
        n = sum(r["n"] for r in fetch(url, "SELECT sum(n_live_tup)::bigint AS n FROM "
                                      "pg_stat_user_tables WHERE schemaname = 'chaindata'"))
        print(f"indexed {n:,} rows in {time.perf_counter() - t0:.0f}s; serve logs in {logs}",
              flush=True)
        chosen = {k: v for k, v in scenarios(url).items() if k in a.scenario_names}
        for cache, count in [(c, n) for c in a.caches for n in a.process_counts]:
            port = free_port()
            procs = start_serves(count, env, port, logs, cache)
            base = f"http://127.0.0.1:{port}"
            try:
                for key, s in chosen.items():
                    status, answer = post(base, s.path, s.bodies[0])
                    assert status == 200, (status, answer)
                    s.check(s.bodies[0], answer)
                    load(base, s, a.warmup, a)
                    got = load(base, s, a.duration, a)
                    got.update(scenario=key, what=s.name, processes=count, cache=cache,
                               load=round(os.getloadavg()[0], 2))
                    results.append(got)
                    print(f"{count} serve (cache {'on' if cache else 'off'}), {s.name}: "
                          f"{got['rps']:,.0f} requests/s, p50 "
                          f"{got['p50_ms']:.1f} ms, p99 {got['p99_ms']:.1f} ms, "
                          f"{got['errors']} errors", flush=True)
                    if got["errors"]:
                        raise SystemExit(f"{got['errors']} requests failed")
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(10)
    finally:
        asyncio.run(drop_database(admin, url))
    print()
    print("| query | serve processes | answer cache | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['what']} | {r['processes']} | {'on' if r['cache'] else 'off'} | "
              f"{r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
