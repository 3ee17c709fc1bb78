"""The documented API is the served one: /docs and /redoc without a CDN, the key schemes,
error answers whose documented shape is what the service sends, a predict example that
decides, unknown models named in a 404, the seed documents' drift paths, route labels."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from creditops.api.openapi import ASSETS, STATIC
from creditops.api.problems import Problem
from tests.api.conftest import auth
from tests.api.test_api import applicant

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def problem_of(response: Any) -> Problem:
    """The body of an error answer, checked against the documented shape."""
    assert response.headers["content-type"].startswith(PROBLEM), response.text
    body = response.json()
    problem = Problem.model_validate(body)  # extra="forbid": no undocumented key
    assert problem.status == response.status_code
    assert body["type"].endswith("/" + body["code"])
    return problem


# -- the pages ----------------------------------------------------------------------------
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_pages_load_nothing_from_outside(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in html.headers["content-security-policy"]
    assert not re.findall(r"(?:src|href)=[\"']?(?:https?:)?//", html.text), html.text
    for asset in re.findall(r"/static/docs/([\w.\-]+)", html.text):
        assert asset in ASSETS
        served = client.get(f"/static/docs/{asset}")
        assert served.status_code == 200
        assert served.content == (STATIC / ASSETS[asset][0]).read_bytes()
        assert served.headers["content-type"].startswith(ASSETS[asset][1])


def test_only_the_listed_assets_are_served(client: TestClient) -> None:
    for asset in ("LICENSE", "..%2F..%2Fapp.py", "README.md", "nope.js"):
        answer = client.get(f"/static/docs/{asset}")
        assert answer.status_code == 404
        problem_of(answer)


def test_the_vendored_files_keep_their_licences() -> None:
    for folder in ("swagger-ui", "redoc"):
        assert (STATIC / folder / "LICENSE").stat().st_size > 500
    notes = (STATIC / "README.md").read_text()
    assert "swagger-ui-dist` 5.35.0" in notes
    assert "`redoc` 2.5.4" in notes


# -- security schemes and error answers ------------------------------------------------
def test_every_keyed_operation_declares_the_key_schemes(
    client: TestClient, document: dict[str, Any]
) -> None:
    """Called without a key, an operation answers 401 exactly when it is documented with a
    security requirement and a 401 answer."""
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"]["name"] == "X-API-Key"
    checked = 0
    for path, method, operation in operations(document):
        url = re.sub(r"\{[^}]+\}", "x1", path)
        answer = client.request(method, url, json={})
        secured = bool(operation.get("security"))
        assert (answer.status_code == 401) == secured, (method, path, answer.status_code)
        if secured:
            assert {"401", "403"} <= set(operation["responses"])
            assert "Needs an API key with scope" in operation["description"]
            assert answer.headers["www-authenticate"] == "Bearer"
            problem_of(answer)
        checked += 1
    assert checked > 40


def test_documented_error_shape_is_the_real_one(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["Problem"]["additionalProperties"] is False
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "code", "detail"}
    assert "HTTPValidationError" not in schemas  # FastAPI's shape, never sent
    for path, method, operation in operations(document):
        for status, answer in operation["responses"].items():
            if status.startswith("4"):
                content = answer["content"]
                assert list(content) == [PROBLEM], (method, path, status)
                assert content[PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}
                Problem.model_validate(content[PROBLEM]["example"])


def test_real_error_answers_match_the_documented_shape(
    client: TestClient, keys: dict[str, str], document: dict[str, Any]
) -> None:
    predict = "/v1/models/taiwan/predict"
    documented = document["paths"][predict]["post"]["responses"]
    bad = applicant(1)
    del bad["features"]["pay_0"]
    answers = {
        400: client.post(
            predict,
            content=b"{not json",
            headers={**auth(keys["predict"]), "Content-Type": "application/json"},
        ),
        401: client.post(predict, json=applicant(1)),
        403: client.post(predict, json=applicant(1), headers=auth(keys["read"])),
        413: client.post(
            predict,
            content=b" " * 300_000,
            headers={**auth(keys["predict"]), "Content-Type": "application/json"},
        ),
        422: client.post(predict, json=bad, headers=auth(keys["predict"])),
    }
    for status, answer in answers.items():
        assert answer.status_code == status, answer.text
        problem = problem_of(answer)
        assert str(status) in documented
        assert documented[str(status)]["content"][PROBLEM]["example"]["code"] == problem.code
    errors = problem_of(answers[422]).errors
    assert errors is not None
    assert (errors[0].field, errors[0].type) == ("features.pay_0", "missing")
    # 404 and 409 on the operations that document them
    missing = client.get("/v1/models/acme/versions", headers=auth(keys["admin"]))
    assert missing.status_code == 404
    assert "404" in document["paths"]["/v1/models/{name}/versions"]["get"]["responses"]
    problem_of(missing)
    conflict = client.post(
        "/v1/models/rollback/taiwan", json={"to": "1"}, headers=auth(keys["admin"])
    )
    assert conflict.status_code == 409, conflict.text
    assert "409" in document["paths"]["/v1/models/rollback/{name}"]["post"]["responses"]
    assert problem_of(conflict).code == "conflict"


# -- the predict example ------------------------------------------------------------------
def test_the_predict_example_is_a_real_applicant_that_decides(
    client: TestClient, keys: dict[str, str], document: dict[str, Any]
) -> None:
    body = document["paths"]["/v1/models/taiwan/predict"]["post"]["requestBody"]
    examples = body["content"]["application/json"]["examples"]
    applicant_example = examples["applicant"]["value"]
    features = applicant_example["features"]
    assert "string" not in features.values()
    bundle = client.app.state.api.decisions.router.stable("taiwan").model.bundle  # type: ignore[attr-defined]
    profile = bundle.reference_profile["features"]
    assert set(features) == set(bundle.spec["features"])
    for name, value in features.items():
        stats = profile[name]
        if stats["type"] == "numeric":
            assert stats["min"] <= value <= stats["max"], name
            assert value == stats["quantiles"][50] or abs(value - stats["quantiles"][50]) <= 1
        else:
            assert str(value) in stats["categories"], name
    for name, example in examples.items():
        answer = client.post(
            "/v1/models/taiwan/predict", json=example["value"], headers=auth(keys["predict"])
        )
        assert answer.status_code == 200, (name, answer.text)
    explain = document["paths"]["/v1/models/taiwan/explain"]["post"]["requestBody"]
    assert explain["content"]["application/json"]["examples"]["applicant"]["value"] == (
        applicant_example
    )


# -- unknown models -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/models/acme/predict", {"application_id": "a", "features": {}}),
        ("POST", "/v1/models/acme/explain", {}),
        ("GET", "/v1/models/acme/versions", None),
        ("POST", "/v1/models/acme/suspend", None),
        ("POST", "/v1/models/rollback/acme", None),
        ("POST", "/models/retrain", {"model": "acme"}),
        ("POST", "/v1/drift/data-drift", {"model": "acme"}),
        ("POST", "/drift/model-performance-drift", {"model": "acme"}),
        ("POST", "/v1/fairness/analyze", {"model": "acme"}),
        ("GET", "/v1/models/acme/history?at=2026-12-01T00:00:00Z", None),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_an_unknown_model_is_named_in_a_404(
    client: TestClient, keys: dict[str, str], method: str, path: str, body: Any
) -> None:
    answer = client.request(method, path, json=body, headers=auth(keys["admin"]))
    assert answer.status_code == 404, answer.text
    problem = problem_of(answer)
    assert problem.code == "model_not_found"
    assert "'acme'" in problem.detail


def test_an_unmatched_path_is_a_problem_too(client: TestClient) -> None:
    answer = client.get("/v2/nothing/here")
    assert answer.status_code == 404
    assert problem_of(answer).code == "not_found"


# -- the seed documents' drift paths ---------------------------------------------------
SEED_ALIASES = {
    "/drift/data-drift": "data_drift",
    "/drift/model-performance-drift": "performance_drift",
    "/drift/check-and-retrain": "check_and_retrain",
    "/drift/test-email": "test_email",
}


@pytest.mark.parametrize("path", list(SEED_ALIASES))
def test_seed_drift_paths_answer_like_v1(
    client: TestClient, keys: dict[str, str], document: dict[str, Any], path: str
) -> None:
    # an empty window (from now on): nothing is judged, no retraining is queued
    window = {"since": datetime.now(UTC).isoformat()} if "performance" not in path else {}
    body = None if path.endswith("test-email") else window
    seed = client.post(path, json=body, headers=auth(keys["admin"]))
    named = None if body is None else {"model": "taiwan", **window}
    v1 = client.post("/v1" + path, json=named, headers=auth(keys["admin"]))
    assert seed.status_code == v1.status_code, (seed.text, v1.text)
    if seed.status_code == 200:
        assert set(seed.json()) == set(v1.json())
        if isinstance(seed.json(), dict) and "model" in seed.json():
            assert seed.json()["model"] == "taiwan"  # the default model
    else:  # test-email without an e-mail channel: the same refusal
        assert problem_of(seed).code == problem_of(v1).code
    # the same scope
    assert client.post(path, json=body).status_code == 401
    assert client.post(path, json=body, headers=auth(keys["predict"])).status_code == 403
    # documented as an alias of the /v1 route, with the same answer
    operation = document["paths"][path]["post"]
    original = document["paths"]["/v1" + path]["post"]
    assert operation["operationId"] == SEED_ALIASES[path] + "_seed"
    assert f"Alias of `POST /v1{path}`" in operation["description"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"].get(
        "$ref"
    ) == original["responses"]["200"]["content"]["application/json"]["schema"].get("$ref")


def test_seed_drift_paths_leave_model_optional(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for path in ("/drift/data-drift", "/drift/model-performance-drift"):
        ref = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        schema = schemas[ref["schema"]["$ref"].rsplit("/", 1)[-1]]
        assert "model" in schema["properties"]
        assert "model" not in schema.get("required", [])
    assert "model" in schemas["WindowRequest"]["required"]


# -- request metrics ----------------------------------------------------------------------
def _requests_by_route(client: TestClient) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("creditops_http_requests_total{"):
            route = re.search(r'route="([^"]*)"', line)
            assert route is not None
            counts[route.group(1)] = counts.get(route.group(1), 0) + float(line.split()[-1])
    return counts


def test_the_docs_have_their_own_route_labels(client: TestClient) -> None:
    before = _requests_by_route(client)
    for path in ("/docs", "/redoc", "/openapi.json", "/static/docs/swagger-ui.css"):
        assert client.get(path).status_code == 200
    after = _requests_by_route(client)
    assert after.get("unmatched", 0) == before.get("unmatched", 0)
    for route in ("/docs", "/redoc", "/openapi.json", "/static/docs/{asset}"):
        assert after[route] == before.get(route, 0) + 1, route
    client.get("/no/such/path")
    assert _requests_by_route(client)["unmatched"] == after.get("unmatched", 0) + 1
