"""A/B tests, four-eyes promotion, history and decision traces through the API
(TestClient; the worker's part called in-process). The real-process acceptance is in
tests/e2e/test_experiments_e2e.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from creditops.api.app import create_app
from creditops.domain.access import SCOPES
from creditops.errors import ConflictError
from creditops.services.access import create_key
from creditops.services.audit import verify
from creditops.services.context import AppContext
from creditops.services.deployments import promote_alias
from creditops.settings import Settings
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.migrations_api import ensure_current
from tests.api.conftest import auth
from tests.api.test_deployments_api import follow_and_drive, predict, state_of
from tests.api.test_deployments_api import home as home


@pytest.fixture(scope="module")
def settings(home: Path) -> Settings:
    return Settings(
        home=home,
        serve={"reload_interval_s": 0},
        deploy={"four_eyes": True, "evaluate_interval_s": 0.1},
    )


@pytest.fixture(scope="module")
def keys(settings: Settings) -> dict[str, str]:
    ensure_current(settings.database)
    sessions = session_factory(create_db_engine(settings.database))
    wanted = {
        "alice": ["deploy"],
        "bob": ["promote"],
        "both": ["deploy", "promote"],
        "read": ["read"],
        "predict": ["predict"],
    }
    return {n: create_key(sessions, n, s, SCOPES, "test").key for n, s in wanted.items()}


@pytest.fixture(scope="module")
def client(settings: Settings, keys: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def test_ab_test_requests_are_checked(client: TestClient, keys: dict[str, str]) -> None:
    body = {"name": "taiwan", "treatment_version": "2"}
    assert (
        client.post("/v1/models/ab-test", json=body, headers=auth(keys["read"])).status_code == 403
    )
    cases = [
        ({**body, "metric": "happiness"}, 422, "metric"),
        ({**body, "split": 1.5}, 422, "split"),
        ({**body, "treatment_version": "99"}, 404, "99"),
        ({**body, "control_version": "2"}, 422, "production version"),
        ({**body, "metric": "expected_loss"}, 422, "exposure"),
        ({**body, "treatment_version": "3"}, 422, "failed its validation gate"),
    ]
    for request, status, text in cases:
        answer = client.post("/v1/models/ab-test", json=request, headers=auth(keys["alice"]))
        assert answer.status_code == status, (request, answer.text)
        assert text in answer.text
    bad = client.get(
        "/v1/models/taiwan/history", params={"at": "yesterday"}, headers=auth(keys["read"])
    )
    assert bad.status_code == 422 and "at" in bad.text
    far = client.get(
        "/v1/models/taiwan/history",
        params={"at": "0001-01-01T00:00:00+14:00"},
        headers=auth(keys["read"]),
    )
    assert far.status_code == 422


def test_four_eyes_a_second_person_approves(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    body = {"name": "taiwan", "version": "2", "strategy": "immediate", "reason": "better"}
    started = client.post("/v1/models/deploy", json=body, headers=auth(keys["both"]))
    assert started.status_code == 202 and started.json()["state"] == "awaiting_approval"
    deployment_id = started.json()["deployment_id"]
    follow_and_drive(client)  # nothing moves while it waits
    assert predict(client, keys, "x")["model"]["version"] == "1"
    own = client.post(f"/v1/models/deployments/{deployment_id}/approve", headers=auth(keys["both"]))
    assert own.status_code == 409 and "another key holder" in own.text, own.text
    not_allowed = client.post(
        f"/v1/models/deployments/{deployment_id}/approve", headers=auth(keys["alice"])
    )
    assert not_allowed.status_code == 403
    approved = client.post(
        f"/v1/models/deployments/{deployment_id}/approve",
        json={"reason": "reviewed the gate report"},
        headers=auth(keys["bob"]),
    )
    assert approved.status_code == 200 and approved.json()["state"] == "pending"
    follow_and_drive(client)
    decided = predict(client, keys, "x")
    assert decided["model"]["version"] == "2"
    # the direct alias move is refused while four-eyes is on
    ctx = AppContext(settings)
    with pytest.raises(ConflictError, match="four-eyes"):
        promote_alias(
            ctx, state_of(client).sessions, "taiwan", "1", "production",
            force=False, reason="", actor="cli:x",
        )  # fmt: skip
    # a decision is traced to its version and the records of how it got there
    trace = client.get(f"/v1/decisions/{decided['decision_id']}/trace", headers=auth(keys["read"]))
    assert trace.status_code == 200, trace.text
    facts = trace.json()
    assert facts["version"] == "2" and facts["serving_then"]["production"] == "2"
    assert "deployment.promote" in facts["serving_then"]["production_put_by"]
    assert verify(state_of(client).sessions)["ok"]


def test_four_eyes_applies_to_experiments_and_can_reject(
    client: TestClient, keys: dict[str, str]
) -> None:
    # production is v2 now (previous test); test v1 against it
    body = {"name": "taiwan", "treatment_version": "1", "metric": "approval_rate"}
    started = client.post("/v1/models/ab-test", json=body, headers=auth(keys["alice"]))
    assert started.status_code == 202 and started.json()["state"] == "awaiting_approval"
    experiment = started.json()["id"]
    listed = client.get("/models/ab-tests", headers=auth(keys["read"])).json()
    assert listed[0]["id"] == experiment and listed[0]["control_version"] == "2"
    rejected = client.post(
        f"/v1/models/deployments/{experiment}/reject",
        json={"reason": "not this quarter"},
        headers=auth(keys["bob"]),
    )
    assert rejected.json()["state"] == "aborted"
    shown = client.get(f"/v1/models/ab-tests/{experiment}", headers=auth(keys["read"])).json()
    assert shown["state"] == "aborted" and shown["history"][-1]["event"] == "reject"
