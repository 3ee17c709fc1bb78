"""Deployments with real processes: two API servers on one PostgreSQL database and a real
worker. A canary's observed share is the configured one within 2 points over 5,000
applicants, and both servers send each applicant to the same version; a candidate whose
scoring fails is rolled back automatically within the worker's interval, the alert goes out
and the audit trail tells the story in order; no request fails meanwhile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from creditops.registry.records import RegistrationRequest
from creditops.services.context import AppContext
from creditops.settings import Settings
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.tables import AuditRow
from tests.api.test_api import applicant
from tests.e2e.test_retraining_e2e import webhook, worker  # noqa: F401 - a fixture
from tests.factories import train_demo_model
from tests.integration.server_harness import postgres_schema, running_server, service_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
INTERVAL = "0.5"


def add_versions(home: Path, count: int, gate_passed: str = "true", source: str = "1") -> None:
    """Register ``count`` more versions with the same bundle as ``source``, validated
    unless ``gate_passed`` says otherwise."""
    ctx = AppContext(Settings(home=home))
    info = ctx.registry.get_version("taiwan", source)
    bundle = ctx.registry.download_bundle("taiwan", source, home / f"bundle-{source}")
    for _ in range(count):
        ctx.registry.register(
            RegistrationRequest(
                name="taiwan",
                bundle_path=bundle,
                bundle_sha256=info.tags["bundle_sha256"],
                params={},
                metrics=info.metrics,
                tags={"gate_passed": gate_passed},
                artifacts={},
            )
        )


def decide(client: httpx.Client, ids: list[str]) -> dict[str, str]:
    """The version that decided each application id (one batch request)."""
    features = applicant(0)["features"]
    body = {"applications": [{"application_id": a, "features": features} for a in ids]}
    answer = client.post("/v1/models/taiwan/predict", json=body)
    assert answer.status_code == 200, answer.text
    return {d["application_id"]: d["model"]["version"] for d in answer.json()["decisions"]}


def wait_for(
    client: httpx.Client, deployment_id: str, states: set[str], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        row: dict[str, Any] = client.get(f"/v1/models/deployments/{deployment_id}").json()
        if row["state"] in states:
            return row
        assert time.monotonic() < deadline, f"still {row['state']}: {row['history']}"
        time.sleep(0.2)


@pytest.fixture()
def url() -> Iterator[str]:
    with postgres_schema("creditops_deploy") as found:
        yield found


def test_canary_split_stickiness_and_automatic_rollback(
    tmp_path: Path,
    url: str,
    webhook: tuple[str, list[dict[str, Any]]],  # noqa: F811
) -> None:
    hook, received = webhook
    home = tmp_path / "home"
    train_demo_model(home, mlflow_uri=None)
    add_versions(home, 3)  # v2 good; v3 fails on requests, v4 its health check (injected)
    env = service_env(
        home,
        url,
        CREDITOPS_SERVE__AUTH_ENABLED="false",
        CREDITOPS_SERVE__RELOAD_INTERVAL_S=INTERVAL,
        CREDITOPS_DEPLOY__EVALUATE_INTERVAL_S=INTERVAL,
        CREDITOPS_DEPLOY__STEP_INTERVAL_S="3600",
        CREDITOPS_DEPLOY__INJECT_FAULTS='["taiwan:3:requests", "taiwan:4"]',
        CREDITOPS_ALERTS__CHANNELS="webhook",
        CREDITOPS_ALERTS__WEBHOOK_URL=hook,
        CREDITOPS_RETRAIN__TRIGGERS="[]",
        CREDITOPS_MONITOR__EVERY_PREDICTIONS="1000000",
    )
    with ExitStack() as stack:
        servers = [
            stack.enter_context(running_server(home, url, tmp_path / f"api{i}.log", extra_env=env))
            for i in range(2)
        ]
        stack.enter_context(worker(env, tmp_path, tmp_path / "worker.log"))
        one, two = (stack.enter_context(s.client()) for s in servers)
        body = {"name": "taiwan", "version": "2", "strategy": "canary", "steps": [0.25, 1.0]}
        started = one.post("/v1/models/deploy", json=body)
        assert started.status_code == 202, started.text
        canary = started.json()["deployment_id"]
        wait_for(one, canary, {"progressing"}, 60)
        time.sleep(3 * float(INTERVAL))  # both servers follow within their interval
        ids = [f"applicant-{i}" for i in range(5000)]
        first: dict[str, str] = {}
        for start in range(0, len(ids), 250):
            client = one if (start // 250) % 2 == 0 else two
            first.update(decide(client, ids[start : start + 250]))
        share = sum(v == "2" for v in first.values()) / len(first)
        assert abs(share - 0.25) <= 0.02, share
        # the same applicants, each batch sent to the other server: the same versions
        second: dict[str, str] = {}
        for start in range(0, len(ids), 250):
            client = two if (start // 250) % 2 == 0 else one
            second.update(decide(client, ids[start : start + 250]))
        assert second == first
        assert one.post(f"/v1/models/deployments/{canary}/abort").json()["state"] == "aborted"

        # a candidate that fails: every request still answered, then rolled back
        body = {"name": "taiwan", "version": "3", "strategy": "canary", "steps": [0.5, 1.0]}
        faulty = one.post("/v1/models/deploy", json=body).json()["deployment_id"]
        wait_for(one, faulty, {"progressing"}, 60)
        time.sleep(3 * float(INTERVAL))
        began = time.monotonic()
        for n in range(40):
            answered = decide(one if n % 2 else two, [f"f{n}-{i}" for i in range(10)])
            assert set(answered.values()) == {"1"}  # the stable version answered for v3
        done = wait_for(one, faulty, {"rolled_back"}, 30)
        assert time.monotonic() - began < 10
        assert "error rate" in done["history"][-1]["detail"]
        deadline = time.monotonic() + 10
        while not any("rolled back" in m.get("title", "") for m in received):
            assert time.monotonic() < deadline, received
            time.sleep(0.2)
        # a candidate that cannot even score its health check never answers
        body = {"name": "taiwan", "version": "4", "strategy": "blue_green"}
        broken = one.post("/v1/models/deploy", json=body).json()["deployment_id"]
        done = wait_for(one, broken, {"rolled_back"}, 30)
        assert "health check" in done["history"][-1]["detail"]
        assert set(decide(two, [f"b{i}" for i in range(20)]).values()) == {"1"}
    sessions = session_factory(create_db_engine(url))
    with sessions() as session:
        story = [
            (r.action, r.details.get("deployment_id"))
            for r in session.scalars(select(AuditRow).order_by(AuditRow.id))
            if r.action.startswith("deployment.")
        ]
    assert [a for a, d in story if d == faulty] == [
        "deployment.start",
        "deployment.step",
        "deployment.rollback",
    ]
    assert [a for a, d in story if d == canary] == [
        "deployment.start",
        "deployment.step",
        "deployment.abort",
    ]
