"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from creditops.api.schemas import HealthResponse, ReadyResponse
from creditops.api.state import ApiState
from creditops.errors import CreditopsError
from creditops.store.engine import check_database


def add_system_routes(app: FastAPI, state: ApiState) -> None:
    router = APIRouter(tags=["system"])

    @router.get("/health", response_model=HealthResponse, operation_id="health")
    async def health() -> HealthResponse:
        """Alive: the process answers."""
        return HealthResponse(status="ok")

    @router.get(
        "/ready",
        response_model=ReadyResponse,
        operation_id="ready",
        responses={503: {"model": ReadyResponse}},
    )
    async def ready() -> JSONResponse:
        """Ready: models loaded and the database reachable."""
        models = {s.name: s.version for s in state.router.slots()}
        try:
            await run_in_threadpool(check_database, state.engine)
            database = "ok"
        except CreditopsError as exc:
            database = f"unavailable: {exc.message}"
        ok = bool(models) and database == "ok"
        body = ReadyResponse(
            status="ready" if ok else "not ready", models=models, database=database
        )
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    metrics_deps = (
        [] if state.settings.serve.metrics_public else [Depends(state.auth.require("monitor"))]
    )

    @router.get(
        "/metrics",
        operation_id="metrics",
        dependencies=metrics_deps,
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def metrics(_: Request) -> Response:
        """Prometheus text exposition format."""
        state.metrics.log_queue_depth.set(state.decision_log.queue_depth())
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    app.include_router(router)
