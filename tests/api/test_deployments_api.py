"""Deployments through the API (TestClient): routes, scopes and bad input; a canary split
by application id; pause, resume, abort, rollback and the audit trail; a shadow that never
answers; a version that failed its gate is not served, even when MLflow's own client moves
the production alias to it. The worker's part is called in-process (``drive``); the
real-process acceptance is in tests/integration/test_deployments_server.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import mlflow
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from creditops.api.app import create_app
from creditops.api.deps import ApiState
from creditops.domain.access import SCOPES
from creditops.registry.records import RegistrationRequest
from creditops.services.access import create_key
from creditops.services.context import AppContext
from creditops.services.deployments import drive, promote_alias, rollback
from creditops.settings import Settings
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.migrations_api import ensure_current
from creditops.store.tables import AuditRow, DecisionRow, EventOutboxRow, ShadowDecisionRow
from tests.api.conftest import auth
from tests.api.test_api import applicant
from tests.factories import train_demo_model


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1 in production (override), v2 validated, v3 failed its gate: one bundle."""
    home = tmp_path_factory.mktemp("deploy-home")
    train_demo_model(home)
    ctx = AppContext(Settings(home=home))
    info = ctx.registry.get_version("taiwan", "1")
    bundle = ctx.registry.download_bundle("taiwan", "1", tmp_path_factory.mktemp("bundle"))
    for passed in ("true", "false"):
        ctx.registry.register(
            RegistrationRequest(
                name="taiwan",
                bundle_path=bundle,
                bundle_sha256=info.tags["bundle_sha256"],
                params={},
                metrics=info.metrics,
                tags={"gate_passed": passed},
                artifacts={},
            )
        )
    return home


@pytest.fixture(scope="module")
def settings(home: Path) -> Settings:
    return Settings(
        home=home,
        serve={"reload_interval_s": 0},  # the tests call the follower themselves
        deploy={"min_decisions": 50, "step_interval_s": 0.1, "keep_warm_s": 3600},
        events={"enabled": True},  # the outbox only: no publisher runs here
    )


@pytest.fixture(scope="module")
def keys(settings: Settings) -> dict[str, str]:
    ensure_current(settings.database)
    sessions = session_factory(create_db_engine(settings.database))
    return {
        scope: create_key(sessions, scope, [scope], SCOPES, "test").key
        for scope in ("deploy", "promote", "rollback", "read", "predict", "admin")
    }


@pytest.fixture(scope="module")
def client(settings: Settings, keys: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def state_of(client: TestClient) -> ApiState:
    state: ApiState = client.app.state.api  # type: ignore[attr-defined]
    return state


def follow_and_drive(client: TestClient) -> list[str]:
    state = state_of(client)
    assert state.follower is not None
    state.follower.refresh()
    done = drive(state.ctx, state.sessions)
    state.follower.refresh()
    return done


def predict(client: TestClient, keys: dict[str, str], app_id: str) -> dict[str, Any]:
    body = {**applicant(0), "application_id": app_id}
    answer = client.post("/v1/models/taiwan/predict", json=body, headers=auth(keys["predict"]))
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def audit_actions(settings: Settings) -> list[str]:
    sessions = session_factory(create_db_engine(settings.database))
    with sessions() as session:
        rows = session.scalars(select(AuditRow).order_by(AuditRow.id))
        return [r.action for r in rows if r.action.startswith(("deployment.", "model.rollback"))]


def test_bad_requests_and_scopes(client: TestClient, keys: dict[str, str]) -> None:
    body = {"name": "taiwan", "version": "2", "strategy": "canary"}
    assert (
        client.post("/v1/models/deploy", json=body, headers=auth(keys["read"])).status_code == 403
    )
    assert client.post("/v1/models/deploy", json=body).status_code == 401
    cases = [
        ({**body, "strategy": "big_bang"}, 422, "strategy"),
        ({**body, "version": "3"}, 422, "failed its validation gate"),
        ({**body, "version": "1"}, 409, "already in production"),
        ({**body, "version": "99"}, 404, "99"),
        ({**body, "steps": [0.5, 0.2]}, 422, "increase"),
        ({**body, "gate": {"max_error_rate": 3}}, 422, "max_error_rate"),
        ({**body, "name": "nope"}, 404, "nope"),
    ]
    for request, status, text in cases:
        answer = client.post("/v1/models/deploy", json=request, headers=auth(keys["deploy"]))
        assert answer.status_code == status, (request, answer.text)
        assert text in answer.text
    assert (
        client.get("/v1/models/deployments/abc-123", headers=auth(keys["read"])).status_code == 404
    )
    versions = client.get("/models/versions", headers=auth(keys["read"])).json()  # seed alias
    assert {v["version"] for v in versions} == {"1", "2", "3"}
    assert (
        client.post("/v1/models/rollback/taiwan", headers=auth(keys["deploy"])).status_code == 403
    )


def test_a_canary_splits_by_application_and_rolls_back(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    body = {"name": "taiwan", "version": "2", "strategy": "canary", "steps": [0.3, 1.0]}
    started = client.post("/v1/models/deploy", json=body, headers=auth(keys["deploy"]))
    assert started.status_code == 202 and started.json()["state"] == "pending"
    deployment_id = started.json()["deployment_id"]
    again = client.post("/v1/models/deploy", json=body, headers=auth(keys["deploy"]))
    assert again.status_code == 409
    follow_and_drive(client)
    shown = client.get(f"/v1/models/deployments/{deployment_id}", headers=auth(keys["read"]))
    assert shown.json()["state"] == "progressing" and shown.json()["traffic_share"] == 0.3
    served = {a: predict(client, keys, a)["model"]["version"] for a in map(str, range(400))}
    share = sum(v == "2" for v in served.values()) / len(served)
    assert 0.22 < share < 0.38  # 0.3 with 400 draws: 3.5 standard errors
    assert all(predict(client, keys, a)["model"]["version"] == served[a] for a in list(served)[:40])
    sessions = state_of(client).sessions
    with sessions() as session:
        logged = session.execute(
            select(DecisionRow.route, DecisionRow.model_version).where(
                DecisionRow.deployment_id == deployment_id
            )
        ).all()
    assert {(r, v) for r, v in logged} == {("stable", "1"), ("candidate", "2")}
    # pause, resume, and a manual rollback; the audit trail tells it in order
    paused = client.post(
        f"/v1/models/deployments/{deployment_id}/pause", headers=auth(keys["deploy"])
    )
    assert paused.json()["state"] == "paused"
    bad = client.post(f"/v1/models/deployments/{deployment_id}/pause", headers=auth(keys["deploy"]))
    assert bad.status_code == 409
    resumed = client.post(
        f"/v1/models/deployments/{deployment_id}/resume", headers=auth(keys["deploy"])
    )
    assert resumed.json()["state"] == "progressing"
    rolled = client.post(
        "/models/rollback/taiwan", json={"reason": "test"}, headers=auth(keys["rollback"])
    )
    assert rolled.status_code == 200 and rolled.json()["deployment"]["state"] == "rolled_back"
    follow_and_drive(client)
    assert {predict(client, keys, a)["model"]["version"] for a in map(str, range(60))} == {"1"}
    assert audit_actions(settings)[-5:] == [
        "deployment.start",
        "deployment.step",
        "deployment.pause",
        "deployment.resume",
        "deployment.rollback",
    ]


def test_an_immediate_deployment_promotes_and_a_rollback_goes_back(
    client: TestClient, keys: dict[str, str]
) -> None:
    body = {"name": "taiwan", "version": "2", "reason": "ship it"}
    started = client.post("/v1/models/promote", json=body, headers=auth(keys["promote"]))
    assert started.status_code == 202 and started.json()["strategy"] == "immediate"
    follow_and_drive(client)
    ctx = state_of(client).ctx
    assert ctx.registry.find_alias("taiwan", "production").version == "2"  # type: ignore[union-attr]
    assert predict(client, keys, "x")["model"]["version"] == "2"
    back = client.post(
        "/v1/models/rollback/taiwan", json={"reason": "regret"}, headers=auth(keys["rollback"])
    )
    assert back.status_code == 200
    follow_and_drive(client)
    assert ctx.registry.find_alias("taiwan", "production").version == "1"  # type: ignore[union-attr]
    assert predict(client, keys, "x")["model"]["version"] == "1"
    listed = client.get("/v1/models/deployments", headers=auth(keys["read"])).json()
    assert listed[0]["state"] == "rolled_back" and listed[0]["history"][-1]["actor"]


def test_a_shadow_scores_but_never_answers(client: TestClient, keys: dict[str, str]) -> None:
    without = [predict(client, keys, f"s{i}") for i in range(20)]
    body = {"name": "taiwan", "version": "2", "strategy": "shadow"}
    started = client.post("/v1/models/deploy", json=body, headers=auth(keys["deploy"]))
    deployment_id = started.json()["deployment_id"]
    follow_and_drive(client)
    with_shadow = [predict(client, keys, f"s{i}") for i in range(20)]

    def same(answer: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in answer.items() if k not in ("decision_id", "created_at")}

    assert [same(a) for a in with_shadow] == [same(a) for a in without]
    state = state_of(client)
    assert state.decisions.shadow is not None
    asyncio.run(state.decisions.shadow.flush())
    with state.sessions() as session:
        shadows = session.scalars(
            select(ShadowDecisionRow).where(ShadowDecisionRow.deployment_id == deployment_id)
        ).all()
    assert len(shadows) == 20 and {s.model_version for s in shadows} == {"2"}
    report = client.get(f"/v1/models/deployments/{deployment_id}", headers=auth(keys["read"]))
    shadow_report = report.json()["shadow_report"]
    assert shadow_report["n"] == 20 and shadow_report["agreement_rate"] == 1.0  # same bundle
    aborted = client.post(
        f"/v1/models/deployments/{deployment_id}/abort", headers=auth(keys["deploy"])
    )
    assert aborted.json()["state"] == "aborted"


def test_a_version_that_failed_its_gate_is_not_served(
    client: TestClient, keys: dict[str, str], settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    follow_and_drive(client)
    mlflow.MlflowClient(settings.tracking_uri).set_registered_model_alias(
        "taiwan", "production", "3"
    )
    follow_and_drive(client)
    assert predict(client, keys, "y")["model"]["version"] == "1"
    assert "refusing to serve taiwan v3" in caplog.text
    served = client.get("/v1/models", headers=auth(keys["read"])).json()
    assert served[0]["serving_version"] == "1"


DEPLOYMENT_SCHEMA = json.loads(
    (Path(__file__).parents[2] / "docs/events/deployment.v1.schema.json").read_text()
)


def test_every_deployment_change_is_an_event_with_its_audit_entry(
    client: TestClient, keys: dict[str, str]
) -> None:
    """Runs last: every deployment.* audit entry the tests above caused has its
    deployment.changed event, in the same order, carrying the state after the change; a
    direct alias move and a rollback to a named version have theirs without a deployment."""
    state = state_of(client)
    ctx = state.ctx
    promote_alias(
        ctx, state.sessions, "taiwan", "2", "production", force=False, reason="direct", actor="t"
    )
    rollback(ctx, state.sessions, "taiwan", "t", "back to one", to="1")
    with state.sessions() as session:
        audits = session.scalars(
            select(AuditRow)
            .where(
                AuditRow.action.like("deployment.%")
                | AuditRow.action.in_(["model.promote", "model.rollback"])
            )
            .order_by(AuditRow.id)
        ).all()
        rows = session.scalars(
            select(EventOutboxRow)
            .where(EventOutboxRow.event_type == "deployment.changed")
            .order_by(EventOutboxRow.id)
        ).all()
    documents = [json.loads(r.payload) for r in rows]
    validator = jsonschema_rs.validator_for(DEPLOYMENT_SCHEMA)
    for document in documents:
        assert not [e.message for e in validator.iter_errors(document)], document
    # one event per change, in the audit trail's order (a promote of staging is not production)
    first = next(i for i, a in enumerate(audits) if a.action.startswith("deployment."))
    expected = [
        a.action.removeprefix("deployment.").removeprefix("model.")
        for a in audits[first:]  # the training before the first deployment had events off
        if a.action != "model.promote" or a.details.get("alias") == "production"
    ]
    assert [d["data"]["action"] for d in documents] == expected
    assert len(documents) >= 10
    # the last event of each deployment carries its final state and who serves production
    listed = client.get("/v1/models/deployments?limit=100", headers=auth(keys["read"])).json()
    last = {d["data"]["deployment_id"]: d["data"] for d in documents}
    for deployment in listed:
        data = last[deployment["deployment_id"]]
        assert (data["state"], data["traffic_share"]) == (
            deployment["state"],
            deployment["traffic_share"],
        )
        serving = (
            data["candidate_version"] if data["state"] == "succeeded" else data["stable_version"]
        )
        assert data["production_version"] == serving
    direct, named = documents[-2]["data"], documents[-1]["data"]
    assert (direct["deployment_id"], direct["production_version"], direct["reason"]) == (
        None,
        "2",
        "direct",
    )
    assert (named["action"], named["stable_version"], named["production_version"]) == (
        "rollback",
        "2",
        "1",
    )
    assert ctx.registry.find_alias("taiwan", "production").version == "1"  # type: ignore[union-attr]
