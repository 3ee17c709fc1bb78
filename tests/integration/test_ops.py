"""Operations files against the real thing.

* A real Prometheus (Debian's ``prometheus`` binary) on loopback scrapes a real
  ``creditops serve`` with a trained model; a creditops metric is read back through
  Prometheus' HTTP API, the repository's alert rules load and evaluate there, and so does
  every PromQL expression of the Grafana dashboards.
* Every metric the dashboards and rules name is one the service exports (its own metrics
  and the gauges of the stored monitoring checks); ``promtool`` checks and unit-tests the
  rules.
* The compose file and the Render blueprint only use settings that exist and files that
  exist; docs/operations.md has a runbook for every alert and a current settings table.

promtool and prometheus are part of the contract (CI installs them): if they are missing
these tests FAIL with the command that installs them; they do not skip.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from creditops.api.event_metrics import OUTBOX_METRICS
from creditops.api.metrics import build_metrics
from creditops.api.monitoring_metrics import DEPLOYMENT_METRICS
from creditops.api.monitoring_metrics import METRIC_NAMES as MONITORING_METRICS
from creditops.domain.access import SCOPES
from creditops.services.access import create_key
from creditops.settings import Settings
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.migrations_api import ensure_current
from tests.factories import train_demo_model
from tests.integration.server_harness import HOST, free_port, running_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "creditops.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "creditops_test.yml"
PROM_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
DATA = ROOT / "data"
INSTALL_HINT = (
    "{tool} is not installed. Install Debian's Prometheus package "
    "(`apt-get update && apt-get install -y prometheus`; scripts/check_ops.sh does it, "
    "CI installs it) and run the tests again."
)

# Series Prometheus itself attaches to every scrape target.
SCRAPE_METRICS = frozenset(
    {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}
)


# -- PromQL: the metric names an expression reads -------------------------------------------------
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
     "unless", "offset", "inf", "nan"}
)  # fmt: skip
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:([A-Za-z_:][A-Za-z0-9_:]*)[^,]*,)?\s*\w+\s*\)")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (an identifier that is not a function, keyword,
    label, number suffix or Grafana variable). Good enough for the expressions we write; the
    real Prometheus test below evaluates each of them as a cross-check of their syntax."""
    text = _STRINGS.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end() :].lstrip()[:1]
        if before in "$." or before.isdigit() or after == "(":
            continue
        if match.group() not in _KEYWORDS:
            names.add(match.group())
    return names


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up", {"up"}),
        ('up{job="creditops-api"} == 0', {"up"}),
        (
            'sum by (job) (rate(creditops_http_requests_total{status=~"5.."}[5m]))',
            {"creditops_http_requests_total"},
        ),
        (
            "histogram_quantile(0.95, sum by (le) (rate(x_bucket[$__rate_interval])))",
            {"x_bucket"},
        ),
        ("a > 0 and on (instance) b == 0", {"a", "b"}),
        ("time() - max by (model) (c) > 13 * 3600", {"c"}),
        ('a / ignoring(version) group_left sum by (model) (b{m=~"$model"})', {"a", "b"}),
        ("topk(5, max by (feature) (psi))", {"psi"}),
        ("rate(a[5m] offset 1h)", {"a"}),
        ('absent(up{job="x"})', {"up"}),
        ('label_replace(a, "dst", "$1", "src", "(.*)")', {"a"}),
        ("sum(rate(a_sum[1m])) / sum(rate(a_count[1m]))", {"a_sum", "a_count"}),
        ("increase(a[$__range])", {"a"}),
    ],
    ids=[
        "bare", "matcher", "by-clause", "grafana-range", "and-on", "time-function",
        "group-left", "topk", "offset", "absent", "strings", "sum-count", "range-var",
    ],
)  # fmt: skip
def test_promql_metric_names(expr: str, expected: set[str]) -> None:
    assert promql_metric_names(expr) == expected


# -- where the expressions are --------------------------------------------------------------------
@dataclass(frozen=True)
class Expression:
    where: str
    expr: str


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_expressions() -> list[Expression]:
    found = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in _panels(board["panels"]):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append(Expression(f"{path.name}: {panel['title']}", target["expr"]))
    return found


def dashboard_variable_metrics() -> list[Expression]:
    """Metrics named by the dashboards' template variables (``label_values(metric, label)``)."""
    found = []
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            query = variable.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            match = _LABEL_VALUES.match(query or "")
            if match and match.group(1):
                found.append(Expression(f"{path.name}: ${variable['name']}", match.group(1)))
    return found


def rule_expressions() -> list[Expression]:
    rules = yaml.safe_load(RULES.read_text())
    return [
        Expression(f"rule {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


# -- what the service exports ---------------------------------------------------------------------
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def service_metric_names() -> set[str]:
    """Every series name ``GET /metrics`` can contain: the families registered on the service's
    registry (the one /metrics renders), expanded by type as the exposition format does."""
    names: set[str] = set()
    for family in build_metrics().registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def test_every_metric_in_dashboards_and_rules_is_exported() -> None:
    exported = (
        service_metric_names()
        | set(MONITORING_METRICS)
        | set(DEPLOYMENT_METRICS)
        | set(OUTBOX_METRICS)
        | SCRAPE_METRICS
    )
    used = dashboard_expressions() + rule_expressions()
    named = {(e.where, name) for e in used for name in promql_metric_names(e.expr)}
    named |= {(e.where, e.expr) for e in dashboard_variable_metrics()}
    assert len({name for _, name in named}) > 20, "the extractor found suspiciously few names"
    unknown = sorted(f"{name} ({where})" for where, name in named if name not in exported)
    hint = ""
    if any(n.startswith("process_") for n in unknown):
        hint = (
            "\nprocess_* metrics (CPU, memory) come only with prometheus_client's default "
            "registry; the service has its own: build_metrics() in creditops/api/metrics.py "
            "needs `metrics.add_collector(ProcessCollector(registry=None))`."
        )
    assert not unknown, "metrics the service does not export:\n  " + "\n  ".join(unknown) + hint


def test_dashboards_are_well_formed() -> None:
    assert [p.stem for p in DASHBOARDS] == [
        "creditops-decisions", "creditops-drift-fairness", "creditops-service",
    ]  # fmt: skip
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uid = provisioned["datasources"][0]["uid"]
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        panels = list(_panels(board["panels"]))
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        cells: dict[tuple[int, int], str] = {}
        for panel in panels:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"{path.name}: {panel['title']}"
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    other = cells.setdefault((x, y), panel["title"])
                    assert other == panel["title"], (
                        f"{path.name}: {other} overlaps {panel['title']}"
                    )
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == uid, f"{path.name}: {panel['title']}"
            assert panel["targets"], f"{path.name}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid, f"{path.name}: {panel['title']}"
    assert len(uids) == len(DASHBOARDS), "dashboard uids must be unique"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    home = compose["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert Path(home).name in {p.name for p in DASHBOARDS}


# -- promtool -------------------------------------------------------------------------------------
def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(INSTALL_HINT.format(tool=name))
    return found


@pytest.mark.parametrize(
    "check",
    ["check-rules", "test-rules", "check-config"],
)
def test_promtool(check: str, tmp_path: Path) -> None:
    promtool = _tool("promtool")
    if check == "check-rules":
        args = ["check", "rules", str(RULES)]
    elif check == "test-rules":
        args = ["test", "rules", str(RULE_TESTS)]
    else:
        # The config names the rules and the scrape key by their paths in the container;
        # check a copy pointing at the repository's rules (so the rules are loaded as part
        # of the config check) and at a stand-in key.
        (tmp_path / "api-key").write_text("stand-in key\n")
        config = (
            PROM_CONFIG.read_text()
            .replace("/etc/prometheus/rules/", f"{RULES.parent}/")
            .replace("/etc/prometheus/secrets/api-key", str(tmp_path / "api-key"))
        )
        (tmp_path / "prometheus.yml").write_text(config)
        args = ["check", "config", str(tmp_path / "prometheus.yml")]
    done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


# -- docs, compose, Render ------------------------------------------------------------------------
def _anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_alert_has_a_runbook() -> None:
    doc = OPERATIONS_DOC.read_text()
    anchors = {_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", doc, flags=re.MULTILINE)}
    names = []
    for rule in alert_rules():
        runbook = rule["annotations"]["runbook"]
        path, _, anchor = runbook.partition("#")
        assert (ROOT / path) == OPERATIONS_DOC, rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in {path}"
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        names.append(rule["alert"])
    seed_conditions = {
        "CreditopsDriftWarning", "CreditopsDriftCritical", "CreditopsPerformanceDrop",
        "CreditopsHighErrorRate", "CreditopsHighLatency", "CreditopsServiceDown",
        "CreditopsDecisionLogBacklog",
    }  # fmt: skip
    assert seed_conditions <= set(names)


def _settings_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every environment variable name of ``model``'s leaf settings, upper case."""
    paths = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths |= _settings_paths(annotation, f"{prefix}{name.upper()}__")
        else:
            paths.add(f"{prefix}{name.upper()}")
    return paths


def _creditops_env_names() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service, spec in compose["services"].items():
        env = spec.get("environment") or {}
        keys = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        found.update({k: [*found.get(k, []), f"compose {service}"] for k in keys})
    for anchor in ("x-creditops-env",):
        found.update({k: [*found.get(k, []), f"compose {anchor}"] for k in compose[anchor]})
    render = yaml.safe_load((ROOT / "render.yaml").read_text())
    groups = [g["envVars"] for g in render.get("envVarGroups", [])]
    groups += [s.get("envVars", []) for s in render["services"]]
    for env_vars in groups:
        for var in env_vars:
            if "key" in var:
                found.setdefault(var["key"], []).append("render.yaml")
    return {k: v for k, v in found.items() if k.startswith("CREDITOPS_")}


def test_deployment_files_use_existing_settings() -> None:
    known = {f"CREDITOPS_{p}" for p in _settings_paths(Settings)}
    used = _creditops_env_names()
    assert {"CREDITOPS_DATABASE_URL", "CREDITOPS_MLFLOW_URI"} <= used.keys()
    unknown = {k: v for k, v in used.items() if k not in known}
    assert not unknown, f"settings that do not exist: {unknown}"


def test_compose_bind_mounts_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    sources = [
        volume.split(":", 1)[0]
        for spec in compose["services"].values()
        for volume in spec.get("volumes", [])
        if isinstance(volume, str) and volume.startswith(".")
    ]
    assert len(sources) >= 6
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert not missing, f"bind-mount sources missing from the repository: {missing}"


def test_settings_reference_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen_settings_doc.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- a real Prometheus scraping a real creditops --------------------------------------------------
def _load(path: Path) -> ModuleType:
    name = f"creditops_deploy_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A home with the Taiwan demo model in production, and an API key with predict."""
    home = tmp_path_factory.mktemp("ops-home")
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'creditops.db'}")
    train_demo_model(home, database_url=settings.database_url)
    ensure_current(settings.database)
    sessions = session_factory(create_db_engine(settings.database))
    key = create_key(sessions, "ops-test", ["predict"], SCOPES, "test").key
    return home, key


@dataclass
class PrometheusProcess:
    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_prometheus(binary: str, config: Path, workdir: Path) -> PrometheusProcess:
    """Start Prometheus on a free loopback port; retry on a port taken in the meantime."""
    for _ in range(3):
        port = free_port()
        log = workdir / f"prometheus-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / f'data-{port}'}",
                    f"--web.listen-address={HOST}:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = PrometheusProcess(proc, f"http://{HOST}:{port}", log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{server.base_url}/-/ready", timeout=2).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        server.stop()
        if "address already in use" not in log.read_text(errors="replace"):
            raise AssertionError(f"prometheus did not start:\n{log.read_text()[-3000:]}")
    raise AssertionError("prometheus: no free port after 3 attempts")


def query(base_url: str, expr: str) -> dict[str, Any]:
    answer = httpx.get(f"{base_url}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = answer.json()
    return body


def wait_for_series(base_url: str, expr: str, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result: list[dict[str, Any]] = query(base_url, expr)["data"]["result"]
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"no series for {expr} after {timeout:.0f}s")


GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$model": ".*", "$instance": ".*"}


def test_prometheus_scrapes_creditops(served: tuple[Path, str], tmp_path: Path) -> None:
    binary = _tool("prometheus")
    home, key = served
    smoke = _load(DEPLOY / "ci/smoke.py")
    stack_checks = _load(DEPLOY / "ci/stack_checks.py")
    database_url = f"sqlite:///{home / 'creditops.db'}"
    with running_server(home, database_url, tmp_path / "serve.log") as server:
        with server.client(key) as client:
            answer = client.post(
                "/v1/models/taiwan/predict",
                json={"application_id": "ops-1", "features": smoke.SAMPLE_FEATURES},
            )
        assert answer.status_code == 200, answer.text
        decision = answer.json()["decision"]
        # What the metric-name test assumes the service exports is what /metrics really has.
        exposition = httpx.get(f"{server.base_url}/metrics", timeout=10).text
        live = {
            family.name + suffix
            for family in text_string_to_metric_families(exposition)
            for suffix in _SUFFIXES.get(family.type, ("",))
        }
        assert not (service_metric_names() | set(MONITORING_METRICS)) - live

        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "creditops-api",
                    "static_configs": [{"targets": [f"{HOST}:{server.port}"]}],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = start_prometheus(binary, tmp_path / "prometheus.yml", tmp_path)
        try:
            base = prometheus.base_url
            # The decision made above, read back through Prometheus.
            series = wait_for_series(base, 'creditops_predictions_total{model="taiwan"}')
            assert len(series) == 1
            assert series[0]["metric"]["decision"] == decision
            assert series[0]["metric"]["version"] == "1"
            assert series[0]["metric"]["job"] == "creditops-api"
            assert float(series[0]["value"][1]) == 1.0
            info = wait_for_series(base, "creditops_model_info")
            assert {(s["metric"]["model"], s["metric"]["version"]) for s in info} == {
                ("taiwan", "1")
            }
            up = wait_for_series(base, 'up{job="creditops-api"}')
            assert [float(s["value"][1]) for s in up] == [1.0]

            # The CI stack checks (rules loaded and healthy, target up, metric present).
            assert all(stack_checks.prometheus_checks(base, 60.0))
            rules = httpx.get(f"{base}/api/v1/rules", timeout=10).json()["data"]["groups"]
            loaded = {r["name"] for g in rules for r in g["rules"]}
            assert loaded == {r["alert"] for r in alert_rules()}

            # Every dashboard and rule expression is valid PromQL for a real Prometheus.
            invalid = []
            for item in dashboard_expressions() + rule_expressions():
                expr = item.expr
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                body = query(base, expr)
                if body.get("status") != "success":
                    invalid.append(f"{item.where}: {body.get('error')}")
            assert not invalid, "\n".join(invalid)
        finally:
            prometheus.stop()


# -- the deploy / rollback script, against a local stand-in for Render's API ----------------------
class FakeRender:
    """Render's deploy hook and the REST endpoints render_deploy.py uses, on loopback.

    Render cannot be reached from tests; this follows its documented shapes (deploy lists of
    ``{"deploy": {...}, "cursor": ...}``, deploys with ``id`` and ``status``) and records the
    calls, so that the deploy, wait and rollback logic runs for real."""

    def __init__(self, new_statuses: list[str]) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.statuses = {"dep-old": ["live"], "dep-new": list(new_statuses), "dep-rb": ["live"]}

    def handle(self, method: str, path: str, body: Any, auth: str | None) -> tuple[int, Any]:
        self.calls.append((method, path, body))
        if path == "/hook" and method == "POST":
            return 200, {"deploy": {"id": "dep-new"}}
        if auth != "Bearer test-key":
            return 401, {"message": "unauthorized"}
        base = "/v1/services/srv-1"
        if method == "GET" and path.startswith(f"{base}/deploys?"):
            return 200, [
                {"deploy": {"id": "dep-failed", "status": "build_failed"}, "cursor": "a"},
                {"deploy": {"id": "dep-old", "status": "live"}, "cursor": "b"},
            ]
        if method == "GET" and path.startswith(f"{base}/deploys/"):
            deploy_id = path.rsplit("/", 1)[1]
            queue = self.statuses[deploy_id]
            status = queue.pop(0) if len(queue) > 1 else queue[0]
            return 200, {"id": deploy_id, "status": status}
        if method == "POST" and path == f"{base}/rollback":
            return 201, {"id": "dep-rb", "status": "created"}
        return 404, {"message": f"no route {method} {path}"}


@pytest.fixture
def fake_render() -> Iterator[tuple[FakeRender, str]]:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = FakeRender(["build_in_progress", "update_in_progress", "live"])

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, answer = state.handle(
                self.command, self.path, body, self.headers.get("Authorization")
            )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _render_deploy(url: str, *args: str, tmp_path: Path) -> tuple[int, str, dict[str, str]]:
    output = tmp_path / "github_output"
    output.write_text("")
    env = {
        "PATH": "/usr/bin:/bin",
        "RENDER_API_URL": f"{url}/v1",
        "RENDER_API_KEY": "test-key",
        "RENDER_SERVICE_ID": "srv-1",
        "RENDER_DEPLOY_HOOK_URL": f"{url}/hook",
        "GITHUB_OUTPUT": str(output),
    }
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "ci/render_deploy.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if line)
    return done.returncode, done.stdout + done.stderr, outputs


def test_render_deploy_trigger_wait_and_rollback(
    fake_render: tuple[FakeRender, str], tmp_path: Path
) -> None:
    state, url = fake_render
    rc, out, outputs = _render_deploy(url, "live", tmp_path=tmp_path)
    assert (rc, outputs) == (0, {"deploy_id": "dep-old"}), out
    rc, out, outputs = _render_deploy(url, "trigger", tmp_path=tmp_path)
    assert (rc, outputs) == (0, {"deploy_id": "dep-new"}), out
    rc, out, _ = _render_deploy(url, "wait", "dep-new", "--interval", "0.01", tmp_path=tmp_path)
    assert rc == 0, out
    assert [line.split(": ")[1] for line in out.splitlines()] == [
        "build_in_progress", "update_in_progress", "live",
    ]  # fmt: skip
    rc, out, outputs = _render_deploy(
        url, "rollback", "dep-old", "--interval", "0.01", tmp_path=tmp_path
    )
    assert (rc, outputs) == (0, {"deploy_id": "dep-rb"}), out
    assert ("POST", "/v1/services/srv-1/rollback", {"deployId": "dep-old"}) in state.calls


def test_render_deploy_wait_fails_on_a_failed_deploy(
    fake_render: tuple[FakeRender, str], tmp_path: Path
) -> None:
    state, url = fake_render
    state.statuses["dep-new"] = ["build_in_progress", "build_failed"]
    rc, out, _ = _render_deploy(url, "wait", "dep-new", "--interval", "0.01", tmp_path=tmp_path)
    assert rc == 1
    assert "error: deploy dep-new ended as build_failed" in out
