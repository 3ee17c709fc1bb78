"""Regression tests of the hardening findings through the API (issue 11), on the shared
TestClient app (SQLite). Each fails on the code before the fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from creditops.settings import Settings
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.tables import DecisionRow
from tests.api.conftest import auth
from tests.api.test_api import applicant

OVERFLOWING_SINCE = ["999999d", "999999999999d", "²h", "0001-01-01T00:00:00"]
WINDOW_ROUTES = ["/v1/drift/data-drift", "/v1/drift/check-and-retrain", "/v1/fairness/analyze"]


def _problem(response: Any, status: int, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    fields = [e.get("field", "") for e in body.get("errors", [])]
    assert any(f.endswith(field) for f in fields), body
    return body


@pytest.mark.parametrize("route", WINDOW_ROUTES)
@pytest.mark.parametrize("since", OVERFLOWING_SINCE)
def test_windows_that_overflow_are_refused_with_the_field(
    client: TestClient, keys: dict[str, str], route: str, since: str
) -> None:
    response = client.post(
        route, json={"model": "taiwan", "since": since}, headers=auth(keys["admin"])
    )
    _problem(response, 422, "since")


@pytest.mark.parametrize("until", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_window_ends_at_the_edge_of_time_are_refused(
    client: TestClient, keys: dict[str, str], until: str
) -> None:
    body = {"model": "taiwan", "since": "24h", "until": until}
    response = client.post("/v1/drift/data-drift", json=body, headers=auth(keys["admin"]))
    _problem(response, 422, "until")


@pytest.mark.parametrize("route", ["/v1/reviews", "/v1/drift/reports"])
@pytest.mark.parametrize("offset", [2**63, 2**64, 10**10])
def test_paging_offsets_are_bounded(
    client: TestClient, keys: dict[str, str], route: str, offset: int
) -> None:
    response = client.get(route, params={"offset": offset}, headers=auth(keys["admin"]))
    _problem(response, 422, "offset")
    # the connection stays usable: the next request on it is answered
    assert client.get("/health").status_code == 200


def _logged_request_id(served_home: Path, decision_id: str) -> str:
    settings = Settings(home=served_home)
    with session_factory(create_db_engine(settings.database))() as session:
        row = session.scalars(
            select(DecisionRow).where(DecisionRow.decision_id == decision_id)
        ).one()
        return row.request_id


@pytest.mark.parametrize(
    ("header", "kept"),
    [("req-2026.12.03:0001", True), ("x" * 65, False), ("a b", False), ("é".encode() * 10, False)],
    ids=["plain", "too long", "space", "non-ascii"],
)
def test_request_ids_are_validated_and_never_fail_a_decision(
    client: TestClient, keys: dict[str, str], served_home: Path, header: str | bytes, kept: bool
) -> None:
    headers = {**auth(keys["predict"]), "X-Request-ID": header}
    response = client.post("/v1/models/taiwan/predict", json=applicant(3), headers=headers)
    assert response.status_code == 200, response.text
    decision_id = response.json()["decision_id"]
    assert _logged_request_id(served_home, decision_id) == (header if kept else decision_id)


@pytest.mark.parametrize("label", ["yes", "true", 1, 0, None], ids=str)
def test_outcome_labels_must_be_json_booleans(
    client: TestClient, keys: dict[str, str], label: object
) -> None:
    body = {"outcomes": [{"application_id": "app-0", "defaulted": label}]}
    response = client.post("/v1/feedback", json=body, headers=auth(keys["admin"]))
    _problem(response, 422, "defaulted")


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    yield b'{"application_id": "big", "features": {"x": "'
    sent = 0
    while sent < total:
        yield b"a" * size
        sent += size
    yield b'"}}'


def test_oversized_chunked_bodies_get_413(client: TestClient, keys: dict[str, str]) -> None:
    # the shared app's limit is 200,000 bytes; no Content-Length: the body is chunked
    headers = {**auth(keys["predict"]), "Content-Type": "application/json"}
    for route in ("/v1/models/taiwan/predict", "/v1/feedback"):
        response = client.post(route, content=_chunks(400_000), headers=headers)
        assert response.status_code == 413, (route, response.text)
        assert response.json()["code"] == "payload_too_large"
    small = client.post(
        "/v1/models/taiwan/predict",
        content=iter([__import__("json").dumps(applicant(1)).encode()]),
        headers=headers,
    )
    assert small.status_code == 200, small.text


def test_keys_revoked_through_the_api_stop_working_at_once(
    client: TestClient, keys: dict[str, str]
) -> None:
    admin = auth(keys["admin"])
    made = client.post("/v1/keys", json={"name": "short-lived", "scopes": ["read"]}, headers=admin)
    assert made.status_code == 201, made.text
    key, key_id = made.json()["key"], made.json()["id"]
    assert client.get("/v1/models", headers=auth(key)).status_code == 200  # cached now
    listed = {k["id"]: k for k in client.get("/v1/keys", headers=admin).json()}
    assert listed[key_id]["name"] == "short-lived" and "key" not in listed[key_id]
    assert client.delete(f"/v1/keys/{key_id}", headers=admin).status_code == 204
    refused = client.get("/v1/models", headers=auth(key))
    assert refused.status_code == 401  # not after the 5 s cache: at once
    assert client.delete(f"/v1/keys/{key_id}", headers=admin).status_code == 404
    assert client.get("/v1/keys", headers=auth(keys["read"])).status_code == 403
    bad = client.post("/v1/keys", json={"name": "x", "scopes": ["root"]}, headers=admin)
    _problem(bad, 422, "scopes")


def test_driver_messages_never_reach_the_client() -> None:
    """A failed group commit carries the driver's error text (the finding: PostgreSQL's
    VARCHAR(64) error came back in the problem detail); the client gets a fixed text."""
    from fastapi import FastAPI

    from creditops.api.problems import install_problem_handlers
    from creditops.store.decision_log import DecisionLogError

    app = FastAPI()
    install_problem_handlers(app)
    driver = (
        "Decision records were not stored: StringDataRightTruncation: value too long for "
        "type character varying(64)"
    )

    @app.get("/boom")
    async def boom() -> None:
        raise DecisionLogError(driver, transient=False)

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/boom")
    assert answer.status_code == 500 and answer.json()["code"] == "decision_log_failed"
    text = answer.text
    assert "varying" not in text and "StringData" not in text and "errors" not in answer.json()
