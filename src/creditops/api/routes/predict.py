# No ``from __future__ import annotations`` here: the endpoint signatures use request
# models generated at runtime from each model's spec, and FastAPI must see the real classes.
"""Predict and explain: one pair of routes per served model, with its own request schema.

Unlike the other resources, these routes cannot be declared at import time: each model's
request body is generated from its spec when the app starts (so ``/docs`` shows its real
features), so :func:`model_routes` builds them per served model.
"""

import re
from collections.abc import Sequence
from typing import Annotated, Any, Union

import orjson
from fastapi import APIRouter, Body, Depends, Path, Request
from fastapi.openapi.models import Example
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter

from creditops.api.deps import DecisionsDep, PredictKey, explain_scope, get_decisions
from creditops.api.fastpath import FastRoute
from creditops.api.problems import ApiProblemError
from creditops.api.schemas import (
    BatchDecisionResponse,
    DecisionResponse,
    ExplainResponse,
    build_request_models,
)
from creditops.domain.access import Principal
from creditops.domain.windows import utc_text
from creditops.features.spec import Spec
from creditops.services.decisions import Application, DecisionResult


def json_response(payload: object) -> Response:
    """orjson straight to bytes: the payload is already plain JSON types."""
    return Response(orjson.dumps(payload), media_type="application/json")


def decision_payload(result: DecisionResult) -> dict[str, Any]:
    """The JSON of one decision (:class:`DecisionResponse`), built without pydantic on the
    hot path; a decline carries what an adverse-action notice needs."""
    reasons = result.reason_dicts
    model = {"name": result.model_name, "version": result.model_version}
    payload: dict[str, Any] = {
        "decision_id": result.decision_id,
        "application_id": result.application_id,
        "model": model,
        "pd": result.pd,
        "score": result.score,
        "decision": result.decision,
        "reasons": reasons,
        "policy_version": result.policy_version,
        "suspended": result.suspended,
        "adverse_action": None,
        "created_at": utc_text(result.created_at),
    }
    if result.decision == "decline":
        low, high = result.score_range
        payload["adverse_action"] = {
            "principal_reasons": reasons[:4],
            "score": result.score,
            "score_range": {"min": low, "max": high},
            "model": model,
            "policy_version": result.policy_version,
            "decision_date": result.created_at.date().isoformat(),
        }
    return payload


# What a client may send as X-Request-ID: it is logged with every decision of the request.
# Anything else (too long, other characters) is replaced by the first decision's id.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")


def request_id(request: Request) -> str | None:
    """The caller's X-Request-ID when it is a plain id of at most 64 characters."""
    value = request.headers.get("x-request-id")
    return value if value is not None and _REQUEST_ID.fullmatch(value) else None


def _applications(body: Any) -> list[Application]:
    items = body.applications if hasattr(body, "applications") else [body]
    return [Application(item.application_id, item.features.model_dump()) for item in items]


def default_model(configured: str | None, served: Sequence[str]) -> str | None:
    """The model behind the seed routes (``POST /predict``, ``/drift/...``):
    ``serve.default_model``, else the first served model."""
    return configured or (served[0] if served else None)


def _examples(features: dict[str, Any] | None) -> dict[str, Example]:
    """Request examples for /docs: one applicant, and a batch of two."""
    if features is None:
        return {}
    one = {"application_id": "app-0001", "features": features}
    two = {"application_id": "app-0002", "features": features}
    return {
        "applicant": Example(summary="One applicant (typical of the training data)", value=one),
        "batch": Example(summary="A batch of applicants", value={"applications": [one, two]}),
    }


def model_routes(
    name: str,
    spec: Spec,
    max_batch: int,
    *,
    seed_route: bool,
    example: dict[str, Any] | None = None,
) -> tuple[APIRouter, list[FastRoute]]:
    """POST /v1/models/{name}/predict and /explain with this model's own schema (and the seed
    route POST /predict for the default model), and their fast-path entries. ``example`` is
    an applicant's features, shown as the request example."""
    _, single_model, batch_model = build_request_models(name, spec, max_batch)
    examples = _examples(example)
    either = Union[single_model, batch_model]  # type: ignore[valid-type]  # noqa: UP007
    body_type = Annotated[either, Body(openapi_examples=examples)]
    one = {k: v for k, v in examples.items() if k == "applicant"}
    single_type = Annotated[single_model, Body(openapi_examples=one)]  # type: ignore[valid-type]

    async def respond(body: BaseModel, request: Request, principal: Principal) -> Response:
        results = await get_decisions(request).decide(
            name,
            _applications(body),
            request_id=request_id(request),
            key_id=principal.key_id,
        )
        payloads = [decision_payload(r) for r in results]
        if isinstance(body, batch_model):
            return json_response({"decisions": payloads})
        return json_response(payloads[0])

    async def predict(body: body_type, request: Request, principal: PredictKey) -> Response:
        return await respond(body, request, principal)

    async def explain(body: single_type, decisions: DecisionsDep) -> Response:
        return json_response(decisions.explain(name, body.features.model_dump()))  # type: ignore[attr-defined]

    router = APIRouter(tags=[f"model: {name}"])
    review = {
        "operationId": "submit_review",
        "parameters": {"decision_id": "$response.body#/decision_id"},
    }
    decided = {
        200: {
            "model": Union[DecisionResponse, BatchDecisionResponse],  # noqa: UP007
            "links": {"ReviewDecision": review},
        }
    }
    paths = {f"/v1/models/{name}/predict": (f"predict_{name}", f"Decide with model '{name}'")}
    if seed_route:
        paths["/predict"] = ("predict_default", f"Seed route: decide with '{name}' (default)")
    for path, (operation_id, summary) in paths.items():
        router.add_api_route(
            path,
            predict,
            methods=["POST"],
            responses=decided,  # type: ignore[arg-type]
            summary=summary + ": one applicant or a batch",
            operation_id=operation_id,
        )
    router.add_api_route(
        f"/v1/models/{name}/explain",
        explain,
        methods=["POST"],
        dependencies=[Depends(explain_scope)],
        responses={200: {"model": ExplainResponse}},
        summary=f"Every feature's contribution for one applicant ('{name}')",
        operation_id=f"explain_{name}",
    )
    adapter: TypeAdapter[Any] = TypeAdapter(either)
    fast = [
        FastRoute(route, adapter, respond)
        for route in router.routes
        if isinstance(route, APIRoute) and route.path in paths
    ]
    return router, fast


ModelName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


def _not_served(name: str) -> ApiProblemError:
    return ApiProblemError(
        404, "model_not_found", f"Model {name!r} is not served by this service.", field="name"
    )


async def predict_unknown(name: ModelName, _: PredictKey) -> Response:
    """A predict for a model this service does not serve (every served model has its own
    route, registered before this one)."""
    raise _not_served(name)


async def explain_unknown(name: ModelName) -> Response:
    raise _not_served(name)


def unknown_model_routes() -> APIRouter:
    """Predict and explain for any other model name: 404 problem+json naming the model
    (after the key check, so a caller without a key learns nothing), not a bare Not Found."""
    router = APIRouter(include_in_schema=False)
    router.add_api_route("/v1/models/{name}/predict", predict_unknown, methods=["POST"])
    router.add_api_route(
        "/v1/models/{name}/explain",
        explain_unknown,
        methods=["POST"],
        dependencies=[Depends(explain_scope)],
    )
    return router
