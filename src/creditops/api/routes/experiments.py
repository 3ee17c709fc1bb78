"""A/B tests (scope deploy to run them, read to look) and the history of who answered for a
model at an instant (scope read). The seed's ``/models/ab-test`` and ``/models/ab-tests``
answer too."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from creditops.api.deps import Offset, ReadScope, SessionsDep, SettingsDep, StateDep, scope
from creditops.api.routes.deployments import NameField, VersionField
from creditops.domain.access import Principal
from creditops.domain.windows import parse_time
from creditops.errors import NotFoundError
from creditops.reporting.experiment_report import experiment_html
from creditops.services import deployments, experiments
from creditops.services.audit import history_at, trace_decision
from creditops.services.model_versions import registered_versions

deploy_scope = scope("deploy")
DeployKey = Annotated[Principal, Depends(deploy_scope)]
ExperimentId = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[0-9a-f-]+$")]
ModelName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]

router = APIRouter(tags=["experiments"])


class GuardrailsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_approval_rate_change: float = Field(default=0.10, ge=0, le=1)
    min_fairness_ratio: float = Field(default=0.8, ge=0, le=1)
    max_fairness_drop: float = Field(default=0.05, ge=0, le=1)
    max_error_rate: float = Field(default=0.10, ge=0, le=1)
    min_group: int = Field(default=200, ge=1, le=1_000_000)


class AbTestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = NameField
    treatment_version: str = VersionField
    control_version: str | None = Field(
        default=None, min_length=1, max_length=16, pattern=r"^[0-9]+$",
        description="Must be the production version (the default).",
    )  # fmt: skip
    split: float = Field(default=0.5, gt=0, lt=1, description="The treatment's share.")
    max_duration_h: float = Field(default=48.0, gt=0, le=24 * 3660)
    metric: Literal["approval_rate", "default_rate", "auc", "expected_loss"] = "approval_rate"
    mde: float = Field(default=0.02, gt=0, le=1, description="Smallest difference that matters.")
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    maturity_days: float = Field(default=0.0, ge=0, le=3660)
    lgd: float = Field(default=0.45, gt=0, le=1)
    auto_conclude: bool = True
    guardrails: GuardrailsBody = Field(default_factory=GuardrailsBody)
    reason: str = Field(default="", max_length=500)


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500)


class AbTestResponse(BaseModel):
    id: str
    model: str
    control_version: str | None
    treatment_version: str
    state: str
    design: dict[str, Any]
    arms: dict[str, Any]
    last_look: dict[str, Any] | None
    sample_size_per_arm: int | None
    looks: list[dict[str, Any]]
    history: list[dict[str, Any]]
    started_by: str
    created_at: str | None
    finished_at: str | None


class HistoryResponse(BaseModel):
    model: str
    at: str
    serving: list[dict[str, Any]]
    deployment: dict[str, Any] | None
    production: str | None
    production_put_by: str | None
    production_since: str | None
    records_replayed: int


def _response(row: dict[str, Any]) -> AbTestResponse:
    return AbTestResponse(**experiments.summary(row))


async def start_ab_test(body: AbTestBody, principal: DeployKey, state: StateDep) -> AbTestResponse:
    """Start an A/B test of a validated treatment against the production version."""
    request = experiments.ExperimentRequest(
        model=body.name,
        treatment=body.treatment_version,
        control=body.control_version,
        split=body.split,
        max_duration_h=body.max_duration_h,
        metric=body.metric,
        mde=body.mde,
        alpha=body.alpha,
        maturity_days=body.maturity_days,
        lgd=body.lgd,
        auto_conclude=body.auto_conclude,
        guardrails=experiments.Guardrails(**body.guardrails.model_dump()),
        reason=body.reason,
    )
    row = await run_in_threadpool(
        experiments.start, state.ctx, state.sessions, request, principal.actor
    )
    return _response(row)


async def list_ab_tests(
    sessions: SessionsDep,
    model: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> list[AbTestResponse]:
    """A/B tests, newest first."""
    rows = await run_in_threadpool(deployments.list_deployments, sessions, model, 500, offset)
    return [_response(r) for r in rows if r["strategy"] == "ab_test"][:limit]


for path, seed in (("/v1/models/ab-test", False), ("/models/ab-test", True)):
    router.add_api_route(
        path,
        start_ab_test,
        methods=["POST"],
        status_code=202,
        operation_id="start_ab_test_seed" if seed else "start_ab_test",
        summary="Seed route: start an A/B test" if seed else None,
    )
for path, seed in (("/v1/models/ab-tests", False), ("/models/ab-tests", True)):
    router.add_api_route(
        path,
        list_ab_tests,
        methods=["GET"],
        dependencies=[ReadScope],
        operation_id="list_ab_tests_seed" if seed else "list_ab_tests",
        summary="Seed route: list A/B tests" if seed else None,
    )


async def _experiment(sessions: SessionsDep, experiment_id: str) -> dict[str, Any]:
    row = await run_in_threadpool(deployments.get, sessions, experiment_id)
    if row["strategy"] != "ab_test":
        raise NotFoundError(f"no A/B test {experiment_id!r}", field="id")
    return row


@router.get(
    "/v1/models/ab-tests/{experiment_id}", operation_id="get_ab_test", dependencies=[ReadScope]
)
async def get_ab_test(experiment_id: ExperimentId, sessions: SessionsDep) -> AbTestResponse:
    """One A/B test: per-arm counts, approval rates, mean PD, default rates once outcomes
    exist, the always-valid p-value, confidence sequence and verdict."""
    return _response(await _experiment(sessions, experiment_id))


@router.get(
    "/v1/models/ab-tests/{experiment_id}/report",
    operation_id="ab_test_report",
    dependencies=[ReadScope],
    response_class=HTMLResponse,
)
async def ab_test_report(experiment_id: ExperimentId, sessions: SessionsDep) -> HTMLResponse:
    """The experiment as a self-contained HTML page with plots of the metric and its
    confidence sequence over time."""
    row = await _experiment(sessions, experiment_id)
    html = await run_in_threadpool(experiment_html, experiments.summary(row))
    return HTMLResponse(html)


@router.post("/v1/models/ab-tests/{experiment_id}/stop", operation_id="stop_ab_test")
async def stop_ab_test(
    experiment_id: ExperimentId,
    principal: DeployKey,
    sessions: SessionsDep,
    settings: SettingsDep,
    body: ReasonBody | None = None,
) -> AbTestResponse:
    """Stop now: control keeps answering."""
    await _experiment(sessions, experiment_id)
    reason = body.reason if body else ""
    row = await run_in_threadpool(
        deployments.act,
        sessions,
        experiment_id,
        "abort",
        principal.actor,
        reason,
        settings.events,
    )
    return _response(row)


@router.post("/v1/models/ab-tests/{experiment_id}/conclude", operation_id="conclude_ab_test")
async def conclude_ab_test(
    experiment_id: ExperimentId, principal: DeployKey, state: StateDep
) -> AbTestResponse:
    """Conclude on the last verdict: a winning treatment is promoted through the
    deployment path; anything else keeps control."""
    await _experiment(state.sessions, experiment_id)
    await run_in_threadpool(
        experiments.conclude, state.ctx, state.sessions, experiment_id, principal.actor
    )
    return _response(await _experiment(state.sessions, experiment_id))


@router.get("/v1/models/{name}/history", operation_id="model_history", dependencies=[ReadScope])
async def model_history(
    name: ModelName,
    state: StateDep,
    at: Annotated[
        str,
        Query(min_length=1, max_length=64, description="An ISO 8601 instant (naive = UTC)."),
    ],
) -> HistoryResponse:
    """Which versions answered for the model at ``at``, with which share, under which
    deployment or experiment, and who put them there (replayed from the audit trail)."""
    moment = parse_time(at, field="at")
    await run_in_threadpool(registered_versions, state.ctx, name)  # 404 naming an unknown model
    return HistoryResponse(**await run_in_threadpool(history_at, state.sessions, name, moment))


@router.get(
    "/v1/decisions/{decision_id}/trace", operation_id="trace_decision", dependencies=[ReadScope]
)
async def trace(
    decision_id: Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]+$")],
    sessions: SessionsDep,
) -> dict[str, Any]:
    """A logged decision traced to its model version, the deployment or experiment arm that
    routed it, who was answering at that instant, and the audit records of how that
    version got there."""
    result: dict[str, Any] = await run_in_threadpool(trace_decision, sessions, decision_id)
    return result
