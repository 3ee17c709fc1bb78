"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from creditops.api.deps import DecisionsDep, MetricsDep, StateDep, metrics_access
from creditops.api.schemas import HealthResponse, ReadyResponse
from creditops.errors import CreditopsError

router = APIRouter(tags=["system"])


@router.get("/health", operation_id="health")
async def health() -> HealthResponse:
    """Alive: the process answers."""
    return HealthResponse(status="ok")


@router.get(
    "/ready",
    response_model=ReadyResponse,
    operation_id="ready",
    responses={503: {"model": ReadyResponse}},
)
async def ready(state: StateDep, decisions: DecisionsDep) -> JSONResponse:
    """Ready: models loaded and the database reachable."""
    models = {m.name: m.version for m in decisions.router.slots()}
    try:
        await run_in_threadpool(state.check_database)
        database = "ok"
    except CreditopsError as exc:
        database = f"unavailable: {exc.message}"
    ok = bool(models) and database == "ok"
    body = ReadyResponse(status="ready" if ok else "not ready", models=models, database=database)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    operation_id="metrics",
    dependencies=[Depends(metrics_access)],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(metrics: MetricsDep, decisions: DecisionsDep) -> Response:
    """Prometheus text exposition format."""
    metrics.log_queue_depth.set(decisions.log_queue_depth())
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
