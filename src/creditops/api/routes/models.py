"""Served models and their registered versions, and the kill switch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.concurrency import run_in_threadpool

from creditops.api.deps import AdminKey, ContextDep, DecisionsDep, MetricsDep, ReadScope
from creditops.api.metrics import ServiceMetrics
from creditops.api.schemas import (
    ModelControlResponse,
    ModelSummaryResponse,
    SuspendRequest,
    VersionResponse,
)
from creditops.domain.access import Principal
from creditops.domain.windows import utc_text
from creditops.services.decisions import DecisionService
from creditops.services.model_versions import gate_passed, registered_versions

ModelName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]

Switch = tuple[DecisionService, ServiceMetrics]

router = APIRouter(tags=["models"])


@router.get("/v1/models", operation_id="list_models", dependencies=[ReadScope])
async def list_models(decisions: DecisionsDep) -> list[ModelSummaryResponse]:
    """Served models, the version that serves, aliases and suspension state."""
    return [
        ModelSummaryResponse(
            name=m.name,
            serving_version=m.version,
            suspended=m.suspended,
            aliases=m.aliases,
            features=m.features,
        )
        for m in decisions.served_models()
    ]


@router.get("/v1/models/{name}/versions", operation_id="list_versions", dependencies=[ReadScope])
async def list_versions(
    name: ModelName, ctx: ContextDep, decisions: DecisionsDep
) -> list[VersionResponse]:
    """Every registered version of a model, its aliases and metrics."""
    versions = await run_in_threadpool(registered_versions, ctx, name)
    serving = decisions.serving_version(name)
    return [
        VersionResponse(
            name=v.name,
            version=v.version,
            aliases=list(v.aliases),
            created_at=utc_text(v.created_at),
            gate_passed=gate_passed(v),
            metrics=dict(v.metrics),
            tags=dict(v.tags),
            serving=v.version == serving,
        )
        for v in versions
    ]


async def _switch(
    name: str, suspended: bool, body: SuspendRequest | None, who: Principal, deps: Switch
) -> ModelControlResponse:
    decisions, metrics = deps
    reason = body.reason if body else ""
    result = await run_in_threadpool(decisions.suspend, name, suspended, reason, who.actor)
    metrics.suspended.labels(name).set(1 if suspended else 0)
    return ModelControlResponse(**result)


@router.post("/v1/models/{name}/suspend", operation_id="suspend_model")
async def suspend(
    name: ModelName,
    principal: AdminKey,
    decisions: DecisionsDep,
    metrics: MetricsDep,
    body: SuspendRequest | None = None,
) -> ModelControlResponse:
    """Kill switch: route every new decision of this model to review."""
    return await _switch(name, True, body, principal, (decisions, metrics))


@router.post("/v1/models/{name}/resume", operation_id="resume_model")
async def resume(
    name: ModelName,
    principal: AdminKey,
    decisions: DecisionsDep,
    metrics: MetricsDep,
    body: SuspendRequest | None = None,
) -> ModelControlResponse:
    """Resume automated decisioning."""
    return await _switch(name, False, body, principal, (decisions, metrics))
