"""The hand-written predict path answers exactly as FastAPI does, and only where it should.

Two apps on the same home, one with ``serve.fast_path`` on (the default) and one with it off,
get the same requests: valid ones (which the fast path must serve itself) and every kind of
bad one (which it must hand to FastAPI). Status, content type and body must be identical,
apart from the fields that differ per decision (id, time, latency).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from creditops.api.app import create_app
from creditops.settings import Settings
from creditops.store.engine import create_db_engine
from tests.api.conftest import auth
from tests.api.test_api import applicant

pytestmark = pytest.mark.integration

PER_DECISION = {"decision_id", "created_at"}


@pytest.fixture(scope="module")
def pair(served_home: Path) -> Iterator[tuple[TestClient, TestClient]]:
    limits = {"max_batch": 50, "max_body_bytes": 200_000}
    fast = create_app(Settings(home=served_home, serve={**limits, "fast_path": True}))
    slow = create_app(Settings(home=served_home, serve={**limits, "fast_path": False}))
    assert fast.fast_path is not None and slow.fast_path is None
    with (
        TestClient(fast, raise_server_exceptions=False) as fast_client,
        TestClient(slow, raise_server_exceptions=False) as slow_client,
    ):
        yield fast_client, slow_client


def _comparable(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: _comparable(v) for k, v in body.items() if k not in PER_DECISION}
    if isinstance(body, list):
        return [_comparable(v) for v in body]
    return body


def _json(payload: object) -> bytes:
    return json.dumps(payload).encode()


VALID = {
    "single": ("/v1/models/taiwan/predict", _json(applicant(0))),
    "single-declined": ("/v1/models/taiwan/predict", _json(applicant(3))),
    "batch": (
        "/v1/models/taiwan/predict",
        _json({"applications": [applicant(i) for i in range(5)]}),
    ),
    "seed-route": ("/predict", _json(applicant(1))),
}

_nan = json.dumps(applicant(0)).replace('"limit_bal": 20000', '"limit_bal": NaN').encode()
INVALID: dict[str, tuple[str, bytes, dict[str, str]]] = {
    "invalid-json": ("/v1/models/taiwan/predict", b"{not json", {}),
    "empty-body": ("/v1/models/taiwan/predict", b"", {}),
    "nan": ("/v1/models/taiwan/predict", _nan, {}),
    "text-in-number": (
        "/v1/models/taiwan/predict",
        _json({**applicant(0), "features": {**applicant(0)["features"], "age": "old"}}),
        {},
    ),
    "extra-field": ("/v1/models/taiwan/predict", _json({**applicant(0), "x": 1}), {}),
    "missing-features": ("/v1/models/taiwan/predict", _json({"application_id": "a"}), {}),
    "batch-too-large": (
        "/v1/models/taiwan/predict",
        _json({"applications": [applicant(0)] * 51}),
        {},
    ),
    "text-content-type": (
        "/v1/models/taiwan/predict",
        _json(applicant(0)),
        {"content-type": "text/plain"},
    ),
    "unicode-escape": (
        "/v1/models/taiwan/predict",
        _json({**applicant(0), "application_id": "caf\u00e9-\ud83d"}),
        {},
    ),
    "query-string": ("/v1/models/taiwan/predict?x=1", _json(applicant(0)), {}),
    "too-large": (
        "/v1/models/taiwan/predict",
        _json({**applicant(0), "application_id": "x" * 250_000}),
        {},
    ),
}


@pytest.mark.parametrize("case", list(VALID), ids=list(VALID))
def test_valid_requests_are_served_by_the_fast_path_with_the_same_answer(
    pair: tuple[TestClient, TestClient], keys: dict[str, str], case: str
) -> None:
    fast, slow = pair
    path, body = VALID[case]
    headers = auth(keys["predict"]) | {"content-type": "application/json", "x-request-id": "r1"}
    served = fast.app.fast_path.served  # type: ignore[attr-defined]
    answers = [c.post(path, content=body, headers=headers) for c in (fast, slow)]
    assert fast.app.fast_path.served == served + 1  # type: ignore[attr-defined]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].headers["content-type"] == answers[1].headers["content-type"]
    assert _comparable(answers[0].json()) == _comparable(answers[1].json())


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_bad_requests_are_passed_to_fastapi_unchanged(
    pair: tuple[TestClient, TestClient], keys: dict[str, str], case: str
) -> None:
    fast, slow = pair
    path, body, extra = INVALID[case]
    headers = auth(keys["predict"]) | {"content-type": "application/json"} | extra
    served = fast.app.fast_path.served  # type: ignore[attr-defined]
    answers = [c.post(path, content=body, headers=headers) for c in (fast, slow)]
    assert fast.app.fast_path.served == served  # not answered by the fast path
    assert answers[0].status_code == answers[1].status_code
    assert answers[0].headers["content-type"] == answers[1].headers["content-type"]
    assert _comparable(answers[0].json()) == _comparable(answers[1].json())
    if case != "query-string":  # a query string is simply not the fast path's business
        assert answers[0].status_code >= 400


@pytest.mark.parametrize(
    ("key", "status"),
    [(None, 401), ("co_nope_wrong", 401), ("read", 403)],
    ids=["no-key", "wrong-key", "wrong-scope"],
)
def test_auth_failures_are_answered_by_fastapi(
    pair: tuple[TestClient, TestClient], keys: dict[str, str], key: str | None, status: int
) -> None:
    fast, slow = pair
    headers = {"content-type": "application/json"}
    if key is not None:
        headers |= auth(keys.get(key, key))
    passed = fast.app.fast_path.passed_on  # type: ignore[attr-defined]
    answers = [
        c.post("/v1/models/taiwan/predict", content=_json(applicant(0)), headers=headers)
        for c in (fast, slow)
    ]
    assert fast.app.fast_path.passed_on == passed + 1  # type: ignore[attr-defined]
    assert [a.status_code for a in answers] == [status, status]
    assert answers[0].json() == answers[1].json()
    assert answers[0].headers.get("www-authenticate") == answers[1].headers.get("www-authenticate")


def test_fast_path_logs_the_same_record_and_metrics(
    pair: tuple[TestClient, TestClient], keys: dict[str, str], served_home: Path
) -> None:
    fast, slow = pair
    headers = auth(keys["predict"]) | {"content-type": "application/json", "x-request-id": "rq"}
    ids = [
        c.post("/v1/models/taiwan/predict", content=_json(applicant(3)), headers=headers).json()[
            "decision_id"
        ]
        for c in (fast, slow)
    ]
    engine = create_db_engine(Settings(home=served_home).database)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT decision_id, pd, score, decision, reasons, inputs, request_id, api_key_id, "
            "route FROM decisions WHERE decision_id IN (?, ?)",
            tuple(ids),
        ).all()
    engine.dispose()
    by_id = {r[0]: r[1:] for r in rows}
    assert by_id[ids[0]] == by_id[ids[1]]
    assert by_id[ids[0]][5] == "rq"
    metrics = fast.get("/metrics").text
    served = [
        line
        for line in metrics.splitlines()
        if line.startswith("creditops_http_requests_total{")
        and 'route="/v1/models/taiwan/predict"' in line
        and 'status="200"' in line
    ]
    assert served and float(served[0].rsplit(" ", 1)[1]) >= 1, metrics


def test_errors_while_deciding_use_the_apps_handlers(
    served_home: Path, keys: dict[str, str]
) -> None:
    """A decision log that cannot take the records: same problem answer on both paths."""
    answers = []
    for fast_path in (True, False):
        app = create_app(Settings(home=served_home, serve={"fast_path": fast_path}))
        with TestClient(app, raise_server_exceptions=False) as client:
            app.state.api.decisions.decision_log.close()  # from now on every write is refused
            answers.append(
                client.post(
                    "/v1/models/taiwan/predict",
                    content=_json(applicant(0)),
                    headers=auth(keys["predict"]) | {"content-type": "application/json"},
                )
            )
    assert answers[0].status_code == answers[1].status_code >= 500
    assert answers[0].json() == answers[1].json()
    assert answers[0].headers["content-type"].startswith("application/problem+json")
