"""Deployments with real processes on the embedded SQLite store: a blue-green switch and a
rolling switch under continuous load from a separate process (two uvicorn worker
processes, a real worker) lose no request; a canary whose candidate approves differently
fails its gate and is rolled back with an alert; a canary that passes every step moves the
production alias."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from creditops.services.context import AppContext
from creditops.services.training import TrainRequest, train_and_register
from creditops.settings import Settings
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.tables import DecisionRow
from tests.e2e.test_retraining_e2e import webhook, worker  # noqa: F401 - a fixture
from tests.factories import train_demo_model
from tests.integration.server_harness import running_server, service_env
from tests.integration.test_deployments_server import add_versions, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
INTERVAL = "0.5"


def environment(home: Path, url: str, **extra: str) -> dict[str, str]:
    return service_env(
        home,
        url,
        CREDITOPS_SERVE__AUTH_ENABLED="false",
        CREDITOPS_SERVE__RELOAD_INTERVAL_S=INTERVAL,
        CREDITOPS_DEPLOY__EVALUATE_INTERVAL_S=INTERVAL,
        CREDITOPS_RETRAIN__TRIGGERS="[]",
        CREDITOPS_MONITOR__EVERY_PREDICTIONS="1000000",
        **extra,
    )


def test_blue_green_and_rolling_switches_under_load_lose_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    train_demo_model(home, mlflow_uri=None)
    add_versions(home, 1)
    url = f"sqlite:///{tmp_path / 'switch.db'}"
    env = environment(home, url)
    out = tmp_path / "load.json"
    with (
        running_server(home, url, tmp_path / "api.log", workers=2, extra_env=env) as server,
        worker(env, tmp_path, tmp_path / "worker.log"),
        server.client() as client,
    ):
        began = time.monotonic()
        load = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.load_client", server.base_url, str(out),
             "--threads", "4", "--seconds", "35"],
            cwd=ROOT,
        )  # fmt: skip
        try:
            time.sleep(5)
            body = {"name": "taiwan", "version": "2", "strategy": "blue_green"}
            blue_green = client.post("/v1/models/deploy", json=body).json()["deployment_id"]
            wait_for(client, blue_green, {"succeeded"}, 30)
            time.sleep(5)
            body = {"name": "taiwan", "version": "1", "strategy": "rolling", "reason": "back"}
            rolling = client.post("/v1/models/deploy", json=body).json()["deployment_id"]
            wait_for(client, rolling, {"succeeded"}, 30)
            settled = time.monotonic() - began + 3 * float(INTERVAL) + 1
            assert load.wait(90) == 0
        finally:
            if load.poll() is None:
                load.kill()
    seen = json.loads(out.read_text())
    assert seen["transport_error_count"] == 0, seen["transport_errors"]
    assert set(seen["statuses"]) == {"200"}, seen["statuses"]
    answered = {decision_id: version for decision_id, version, _ in seen["acknowledged"]}
    assert len(answered) > 200 and set(answered.values()) == {"1", "2"}
    late = {version for _, version, at in seen["acknowledged"] if at > settled}
    assert late == {"1"}, "after the rolling switch every process answers with v1"
    sessions = session_factory(create_db_engine(url))
    with sessions() as session:
        logged = dict(
            session.execute(select(DecisionRow.decision_id, DecisionRow.model_version)).all()
        )
    missing = [d for d in answered if d not in logged]
    assert not missing, f"{len(missing)} acknowledged decisions are not in the log"
    assert all(logged[d] == v for d, v in answered.items())


def applicants(n: int, offset: int) -> list[dict[str, Any]]:
    frame = pd.read_csv(DATA / "taiwan_credit_card.csv", nrows=n, skiprows=range(1, offset + 1))
    frame = frame.drop(columns=["id", "target", "_is_test"])
    return [
        {"application_id": f"c{offset + i}", "features": features}
        for i, features in enumerate(frame.to_dict(orient="records"))
    ]


def send(client: httpx.Client, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), 100):
        answer = client.post(
            "/v1/models/taiwan/predict", json={"applications": rows[start : start + 100]}
        )
        assert answer.status_code == 200, answer.text


def test_a_canary_gate_rolls_back_and_a_good_canary_promotes(
    tmp_path: Path,
    webhook: tuple[str, list[dict[str, Any]]],  # noqa: F811
) -> None:
    hook, received = webhook
    home = tmp_path / "home"
    train_demo_model(home, mlflow_uri=None)
    # v2: the same model with a stricter policy, so it approves far fewer applicants
    policy = yaml.safe_load((DATA / "policies/taiwan.yaml").read_text())
    policy.update(version="strict", approve_min_score=590)
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(policy))
    ctx = AppContext(Settings(home=home))
    v2 = train_and_register(
        ctx,
        TrainRequest(
            spec_path=DATA / "specs/taiwan.yaml",
            data_path=DATA / "taiwan_credit_card.csv",
            name="taiwan",
            policy_path=strict,
        ),
    ).version
    ctx.registry.set_version_tags("taiwan", v2, {"gate_passed": "true"})
    add_versions(home, 1)  # v3: v1's bundle, a candidate that behaves the same
    url = f"sqlite:///{tmp_path / 'canary.db'}"
    env = environment(
        home,
        url,
        CREDITOPS_DEPLOY__STEP_INTERVAL_S="5",  # time to send a step's traffic under load
        CREDITOPS_DEPLOY__MIN_DECISIONS="100",
        CREDITOPS_ALERTS__CHANNELS="webhook",
        CREDITOPS_ALERTS__WEBHOOK_URL=hook,
    )
    with (
        running_server(home, url, tmp_path / "api.log", extra_env=env) as server,
        worker(env, tmp_path, tmp_path / "worker.log"),
        server.client() as client,
    ):
        body = {"name": "taiwan", "version": v2, "strategy": "canary", "steps": [0.5, 1.0]}
        strict_canary = client.post("/v1/models/deploy", json=body).json()["deployment_id"]
        wait_for(client, strict_canary, {"progressing"}, 30)
        time.sleep(3 * float(INTERVAL))
        send(client, applicants(800, 0))
        done = wait_for(client, strict_canary, {"rolled_back"}, 30)
        last = done["history"][-1]
        assert "approval_rate_diff" in last["detail"], last
        failed = {c["name"]: c for c in last["evidence"]["checks"] if not c["passed"]}
        assert failed["approval_rate_diff"]["value"] < -0.1
        deadline = time.monotonic() + 10  # the alert goes out after the state is stored
        while not any("rolled back" in m.get("title", "") for m in received):
            assert time.monotonic() < deadline, received
            time.sleep(0.2)

        body = {"name": "taiwan", "version": "3", "strategy": "canary", "steps": [0.5, 1.0]}
        good = client.post("/v1/models/deploy", json=body).json()["deployment_id"]
        wait_for(client, good, {"progressing"}, 30)
        time.sleep(3 * float(INTERVAL))
        send(client, applicants(800, 800))
        deadline = time.monotonic() + 30
        while (shown := client.get(f"/v1/models/deployments/{good}").json())["traffic_share"] < 1.0:
            assert shown["state"] == "progressing", shown["history"][-1]
            assert time.monotonic() < deadline, shown["history"][-1]
            time.sleep(0.2)
        time.sleep(3 * float(INTERVAL))
        send(client, applicants(300, 1600))
        done = wait_for(client, good, {"succeeded"}, 30)
        passed = [h for h in done["history"] if h["event"] == "step_passed"]
        assert [h["step"] for h in passed] == [0]
        assert all(c["passed"] for c in passed[0]["checks"])
        production = AppContext(Settings(home=home)).registry.find_alias("taiwan", "production")
        assert production is not None and production.version == "3"
        samples = {
            (s.name, s.labels.get("deployment_id"), s.labels.get("state")): s.value
            for family in text_string_to_metric_families(client.get("/metrics").text)
            for s in family.samples
        }
        assert samples[("creditops_deployment_state", good, "succeeded")] == 3.0


def test_a_shadow_changes_no_byte_and_a_failed_version_never_serves(tmp_path: Path) -> None:
    home = tmp_path / "home"
    train_demo_model(home, mlflow_uri=None)
    add_versions(home, 1)
    add_versions(home, 1, gate_passed="false")  # v3
    url = f"sqlite:///{tmp_path / 'shadow.db'}"
    env = environment(home, url)
    rows = applicants(40, 3000)
    varying = re.compile(rb'"(decision_id|created_at)":"[^"]*"')

    def answers(client: httpx.Client) -> list[bytes]:
        bodies = []
        for row in rows:
            answer = client.post("/v1/models/taiwan/predict", json=row)
            assert answer.status_code == 200, answer.text
            bodies.append(varying.sub(rb'"\1":""', answer.content))
        return bodies

    with (
        running_server(home, url, tmp_path / "api.log", extra_env=env) as server,
        worker(env, tmp_path, tmp_path / "worker.log"),
        server.client() as client,
    ):
        without = answers(client)
        body = {"name": "taiwan", "version": "2", "strategy": "shadow"}
        shadow = client.post("/v1/models/deploy", json=body).json()["deployment_id"]
        wait_for(client, shadow, {"progressing"}, 30)
        time.sleep(3 * float(INTERVAL))
        with_shadow = answers(client)
        assert with_shadow == without
        deadline = time.monotonic() + 10
        while (report := client.get(f"/v1/models/deployments/{shadow}").json())["shadow_report"][
            "n"
        ] < len(rows):
            assert time.monotonic() < deadline, report["shadow_report"]
            time.sleep(0.2)
        assert report["shadow_report"]["agreement_rate"] == 1.0
        client.post(f"/v1/models/deployments/{shadow}/abort")
        # the production alias moved by MLflow's own client to a version that failed its gate
        tracking = Settings(home=home).tracking_uri
        mlflow.MlflowClient(tracking).set_registered_model_alias("taiwan", "production", "3")
        time.sleep(4 * float(INTERVAL))
        answer = client.post("/v1/models/taiwan/predict", json=rows[0]).json()
        assert answer["model"]["version"] == "1"
        assert "refusing to serve taiwan v3" in server.log_text()
