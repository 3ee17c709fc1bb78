"""Monitoring through the API: drift of logged windows, stored reports, gauges, performance."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import DATA, auth

pytestmark = pytest.mark.integration


def applications(frame: pd.DataFrame, prefix: str) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(frame.to_dict("records")):
        features = {
            k: (int(v) if float(v).is_integer() else float(v))
            for k, v in row.items()
            if k not in ("id", "target", "_is_test")
        }
        out.append({"application_id": f"{prefix}-{i}", "features": features})
    return out


def send(client: TestClient, key: str, apps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    decisions = []
    for start in range(0, len(apps), 50):
        response = client.post(
            "/v1/models/taiwan/predict",
            json={"applications": apps[start : start + 50]},
            headers=auth(key),
        )
        assert response.status_code == 200, response.text
        decisions += response.json()["decisions"]
    return decisions


@pytest.fixture(scope="module")
def test_split() -> pd.DataFrame:
    frame = pd.read_csv(DATA / "taiwan_credit_card.csv")
    return frame[frame["_is_test"]].reset_index(drop=True)


def test_drift_reports_and_gauges(
    client: TestClient, keys: dict[str, str], test_split: pd.DataFrame
) -> None:
    admin = keys["admin"]
    start = datetime.now(UTC).isoformat()
    send(client, admin, applications(test_split.sample(600, random_state=1), "calm"))
    calm = client.post(
        "/v1/drift/data-drift", json={"model": "taiwan", "since": start}, headers=auth(admin)
    )
    assert calm.status_code == 200, calm.text
    calm_drift = calm.json()["data_drift"]
    assert calm_drift["level"] == "ok", [f for f in calm_drift["features"] if f["drifted"]]
    assert calm_drift["n_current"] >= 600

    time.sleep(0.01)
    shifted_start = datetime.now(UTC).isoformat()
    shifted = test_split.sample(600, random_state=2).copy()
    shifted["pay_0"] = np.minimum(shifted["pay_0"] + 2, 8)
    shifted["limit_bal"] = (shifted["limit_bal"] * 0.3).round()
    shifted["bill_amt1"] = shifted["bill_amt1"] * 3
    send(client, admin, applications(shifted, "shift"))
    check = client.post(
        "/v1/drift/check-and-retrain",
        json={"model": "taiwan", "since": shifted_start},
        headers=auth(admin),
    )
    assert check.status_code == 200, check.text
    body = check.json()
    drifted = {f["feature"] for f in body["results"]["data_drift"]["features"] if f["drifted"]}
    assert {"pay_0", "limit_bal"} <= drifted
    assert (
        body["results"]["prediction_drift"]["current_approval_rate"]
        < body["results"]["prediction_drift"]["reference_approval_rate"]
    )
    assert body["level"] in ("warning", "critical")
    if body["results"]["data_drift"]["level"] == "critical":
        assert body["should_retrain"] is True and body["reasons"]

    reports = client.get("/v1/drift/reports", params={"model": "taiwan"}, headers=auth(admin))
    assert reports.status_code == 200
    kinds = {r["kind"] for r in reports.json()}
    assert {"data_drift", "prediction_drift", "performance", "fairness", "check"} <= kinds
    one = reports.json()[0]["report_id"]
    detail = client.get(f"/v1/drift/reports/{one}", headers=auth(admin))
    assert detail.status_code == 200 and "result" in detail.json()
    assert client.get("/v1/drift/reports/nope", headers=auth(admin)).status_code == 404
    # scope: the predict-only key may not run checks
    assert (
        client.post(
            "/v1/drift/data-drift", json={"model": "taiwan"}, headers=auth(keys["predict"])
        ).status_code
        == 403
    )

    time.sleep(10.1)  # the collector caches stored results for 10 s
    metrics = client.get("/metrics").text
    assert 'creditops_drift_score{model="taiwan"}' in metrics
    assert 'creditops_feature_psi{feature="pay_0",model="taiwan"}' in metrics


def test_performance_drift_after_feedback(
    client: TestClient, keys: dict[str, str], test_split: pd.DataFrame
) -> None:
    admin = keys["admin"]
    sample = test_split.sample(320, random_state=5)
    decisions = send(client, admin, applications(sample.iloc[:300], "perf"))
    send(client, admin, applications(sample.iloc[300:], "perf-unlabelled"))  # no outcome
    # outcomes opposite to the model's view: the approved default, the declined repay
    outcomes = [
        {"decision_id": d["decision_id"], "defaulted": d["decision"] == "approve"}
        for d in decisions
    ]
    response = client.post("/v1/feedback", json={"outcomes": outcomes}, headers=auth(admin))
    assert response.status_code == 200 and response.json()["created"] == 300
    perf = client.post(
        "/v1/drift/model-performance-drift",
        json={"model": "taiwan", "window": 300},
        headers=auth(admin),
    )
    assert perf.status_code == 200, perf.text
    body = perf.json()
    assert body["n_labelled"] == 300 and body["level"] == "critical"
    assert body["current"]["auc"] < 0.5 and "auc" in body["breaches"]
    assert body["n_unlabelled"] >= 20


def test_fairness_analyze_and_bad_requests(
    client: TestClient, keys: dict[str, str], test_split: pd.DataFrame
) -> None:
    admin = keys["admin"]
    send(client, admin, applications(test_split.sample(200, random_state=9), "fair"))
    fair = client.post(
        "/v1/fairness/analyze", json={"model": "taiwan", "since": "1d"}, headers=auth(admin)
    )
    assert fair.status_code == 200, fair.text
    assert {a["attribute"] for a in fair.json()["attributes"]} == {"sex", "age", "marriage"}
    bad = client.post(
        "/v1/drift/data-drift", json={"model": "taiwan", "since": "yesterday"}, headers=auth(admin)
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "since"
    assert (
        client.post("/v1/drift/data-drift", json={"model": "nope"}, headers=auth(admin)).status_code
        == 404
    )
    empty = client.post(
        "/v1/drift/data-drift",
        json={"model": "taiwan", "since": "2020-01-01T00:00:00", "until": "2020-01-02T00:00:00"},
        headers=auth(admin),
    )
    assert empty.status_code == 404 and empty.json()["code"] == "not_found"
    test = client.post("/v1/alerts/test", json={"channel": "log"}, headers=auth(admin))
    assert test.status_code == 200 and test.json()[0]["ok"] is True
