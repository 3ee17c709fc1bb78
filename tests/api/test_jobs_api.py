"""Retraining requests and jobs through the API: scopes, unknown names, cancellation of a
queued job (no worker runs here, so jobs stay queued until cancelled)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import auth


def test_retraining_requests_and_jobs(client: TestClient, keys: dict[str, str]) -> None:
    admin, reader = auth(keys["admin"]), auth(keys["read"])
    body = {"model": "taiwan", "reason": "api test"}
    assert (
        client.post("/v1/models/retrain", json=body, headers=auth(keys["predict"])).status_code
        == 403
    )
    assert (
        client.post("/v1/models/retrain", json={"model": "nope"}, headers=admin).status_code == 404
    )
    first = client.post("/v1/models/retrain", json=body, headers=admin)
    assert first.status_code == 202 and first.json()["outcome"] == "job_queued"
    job_id = first.json()["job_id"]
    second = client.post("/models/retrain", json=body, headers=admin).json()  # the seed route
    assert second["outcome"] == "debounced" and job_id in second["detail"]
    job = client.get(f"/v1/jobs/{job_id}", headers=reader).json()
    assert job["state"] == "queued" and job["trigger"]["kind"] == "manual"
    assert job["trigger"]["evidence"]["requested_by"]
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=reader).status_code == 403
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel", headers=admin).json()
    assert cancelled["state"] == "cancelled"
    assert client.get("/v1/jobs/0000", headers=reader).status_code == 404
    triggers = client.get("/v1/retrain/triggers", params={"model": "taiwan"}, headers=reader).json()
    assert [t["outcome"] for t in triggers[:2]] == ["debounced", "job_queued"]
    # the cool-down counts from finished jobs only: a cancelled one leaves the way free
    third = client.post("/v1/models/retrain", json=body, headers=admin).json()
    assert third["outcome"] == "job_queued"
    client.post(f"/v1/jobs/{third['job_id']}/cancel", headers=admin)
