"""Deployments, promotion, rollback and the versions of every model (scopes deploy,
promote, rollback and read); each route also answers on the seed documents' un-prefixed
path (``/models/deploy`` ...), as a documented alias."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from creditops.api.deps import (
    ContextDep,
    Offset,
    ReadScope,
    SessionsDep,
    SettingsDep,
    StateDep,
    scope,
)
from creditops.domain.access import Principal
from creditops.services import deployments
from creditops.services.model_versions import list_models

deploy_scope = scope("deploy")
promote_scope = scope("promote")
rollback_scope = scope("rollback")
DeployKey = Annotated[Principal, Depends(deploy_scope)]
PromoteKey = Annotated[Principal, Depends(promote_scope)]
RollbackKey = Annotated[Principal, Depends(rollback_scope)]

ModelName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
DeploymentId = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[0-9a-f-]+$")]
NameField = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
VersionField = Field(min_length=1, max_length=16, pattern=r"^[0-9]+$")
Strategy = Literal["immediate", "canary", "blue_green", "shadow", "rolling"]

router = APIRouter(tags=["deployments"])


class GateOverrides(BaseModel):
    """Thresholds of the canary gate for this deployment (default: ``deploy.*``)."""

    model_config = ConfigDict(extra="forbid")

    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    max_p99_latency_ms: float | None = Field(default=None, gt=0, le=600_000)
    max_pd_psi: float | None = Field(default=None, ge=0, le=100)
    max_pd_ks: float | None = Field(default=None, ge=0, le=1)
    max_approval_rate_diff: float | None = Field(default=None, ge=0, le=1)
    min_fairness_ratio: float | None = Field(default=None, ge=0, le=1)
    max_fairness_drop: float | None = Field(default=None, ge=0, le=1)
    min_decisions: int | None = Field(default=None, ge=1, le=10_000_000)
    min_group: int | None = Field(default=None, ge=1, le=10_000_000)


class DeployBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = NameField
    version: str = VersionField
    strategy: Strategy = "canary"
    reason: str = Field(default="", max_length=500)
    steps: list[float] | None = Field(
        default=None, min_length=1, max_length=20, description="Canary traffic shares."
    )
    step_interval_s: float | None = Field(default=None, ge=0.1, le=30 * 86_400)
    gate: GateOverrides | None = None


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = NameField
    version: str | None = Field(default=None, min_length=1, max_length=16, pattern=r"^[0-9]+$")
    strategy: Strategy | None = None
    reason: str = Field(default="", max_length=500)


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500)


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str | None = Field(default=None, min_length=1, max_length=16, pattern=r"^[0-9]+$")
    reason: str = Field(default="", max_length=500)


class DeploymentResponse(BaseModel):
    deployment_id: str
    model: str
    strategy: str
    state: str
    stable_version: str | None
    candidate_version: str
    traffic_share: float
    step: int
    steps: list[float]
    options: dict[str, Any]
    history: list[dict[str, Any]]
    started_by: str
    reason: str
    created_at: str | None
    updated_at: str | None
    finished_at: str | None
    shadow_report: dict[str, Any] | None = None
    results: dict[str, Any] = Field(default_factory=dict)


class RollbackResponse(BaseModel):
    """A rollback: the deployment rolled back, or the alias move it made."""

    model: str
    deployment: DeploymentResponse | None = None
    from_version: str | None = None
    to_version: str | None = None
    reason: str = ""


class ModelVersionResponse(BaseModel):
    name: str
    version: str
    aliases: list[str]
    created_at: str
    algorithm: str
    gate_passed: bool | None
    bundle_sha256: str
    metrics: dict[str, float]


def _twice(path: str, method: str, handler: Callable[..., Any], **options: Any) -> None:
    """Register ``handler`` on ``/v1{path}`` and on the seed alias ``path``."""
    operation = options.pop("operation_id")
    router.add_api_route(f"/v1{path}", handler, methods=[method], operation_id=operation, **options)
    router.add_api_route(
        path,
        handler,
        methods=[method],
        operation_id=f"{operation}_seed",
        summary=f"Seed route: {handler.__doc__.splitlines()[0] if handler.__doc__ else operation}",
        **options,
    )


async def deploy(body: DeployBody, principal: DeployKey, state: StateDep) -> DeploymentResponse:
    """Start a deployment of a validated version with a strategy (202: the worker drives it)."""
    request = deployments.DeployRequest(
        model=body.name,
        version=body.version,
        strategy=body.strategy,
        reason=body.reason,
        steps=body.steps,
        step_interval_s=body.step_interval_s,
        gate=body.gate.model_dump(exclude_none=True) if body.gate else {},
    )
    row = await run_in_threadpool(
        deployments.start, state.ctx, state.sessions, request, principal.actor
    )
    return DeploymentResponse(**row)


async def promote(body: PromoteBody, principal: PromoteKey, state: StateDep) -> DeploymentResponse:
    """Staging to production with the default strategy (or the one named)."""
    row = await run_in_threadpool(
        lambda: deployments.promote(
            state.ctx,
            state.sessions,
            body.name,
            body.version,
            body.strategy,
            principal.actor,
            body.reason,
        )
    )
    return DeploymentResponse(**row)


async def list_deployments(
    sessions: SessionsDep,
    model: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> list[DeploymentResponse]:
    """Deployments, newest first."""
    rows = await run_in_threadpool(deployments.list_deployments, sessions, model, limit, offset)
    return [DeploymentResponse(**row) for row in rows]


async def get_deployment(deployment_id: DeploymentId, sessions: SessionsDep) -> DeploymentResponse:
    """One deployment: state, traffic share, step history; a shadow's comparison report."""
    return DeploymentResponse(**await run_in_threadpool(deployments.get, sessions, deployment_id))


async def rollback(
    name: ModelName, principal: RollbackKey, state: StateDep, body: RollbackBody | None = None
) -> RollbackResponse:
    """Back to the previous production version (or to the one named)."""
    body = body or RollbackBody()
    result = await run_in_threadpool(
        lambda: deployments.rollback(
            state.ctx, state.sessions, name, principal.actor, body.reason, body.to
        )
    )
    if "deployment_id" in result:
        return RollbackResponse(
            model=name, deployment=DeploymentResponse(**result), reason=body.reason
        )
    return RollbackResponse(**result)


async def all_versions(ctx: ContextDep) -> list[ModelVersionResponse]:
    """Every registered version of every model, newest first."""
    return [ModelVersionResponse(**row) for row in await run_in_threadpool(list_models, ctx)]


_twice("/models/deploy", "POST", deploy, operation_id="deploy_model", status_code=202)
_twice("/models/promote", "POST", promote, operation_id="promote_model", status_code=202)
_twice(
    "/models/deployments",
    "GET",
    list_deployments,
    operation_id="list_deployments",
    dependencies=[ReadScope],
)
_twice("/models/rollback/{name}", "POST", rollback, operation_id="rollback_model")
_twice(
    "/models/versions",
    "GET",
    all_versions,
    operation_id="list_all_versions",
    dependencies=[ReadScope],
)
router.add_api_route(
    "/v1/models/deployments/{deployment_id}",
    get_deployment,
    methods=["GET"],
    operation_id="get_deployment",
    dependencies=[ReadScope],
)


def _action(name: str) -> Callable[..., Any]:
    # approving or rejecting a request needs scope promote; the rest of the lifecycle deploy
    needed = Depends(promote_scope if name in ("approve", "reject") else deploy_scope)

    async def handler(
        deployment_id: DeploymentId,
        sessions: SessionsDep,
        settings: SettingsDep,
        body: ActionBody | None = None,
        principal: Principal = needed,
    ) -> DeploymentResponse:
        reason = body.reason if body else ""
        actor = principal.actor
        row = await run_in_threadpool(
            deployments.act, sessions, deployment_id, name, actor, reason, settings.events
        )
        return DeploymentResponse(**row)

    handler.__name__ = f"{name}_deployment"
    handler.__doc__ = {
        "pause": "Pause a deployment: its traffic split stays, its steps stop.",
        "resume": "Resume a paused deployment.",
        "abort": "Abort a deployment: the stable version answers everything again.",
        "approve": "Four-eyes: approve a requested deployment (scope promote; not the requester).",
        "reject": "Four-eyes: reject a requested deployment (scope promote).",
    }[name]
    return handler


for _name in ("pause", "resume", "abort", "approve", "reject"):
    router.add_api_route(
        f"/v1/models/deployments/{{deployment_id}}/{_name}",
        _action(_name),
        methods=["POST"],
        operation_id=f"{_name}_deployment",
    )
