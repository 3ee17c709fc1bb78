"""The decision service through TestClient: contracts, bad input, auth, metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from creditops.services.context import AppContext
from creditops.services.model_versions import load_model
from creditops.services.serving import load_router
from creditops.settings import Settings
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.repositories import DecisionRepository
from tests.api.conftest import DATA, auth

pytestmark = pytest.mark.integration


def applicant(i: int = 0) -> dict[str, Any]:
    row = pd.read_csv(DATA / "taiwan_credit_card.csv", nrows=i + 1).iloc[i]
    features = {
        k: (int(v) if float(v).is_integer() else float(v))
        for k, v in row.items()
        if k not in ("id", "target", "_is_test")
    }
    return {"application_id": f"app-{i}", "features": features}


def decision_count(home: Path) -> int:
    settings = Settings(home=home)
    with session_factory(create_db_engine(settings.database))() as session:
        return DecisionRepository(session).count()


def test_predict_single_contract(client: TestClient, keys: dict[str, str]) -> None:
    response = client.post(
        "/v1/models/taiwan/predict", json=applicant(0), headers=auth(keys["predict"])
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["application_id"] == "app-0"
    assert body["model"] == {"name": "taiwan", "version": "1"}
    assert 0 < body["pd"] < 1 and 300 <= body["score"] <= 850
    assert body["decision"] == "decline"  # applicant 0 has a 2-month delay
    assert 1 <= len(body["reasons"]) <= 4
    assert body["reasons"][0]["code"] == "DLQ01" and body["reasons"][0]["feature"] == "pay_0"
    adverse = body["adverse_action"]
    assert adverse["principal_reasons"] == body["reasons"]
    assert adverse["score_range"] == {"min": 300.0, "max": 850.0}
    assert adverse["decision_date"] == body["created_at"][:10]


def test_batch_and_seed_route(client: TestClient, keys: dict[str, str]) -> None:
    batch = {"applications": [applicant(i) for i in range(5)]}
    response = client.post("/v1/models/taiwan/predict", json=batch, headers=auth(keys["predict"]))
    assert response.status_code == 200, response.text
    decisions = response.json()["decisions"]
    assert [d["application_id"] for d in decisions] == [f"app-{i}" for i in range(5)]
    assert len({d["decision_id"] for d in decisions}) == 5
    single = client.post("/predict", json=applicant(1), headers=auth(keys["predict"]))
    assert single.status_code == 200
    assert single.json()["pd"] == pytest.approx(decisions[1]["pd"], abs=0)


def test_openapi_shows_real_feature_names(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "pay_0" in schemas["TaiwanFeatures"]["properties"]
    assert "/v1/models/taiwan/predict" in spec["paths"]


def _bad(**overrides: Any) -> dict[str, Any]:
    body = applicant(2)
    body["features"].update(overrides)
    return body


@pytest.mark.parametrize(
    ("payload", "status", "code", "field"),
    [
        (_bad(pay_0="two"), 422, "validation_error", "features.pay_0"),
        (_bad(limit_bal=None) | {"extra": 1}, 422, "validation_error", "extra"),
        ({"application_id": "x", "features": {"limit_bal": 1}}, 422, "validation_error", "pay_0"),
        (_bad(unknown_feature=3), 422, "validation_error", "unknown_feature"),
        (_bad(education=[1]), 422, "validation_error", "education"),
        ({"applications": []}, 422, "validation_error", "applications"),
        ({"applications": [applicant(0)] * 51}, 422, "validation_error", "applications"),
        ({}, 422, "validation_error", "application_id"),
    ],
    ids=[
        "string-in-numeric",
        "extra-field",
        "missing-fields",
        "unknown-feature",
        "list-in-categorical",
        "empty-batch",
        "batch-over-max",
        "empty-object",
    ],
)
def test_bad_input_is_4xx_with_field(
    client: TestClient,
    keys: dict[str, str],
    served_home: Path,
    payload: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    before = decision_count(served_home)
    response = client.post("/v1/models/taiwan/predict", json=payload, headers=auth(keys["predict"]))
    assert response.status_code == status, response.text
    body = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert body["code"] == code
    assert any(field in e["field"] for e in body["errors"]), body
    assert "Traceback" not in response.text
    assert decision_count(served_home) == before  # a rejected request logs no decision


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"", 422, "validation_error"),
        (b"{not json", 400, "invalid_json"),
        (
            json.dumps(applicant(0)).replace('"limit_bal": 20000', '"limit_bal": NaN').encode(),
            422,
            "validation_error",
        ),
        (
            json.dumps(applicant(0))
            .replace('"limit_bal": 20000', '"limit_bal": Infinity')
            .encode(),
            422,
            "validation_error",
        ),
        (
            b'{"application_id": "x", "features": ' + b"[1]" * 100_000 + b"}",
            413,
            "payload_too_large",
        ),
    ],
    ids=["empty-body", "invalid-json", "nan", "infinity", "too-large"],
)
def test_raw_bodies(
    client: TestClient, keys: dict[str, str], raw: bytes, status: int, code: str
) -> None:
    response = client.post(
        "/v1/models/taiwan/predict",
        content=raw,
        headers=auth(keys["predict"]) | {"content-type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def test_unknown_model_and_auth(client: TestClient, keys: dict[str, str]) -> None:
    assert (
        client.post(
            "/v1/models/nope/predict", json=applicant(0), headers=auth(keys["predict"])
        ).status_code
        == 404
    )
    assert client.post("/v1/models/taiwan/predict", json=applicant(0)).status_code == 401
    wrong = client.post("/v1/models/taiwan/predict", json=applicant(0), headers=auth("co_x_y"))
    assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"
    forbidden = client.post(
        "/v1/models/taiwan/explain", json=applicant(0), headers=auth(keys["predict"])
    )
    assert forbidden.status_code == 403 and "explain" in forbidden.json()["detail"]
    via_header = client.post(
        "/v1/models/taiwan/predict", json=applicant(0), headers={"X-API-Key": keys["predict"]}
    )
    assert via_header.status_code == 200
    assert client.post("/v1/models/taiwan/suspend", headers=auth(keys["read"])).status_code == 403
    assert client.get("/health").status_code == 200
    assert client.get("/ready").json()["status"] == "ready"


def test_explain_sums_to_raw_score(client: TestClient, keys: dict[str, str]) -> None:
    response = client.post(
        "/v1/models/taiwan/explain", json=applicant(3), headers=auth(keys["read"])
    )
    assert response.status_code == 200, response.text
    body = response.json()
    total = body["base_value"] + sum(c["contribution"] for c in body["contributions"])
    assert total == pytest.approx(body["raw_score"], abs=1e-9)
    assert {c["feature"] for c in body["contributions"]} >= {"pay_0", "limit_bal"}


def test_loading_for_service_builds_the_treeshap_tables(served_home: Path) -> None:
    """The first decision must not pay for building the tables (about 30 ms)."""
    ctx = AppContext(Settings(home=served_home))
    model = load_router(ctx, ["taiwan"]).route("taiwan").model
    assert "_treeshap" in vars(model) and model._treeshap is not None
    assert "_treeshap" not in vars(load_model(ctx, "taiwan", "production").model)


def test_metrics_are_exported(client: TestClient, keys: dict[str, str]) -> None:
    client.post("/v1/models/taiwan/predict", json=applicant(4), headers=auth(keys["predict"]))
    text = client.get("/metrics").text
    for name in (
        "creditops_http_requests_total",
        "creditops_http_request_duration_seconds_bucket",
        "creditops_predictions_total",
        "creditops_pd_bucket",
        "creditops_score_points_bucket",
        "creditops_approval_rate",
        "creditops_decision_log_commit_duration_seconds_bucket",
        "creditops_decision_log_queue_depth",
        "creditops_model_info",
        "creditops_errors_total",
    ):
        assert name in text, name
    assert 'creditops_model_info{bundle_sha256="' in text


def test_models_endpoints(client: TestClient, keys: dict[str, str]) -> None:
    models = client.get("/v1/models", headers=auth(keys["read"])).json()
    assert models[0]["name"] == "taiwan" and models[0]["serving_version"] == "1"
    versions = client.get("/v1/models/taiwan/versions", headers=auth(keys["read"])).json()
    assert versions[0]["serving"] is True and "auc" in versions[0]["metrics"]
    assert client.get("/v1/models/nope/versions", headers=auth(keys["read"])).status_code == 404


def test_alias_move_swaps_the_served_version(
    client: TestClient, keys: dict[str, str], served_home: Path, tmp_path: Path
) -> None:
    """Runs last in this file: it moves production to a second version."""
    from creditops.api.deps import ApiState
    from creditops.registry.records import RegistrationRequest
    from creditops.services.context import AppContext

    ctx = AppContext(Settings(home=served_home))
    bundle = ctx.registry.download_bundle("taiwan", "1", tmp_path)
    info = ctx.registry.get_version("taiwan", "1")
    v2 = ctx.registry.register(
        RegistrationRequest(
            name="taiwan",
            bundle_path=bundle,
            bundle_sha256=info.tags["bundle_sha256"],
            params={},
            metrics=info.metrics,
            tags={"gate_passed": "true"},
            artifacts={},
        )
    )
    ctx.registry.set_alias("taiwan", "production", v2.version)
    state: ApiState = client.app.state.api  # type: ignore[attr-defined]
    assert state.follower is not None
    changes = state.follower.refresh()
    assert changes == [f"taiwan: serving v{v2.version} (was serving v1)"]
    response = client.post(
        "/v1/models/taiwan/predict", json=applicant(0), headers=auth(keys["predict"])
    )
    assert response.json()["model"]["version"] == v2.version
    assert state.follower.refresh() == []


def test_key_use_is_recorded_and_listed(
    client: TestClient, served_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    from typer.testing import CliRunner

    from creditops.cli import app as cli_app
    from creditops.domain.access import SCOPES
    from creditops.services.access import create_key

    settings = Settings(home=served_home)
    sessions = session_factory(create_db_engine(settings.database))
    made = create_key(sessions, "fresh", ["predict"], SCOPES, "test")
    monkeypatch.setenv("CREDITOPS_HOME", str(served_home))
    runner = CliRunner()

    def listed() -> dict[str, Any]:
        result = runner.invoke(cli_app, ["keys", "list", "--json"])
        assert result.exit_code == 0, result.output
        return next(k for k in json.loads(result.stdout) if k["name"] == "fresh")

    assert listed()["last_used_at"] is None
    before = datetime.now(UTC) - timedelta(seconds=1)
    answer = client.post("/v1/models/taiwan/predict", json=applicant(0), headers=auth(made.key))
    assert answer.status_code == 200
    used = datetime.fromisoformat(listed()["last_used_at"])
    assert before <= used <= datetime.now(UTC)
    table = runner.invoke(cli_app, ["keys", "list"])
    assert table.exit_code == 0 and "last used" in table.stdout
