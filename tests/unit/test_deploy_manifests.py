"""The deployment files are in step with the code: docker-compose.yml, the Dockerfile,
deploy/ (Kubernetes) and monitoring/ parse, name only metrics the code defines, use the
metrics port and probe paths the code serves, and run commands the CLI accepts; the images are
built from the locks in requirements/, which pin what pyproject.toml asks for. The tools
(promtool, docker-compose) validate what they know; they come from scripts/setup-monitoring.
Building and running the images is scripts/image-check (not part of the suite)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from indexer import metrics
from indexer.config import load_chain, resolve_chain
from indexer.ops.cli import _parser
from tests.support import devnet

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
DEPLOY = REPO / "deploy"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
ALERTS = MONITORING / "alerts.yml"
DOCS_ALERTS = REPO / "docs" / "dashboards-and-alerts.md"
METRICS_PORT = 9464  # INDEXER_METRICS_PORT's default (contract 1)


def _defined_series() -> set[str]:
    """Every series name indexer/metrics.py defines (a metric without label sets yet included)."""
    names: set[str] = set()
    for m in vars(metrics).values():
        if not isinstance(m, MetricWrapperBase):
            continue
        if isinstance(m, Counter):
            names.add(m._name + "_total")
        elif isinstance(m, Histogram):
            names.update(f"{m._name}_{s}" for s in ("bucket", "count", "sum"))
        else:
            names.add(m._name)
    return names


DEFINED = _defined_series()

METRIC_NAME = re.compile(r"(?<![:\w])indexer_[a-z0-9_]+\b")
NOT_METRICS = {"indexer_reader"}  # the query API's read-only role (schema/006_reader.sql)
RECORD_NAME = re.compile(r"\bchain:[a-z0-9_:]+\b")


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _all_yaml(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml"))


def _rules() -> dict[str, Any]:
    return yaml.safe_load(ALERTS.read_text())


def _recorded() -> set[str]:
    return {r["record"] for g in _rules()["groups"] for r in g["rules"] if "record" in r}


def _compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _dashboard_exprs() -> list[tuple[str, str, str]]:
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                out.append((path.name, panel["title"], target["expr"]))
    return out


# ------------------------------------------------------------------------ parse, names


def test_every_yaml_file_parses():
    files = _all_yaml(DEPLOY) + _all_yaml(MONITORING) + [REPO / "docker-compose.yml"]
    assert len(files) >= 15
    for path in files:
        assert _docs(path), f"{path} is empty"


def test_kubernetes_manifests_have_kind_and_name():
    kinds = set()
    for path in _all_yaml(DEPLOY / "kubernetes"):
        for doc in _docs(path):
            if doc.get("kind") == "Kustomization":
                continue
            if "kind" not in doc:  # scrape config and adapter rules are config fragments
                assert path.parent.name in ("prometheus", "autoscaling"), path
                continue
            assert doc.get("apiVersion") and doc["metadata"].get("name"), path
            kinds.add(doc["kind"])
    assert {"Deployment", "PodDisruptionBudget", "ScaledObject", "HorizontalPodAutoscaler",
            "Service", "PodMonitor"} <= kinds


@pytest.mark.parametrize("path", [ALERTS, *DASHBOARDS, *_all_yaml(DEPLOY)], ids=lambda p: p.name)
def test_only_metrics_the_code_defines_are_named(path: Path):
    text = path.read_text()
    for name in set(METRIC_NAME.findall(text)) - NOT_METRICS:
        assert name in DEFINED, f"{path.name} names {name}, which indexer/metrics.py does not define"
    for name in set(RECORD_NAME.findall(text)):
        assert name in _recorded(), f"{path.name} names {name}, not recorded in alerts.yml"


def test_metrics_are_named_only_as_defined_in_the_module():
    # the contract names: none of them renamed away
    for name in ("indexer_chain_info", "indexer_lag_seconds", "indexer_backlog_ranges",
                 "indexer_rpc_requests_total", "indexer_reorgs_total", "indexer_workers"):
        assert name in DEFINED


# ------------------------------------------------------------------------ ports, probes


def _served_paths() -> set[str]:
    return set(re.findall(r'add_get\("([^"]+)"', (REPO / "indexer" / "ops" / "web.py").read_text()))


def test_kubernetes_workers_probe_served_paths_on_the_metrics_port():
    (deployment,) = _docs(DEPLOY / "kubernetes" / "deployment.yaml")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": METRICS_PORT}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["INDEXER_METRICS_PORT"] == str(METRICS_PORT)
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(METRICS_PORT)
    probes = {k: container[k]["httpGet"] for k in ("livenessProbe", "readinessProbe", "startupProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert probe["path"] in _served_paths()
        assert probe["port"] in ports
    # the image's entrypoint is `indexer`: args are its arguments, and no command overrides it
    assert "command" not in container
    args = _parser().parse_args(container["args"])
    assert args.command == "run"
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    uid, gid = _stage("indexer").user.split(":")
    assert (str(security["runAsUser"]), str(security["runAsGroup"])) == (uid, gid)
    for chain in args.chain:
        load_chain(resolve_chain(chain), env={})
    (service,) = _docs(DEPLOY / "kubernetes" / "service.yaml")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    (pdb,) = _docs(DEPLOY / "kubernetes" / "pdb.yaml")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def _serve_paths() -> set[str]:
    text = (REPO / "indexer" / "serve" / "http.py").read_text()
    return set(re.findall(r'add_(?:get|post)\("([^"]+)"', text))


def test_kubernetes_serve_runs_the_query_api_and_probes_what_it_serves():
    deployment, service, pdb = _docs(DEPLOY / "kubernetes" / "serve.yaml")
    assert (deployment["kind"], service["kind"], pdb["kind"]) == (
        "Deployment", "Service", "PodDisruptionBudget")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    args = _parser().parse_args(container["args"])
    assert args.command == "serve" and args.host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": args.port}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(args.port)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in _serve_paths() and get["port"] in ports
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"/graphql", "/sql", "/metrics", "/healthz", "/readyz"} <= _serve_paths()
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == labels == pdb["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    (workers,) = _docs(DEPLOY / "kubernetes" / "deployment.yaml")
    assert labels != workers["spec"]["selector"]["matchLabels"], "serve pods are not workers"
    assert "command" not in container and pod["spec"]["securityContext"]["runAsNonRoot"]
    for chain in args.chain:
        load_chain(resolve_chain(chain), env={})
    kust = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    assert "serve.yaml" in kust["resources"]


def test_compose_serves_the_query_api_from_the_indexer_image():
    services = _compose()["services"]
    serve, worker = services["serve"], services["indexer"]
    assert "build" not in serve and serve["image"] == worker["image"]
    args = _parser().parse_args(serve["command"])
    assert args.command == "serve" and args.host == "0.0.0.0" and args.chain == ["anvil"]
    assert f"{args.port}:{args.port}" in serve["ports"]
    code = _code_text()
    for var in serve["environment"]:
        assert re.search(rf"\b{var}\b", code), f"compose sets {var}, which the code never reads"
    assert serve["environment"]["DATABASE_URL"] == worker["environment"]["DATABASE_URL"]
    assert "indexer_reader" in serve["environment"]["INDEXER_SQL_URL"]
    assert serve["depends_on"]["postgres"]["condition"] == "service_healthy"
    health = serve["healthcheck"]["test"][-1]
    assert f":{args.port}/readyz" in health and "/readyz" in _serve_paths()
    init = [v for v in services["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v]
    (mount,) = init
    assert "indexer_reader" in (REPO / mount.split(":")[0]).read_text()
    prom = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "indexer-serve"]
    assert job["dns_sd_configs"][0]["names"] == ["serve"]
    assert job["dns_sd_configs"][0]["port"] == args.port


def test_autoscalers_target_the_deployment_on_the_backlog():
    (keda,) = _docs(DEPLOY / "kubernetes" / "autoscaling" / "keda-scaledobject.yaml")
    assert keda["spec"]["scaleTargetRef"]["name"] == "indexer"
    (trigger,) = keda["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and "indexer_backlog_ranges" in trigger["metadata"]["query"]
    (hpa,) = _docs(DEPLOY / "kubernetes" / "autoscaling" / "hpa-external-metric.yaml")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "indexer"}
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "indexer_backlog_ranges"
    (podmonitor,) = _docs(DEPLOY / "kubernetes" / "prometheus" / "podmonitor.yaml")
    assert podmonitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_kustomization_lists_existing_files():
    kust = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    for res in kust["resources"]:
        assert (DEPLOY / "kubernetes" / res).is_file(), res


# ------------------------------------------------------------------------ compose, Dockerfile


def _code_text() -> str:
    parts = [p.read_text() for p in (REPO / "indexer").rglob("*.py")]
    parts.append((REPO / "chains" / "anvil.yaml").read_text())
    return "\n".join(parts)


def test_compose_commands_env_and_ports_match_the_code():
    compose = _compose()
    services = compose["services"]
    assert {"postgres", "redis", "indexer", "anvil", "prometheus", "alertmanager", "grafana"} <= set(services)
    worker = services["indexer"]
    assert "container_name" not in worker and "ports" not in worker, "--scale needs neither"
    cmd = worker["command"]  # the arguments of the image's entrypoint, `indexer`
    assert cmd[0] == "run"
    args = _parser().parse_args(cmd)
    assert args.chain == ["anvil"]
    code = _code_text()
    for var in worker["environment"]:
        assert re.search(rf"\b{var}\b", code), f"compose sets {var}, which the code never reads"
    assert worker["environment"]["INDEXER_METRICS_PORT"] == str(METRICS_PORT)
    assert worker["environment"]["ANVIL_RPC_URL"] == "http://anvil:8545"
    anvil = services["anvil"]["command"]
    assert anvil[:3] == ["python", "-m", "tests.support.devnet"]
    parsed = devnet.parse_args(anvil[3:])
    assert (parsed.host, parsed.port, parsed.keep_mining) == ("0.0.0.0", 8545, 1.0)
    assert parsed.timestamp is None, "a fixed genesis timestamp makes every new chain look alike"
    assert "8545:8545" in services["anvil"]["ports"]
    prom = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "indexer"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["indexer"] and sd["port"] == METRICS_PORT
    assert prom["rule_files"] == ["alerts.yml"]
    mounts = services["prometheus"]["volumes"]
    assert "./monitoring/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), volume


class Stage:
    """One FROM ... AS name stage of the Dockerfile: its base and its instructions."""

    def __init__(self, base: str, name: str) -> None:
        self.base, self.name = base, name
        self.lines: list[tuple[str, str]] = []  # (INSTRUCTION, rest), continuation lines joined

    def all(self, instruction: str) -> list[str]:
        return [rest for ins, rest in self.lines if ins == instruction]

    def last(self, instruction: str) -> str:
        (*_, rest) = self.all(instruction) or [""]
        return rest

    @property
    def user(self) -> str:
        return self.last("USER")


def _dockerfile_stages() -> list[Stage]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)\s+AS\s+(\S+)", rest.strip())
            assert m, f"every stage is named: FROM {rest}"
            stages.append(Stage(m.group(1), m.group(2)))
        elif stages:
            stages[-1].lines.append((instruction, rest.strip()))
    return stages


def _stage(name: str) -> Stage:
    (stage,) = [s for s in _dockerfile_stages() if s.name == name]
    return stage


def _lineage(name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    by_name = {s.name: s for s in _dockerfile_stages()}
    out = [by_name[name]]
    while out[-1].base in by_name:
        out.append(by_name[out[-1].base])
    return out


def _instructions(name: str) -> list[tuple[str, str]]:
    return [line for stage in reversed(_lineage(name)) for line in stage.lines]


def test_dockerfile_copies_what_exists():
    for stage in _dockerfile_stages():
        for line in stage.all("COPY"):
            if line.startswith("--from="):
                assert line.split()[0].removeprefix("--from=") in {s.name for s in _dockerfile_stages()}
                continue
            *sources, _ = line.split()
            for src in sources:
                assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"


def test_dockerfile_default_target_is_the_lean_indexer_image():
    stages = _dockerfile_stages()
    assert stages[-1].name == "indexer", "`docker build .` must give the indexer image"
    assert {"indexer", "demo-chain"} <= {s.name for s in stages}
    steps = _instructions("indexer")
    text = "\n".join(f"{i} {r}" for i, r in steps)
    for absent in ("npm", "nodejs", "tests", "[test", "pytest", "requirements/dev.txt", "demo.txt"):
        assert absent not in text, f"the indexer image's stages mention {absent}"
    # dependencies from the runtime lock, hash-checked, wheels only, before any code is copied
    (install,) = [r for i, r in steps if i == "RUN" and "-r /tmp/requirements.txt" in r]
    assert "--require-hashes" in install and "--only-binary=:all:" in install
    copies = [r for i, r in steps if i == "COPY"]
    lock_at = next(n for n, r in enumerate(copies) if r.startswith("requirements/runtime.txt "))
    code_at = next(n for n, r in enumerate(copies) if r.split()[0] == "indexer")
    assert lock_at < code_at, "the dependency layer must come before the code layer"
    install_at = next(n for n, (i, r) in enumerate(steps) if r == install)
    first_code = next(n for n, (i, r) in enumerate(steps) if i == "COPY" and r.split()[0] in ("indexer", "schema", "chains"))
    assert install_at < first_code
    final = _stage("indexer")
    assert re.fullmatch(r"\d+:\d+", final.user), "a numeric user (runAsNonRoot can check it)"
    assert final.user.split(":")[0] != "0"
    assert json.loads(final.last("ENTRYPOINT")) == ["indexer"]
    cmd = json.loads(final.last("CMD"))
    assert cmd == ["--help"], "no default chain or database is right for everyone"
    with pytest.raises(SystemExit) as done:
        _parser().parse_args(cmd)
    assert done.value.code == 0
    env = " ".join(r for i, r in steps if i == "ENV")
    assert f"INDEXER_METRICS_PORT={METRICS_PORT}" in env and f"{METRICS_PORT}" in final.all("EXPOSE")
    health = final.last("HEALTHCHECK")
    test = json.loads(health[health.index("CMD") + 3:].strip())
    assert test[0] == "python" and "/healthz" in test[-1] and "INDEXER_METRICS_PORT" in test[-1]
    assert "/healthz" in _served_paths()


def test_dockerfile_demo_chain_target_runs_the_devnet_with_a_kept_state():
    demo = _stage("demo-chain")
    steps = _instructions("demo-chain")
    install = [r for i, r in steps if i == "RUN" and "-r /tmp/requirements.txt" in r]
    assert install and all("--require-hashes" in r for r in install)
    assert any(r.startswith("requirements/demo.txt ") for i, r in steps if i == "COPY")
    assert re.fullmatch(r"\d+:\d+", demo.user) and demo.user == _stage("indexer").user
    cmd = json.loads(demo.last("CMD"))
    assert cmd[:3] == ["python", "-m", "tests.support.devnet"]
    parsed = devnet.parse_args(cmd[3:])
    assert parsed.state is not None and str(parsed.state).startswith("/data/")
    assert parsed.timestamp is None
    assert any("/data" in r and "chown" in r for i, r in steps if i == "RUN"), "/data writable"


def test_compose_builds_each_image_once_from_its_target():
    services = _compose()["services"]
    targets = {s.name for s in _dockerfile_stages()}
    built = {name: svc for name, svc in services.items() if "build" in svc}
    assert set(built) == {"indexer", "anvil"}
    assert built["indexer"]["build"]["target"] == "indexer"
    assert built["anvil"]["build"]["target"] == "demo-chain"
    for svc in built.values():
        assert svc["build"]["target"] in targets
    images = [svc["image"] for svc in built.values()]
    assert len(set(images)) == len(images), "one image name per target"
    assert "platform" not in built["indexer"], "the indexer image is not tied to amd64"


def test_compose_gates_the_start_and_keeps_the_demo_chain():
    compose = _compose()
    services = compose["services"]
    assert "ports" not in services["postgres"], "Postgres is not published on the host"
    depends = services["indexer"]["depends_on"]
    assert {k: v["condition"] for k, v in depends.items()} == {
        "postgres": "service_healthy", "redis": "service_healthy", "anvil": "service_healthy"}
    for name in depends:
        assert "test" in services[name]["healthcheck"], name
    for name in ("postgres", "redis", "anvil", "indexer"):
        assert services[name]["restart"] == "unless-stopped", name
    state = devnet.parse_args(services["anvil"]["command"][3:]).state
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["anvil"]["volumes"]}
    assert str(state.parent) in mounts, "the demo chain's state must be on a volume"
    assert mounts[str(state.parent)] in compose["volumes"], "a named volume (kept by `down`)"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("./"):
                assert source in compose["volumes"], volume


# ------------------------------------------------------------------------ the locks


def _pins(name: str) -> dict[str, str]:
    text = (REPO / "requirements" / name).read_text()
    pins: dict[str, str] = {}
    for block in re.split(r"\n(?=\S)", text):
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", block)
        if not m:
            continue
        assert "--hash=sha256:" in block, f"{name}: {m.group(1)} has no hash"
        pins[canonicalize_name(m.group(1))] = m.group(2)
    assert pins, f"{name} pins nothing"
    return pins


def _pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize(
    ("lock", "groups"),
    [("runtime.txt", ()), ("dev.txt", ("test", "embedded")), ("demo.txt", ())],
)
def test_locks_pin_what_pyproject_asks_for(lock: str, groups: tuple[str, ...]):
    project = _pyproject()
    wanted = [Requirement(r) for r in project["dependencies"]]
    for group in groups:
        wanted += [Requirement(r) for r in project["optional-dependencies"][group]]
    pins = _pins(lock)
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in pins, f"requirements/{lock} does not pin {req.name} (run scripts/lock)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements/{lock}: {req.name}=={pins[name]} does not satisfy {req} (run scripts/lock)")


def test_locks_agree_and_the_runtime_lock_has_no_test_tools():
    dev, runtime, demo = _pins("dev.txt"), _pins("runtime.txt"), _pins("demo.txt")
    for name, version in {**runtime, **demo}.items():
        assert dev.get(name) == version, f"{name}: {version} here, {dev.get(name)} in dev.txt"
    for tool in ("pytest", "mypy", "ruff", "web3", "pgserver", "psutil"):
        assert tool not in runtime, f"{tool} in the runtime lock"
    assert "web3" in demo


def test_setup_and_images_install_from_the_locks():
    setup = (REPO / "scripts" / "setup").read_text()
    assert "requirements/dev.txt" in setup and "--require-hashes" in setup
    assert "pip install --quiet --no-deps -e '.[test,embedded]'" in setup


def test_grafana_provisioning_matches_the_dashboards():
    ds = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    compose = _compose()["services"]["grafana"]["volumes"]
    prov = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/indexer.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    assert f"./monitoring/grafana/dashboards:{path}:ro" in compose
    assert len(DASHBOARDS) >= 2
    for board in DASHBOARDS:
        data = json.loads(board.read_text())
        (var,) = data["templating"]["list"]
        assert var["name"] == "chain"
        assert var["definition"] == "label_values(indexer_chain_info, chain)"
        ids = [p["id"] for p in data["panels"]]
        assert len(ids) == len(set(ids))
        for panel in data["panels"]:
            assert panel["datasource"]["uid"] == uid
            for target in panel["targets"]:
                assert "$chain" in target["expr"], f"{board.name}: {panel['title']}"


def test_every_alert_has_a_runbook_section():
    docs = DOCS_ALERTS.read_text()
    headings = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", docs, re.M)}
    alerts = [r for g in _rules()["groups"] for r in g["rules"] if "alert" in r]
    assert {a["alert"] for a in alerts} == {
        "IndexerLagHigh", "IndexerStalled", "IndexerHeadStale", "IndexerRpcErrorRatioHigh",
        "IndexerDeepReorg", "IndexerReorgBeyondFinality", "IndexerDataMismatch",
        "IndexerDataUnproven",
        "IndexerRepairRefused",
        "IndexerBacklogGrowing", "IndexerNoWorkerUp"}
    for alert in alerts:
        anchor = alert["annotations"]["runbook"].split("#")[1]
        assert anchor in headings, f"{alert['alert']}: no section #{anchor} in {DOCS_ALERTS.name}"
        for expr_name in set(METRIC_NAME.findall(alert["expr"])):
            assert expr_name in DEFINED


# ------------------------------------------------------------------------ the tools


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/setup-monitoring installs it with apt)")
    return path


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules_and_the_config():
    promtool = _tool("promtool")
    res = _run(promtool, "check", "rules", str(ALERTS))
    assert res.returncode == 0, res.stdout + res.stderr
    res = _run(promtool, "check", "config", str(MONITORING / "prometheus.yml"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_unit_tests_of_every_alert_pass():
    promtool = _tool("promtool")
    tests = MONITORING / "tests" / "alerts_test.yml"
    tested = set(re.findall(r"alertname: (\w+)", tests.read_text()))
    alerts = {r["alert"] for g in _rules()["groups"] for r in g["rules"] if "alert" in r}
    assert alerts <= tested, f"alerts without a promtool test: {alerts - tested}"
    res = _run(promtool, "test", "rules", str(tests))
    assert res.returncode == 0, res.stdout + res.stderr


def test_docker_compose_validates_the_compose_file():
    compose = _tool("docker-compose")
    res = _run(compose, "-f", "docker-compose.yml", "config", "-q")
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_images_console_script_calls_the_entry_point_of_pyproject():
    import tomllib

    entry = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["indexer"]
    module, func = entry.split(":")
    assert f"from {module} import {func}" in (REPO / "Dockerfile").read_text()
