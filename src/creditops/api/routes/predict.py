# No ``from __future__ import annotations`` here: the endpoint signatures use request
# models generated at runtime from each model's spec, and FastAPI must see the real classes.
"""Predict and explain routes, registered per served model with its own request schema."""

import time
from typing import Any, Union

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from creditops.api.fastpath import FastRoute
from creditops.api.schemas import (
    BatchDecisionResponse,
    DecisionResponse,
    ExplainResponse,
    build_request_models,
)
from creditops.api.security import Principal
from creditops.api.state import ApiState
from creditops.services.serving import (
    Application,
    DecisionResult,
    ServingSlot,
    decide,
    explain,
)

# Batches at least this large are scored in a worker thread so the event loop stays free;
# a single applicant is cheaper to score inline than to hand to a thread.
THREAD_BATCH_ROWS = 16


def json_response(payload: object) -> Response:
    """orjson straight to bytes: the payload is already plain JSON types."""
    return Response(orjson.dumps(payload), media_type="application/json")


def decision_payload(result: DecisionResult) -> dict[str, Any]:
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
        "created_at": result.created_at.isoformat(),
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


async def run_decisions(
    state: ApiState,
    request: Request,
    slot: ServingSlot,
    applications: list[Application],
    principal: Principal,
) -> list[dict[str, Any]]:
    started = time.perf_counter()
    suspended = state.controls.is_suspended(slot.name)
    reasons = state.settings.serve.reasons_for
    if len(applications) >= THREAD_BATCH_ROWS:
        results = await run_in_threadpool(
            decide,
            slot,
            applications,
            reasons=reasons,
            suspended=suspended,
        )
    elif len(applications) == 1 and state.batcher is not None:
        one = await state.batcher.decide(slot, applications[0], suspended=suspended)
        results = [one]
    else:
        results = decide(slot, applications, reasons=reasons, suspended=suspended)
    latency_ms = (time.perf_counter() - started) * 1000.0
    request_id = request.headers.get("x-request-id") or results[0].decision_id
    await state.decision_log.write(
        [
            state.to_record(r, a.features, latency_ms, request_id, principal.key_id)
            for r, a in zip(results, applications, strict=True)
        ]
    )
    state.observe_decisions(results)
    return [decision_payload(r) for r in results]


def _applications(body: Any) -> list[Application]:
    items = body.applications if hasattr(body, "applications") else [body]
    return [
        Application(
            application_id=item.application_id,
            features=item.features.model_dump(),
        )
        for item in items
    ]


def add_model_routes(app: FastAPI, state: ApiState, slot: ServingSlot, *, seed_route: bool) -> None:
    """POST /v1/models/{name}/predict and /explain with this model's own schema."""
    spec = slot.model.spec
    _, single_model, batch_model = build_request_models(
        slot.name, spec, state.settings.serve.max_batch
    )
    predict_scope = Depends(state.auth.require("predict"))
    explain_scope = Depends(state.auth.require("explain"))
    router = APIRouter(tags=[f"model: {slot.name}"])
    name = slot.name
    body_type = Union[single_model, batch_model]  # type: ignore[valid-type]  # noqa: UP007

    async def respond(body: Any, request: Request, principal: Principal) -> Response:
        current = state.router.route(name)
        applications = _applications(body)
        payloads = await run_decisions(state, request, current, applications, principal)
        if isinstance(body, batch_model):
            return json_response({"decisions": payloads})
        return json_response(payloads[0])

    async def predict(
        body: body_type,
        request: Request,
        principal: Principal = predict_scope,
    ) -> Any:
        return await respond(body, request, principal)

    async def explain_route(
        body: single_model,  # type: ignore[valid-type]
        principal: Principal = explain_scope,
    ) -> Any:
        del principal
        current = state.router.route(name)
        result = explain(current, body.features.model_dump())  # type: ignore[attr-defined]
        result["model"] = {"name": current.name, "version": current.version}
        return json_response(result)

    responses: dict[int | str, dict[str, Any]] = {
        200: {"model": Union[DecisionResponse, BatchDecisionResponse]},  # noqa: UP007
    }
    router.add_api_route(
        f"/v1/models/{name}/predict",
        predict,
        methods=["POST"],
        responses=responses,
        summary=f"Decide on one applicant or a batch with model '{name}'",
        operation_id=f"predict_{name}",
    )
    router.add_api_route(
        f"/v1/models/{name}/explain",
        explain_route,
        methods=["POST"],
        responses={200: {"model": ExplainResponse}},
        summary=f"Every feature's contribution for one applicant ('{name}')",
        operation_id=f"explain_{name}",
    )
    paths = [f"/v1/models/{name}/predict"]
    if seed_route:
        paths.append("/predict")
        router.add_api_route(
            "/predict",
            predict,
            methods=["POST"],
            responses=responses,
            summary=f"Seed route: predict with the default model ('{name}')",
            operation_id="predict_default",
        )
    adapter: TypeAdapter[Any] = TypeAdapter(body_type)
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path in paths:
            state.fast_routes[route.path] = FastRoute(route, adapter, respond)
    app.include_router(router)
