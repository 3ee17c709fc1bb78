"""Retraining requests and the jobs the worker runs (scopes retrain and read)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from creditops.api.deps import ApiState, Offset, ReadScope, SessionsDep, StateDep, scope
from creditops.domain.access import Principal
from creditops.monitoring.triggers import Trigger
from creditops.services import retraining
from creditops.services.model_versions import registered_versions

JobId = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[0-9a-f-]+$")]
retrain_scope = scope("retrain")
RetrainKey = Annotated[Principal, Depends(retrain_scope)]

router = APIRouter(tags=["retraining"])


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    reason: str = Field(default="manual request", min_length=1, max_length=500)
    force: bool = Field(default=False, description="Skip the cool-down after the last job.")


class TriggerOutcomeResponse(BaseModel):
    """What a trigger started: ``job_queued`` with its job id, or ``debounced`` and why."""

    kind: str
    reason: str
    outcome: str
    detail: str
    job_id: str | None


class TriggerResponse(BaseModel):
    """A recorded trigger: kind, reason, evidence, when, and what came of it."""

    model: str
    kind: str
    reason: str
    evidence: dict[str, Any]
    at: str
    outcome: str
    detail: str
    job_id: str | None


class JobResponse(BaseModel):
    job_id: str
    model: str
    kind: str
    trigger: dict[str, Any]
    requested_by: str
    force: bool
    state: str
    stage: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    cancel_requested: bool
    result: dict[str, Any]
    log: str


async def _retrain(
    body: RetrainRequest, principal: Principal, state: ApiState
) -> TriggerOutcomeResponse:
    await run_in_threadpool(registered_versions, state.ctx, body.model)  # 404 if unknown
    trigger = Trigger("manual", body.reason, {"requested_by": principal.actor})
    outcome = await run_in_threadpool(
        lambda: retraining.request_retrain(
            state.ctx,
            state.sessions,
            body.model,
            trigger,
            force=body.force,
            requested_by=principal.actor,
        )
    )
    return TriggerOutcomeResponse(**outcome.to_dict())


@router.post("/v1/models/retrain", operation_id="retrain_model", status_code=202)
async def retrain(
    body: RetrainRequest, principal: RetrainKey, state: StateDep
) -> TriggerOutcomeResponse:
    """Queue a retraining job of a model (run by `creditops worker`); a job already queued or
    running, or the cool-down after the last one (unless forced), means none is queued."""
    return await _retrain(body, principal, state)


@router.post(
    "/models/retrain",
    operation_id="retrain_model_seed",
    status_code=202,
    summary="Seed route: queue a retraining job",
)
async def retrain_seed(
    body: RetrainRequest, principal: RetrainKey, state: StateDep
) -> TriggerOutcomeResponse:
    """The seed documents' route for `POST /v1/models/retrain`."""
    return await _retrain(body, principal, state)


@router.get("/v1/jobs", operation_id="list_jobs", dependencies=[ReadScope])
async def list_jobs(
    sessions: SessionsDep,
    model: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> list[JobResponse]:
    """Jobs, newest first."""
    rows = await run_in_threadpool(retraining.list_jobs, sessions, model, limit, offset)
    return [JobResponse(**row) for row in rows]


@router.get("/v1/jobs/{job_id}", operation_id="get_job", dependencies=[ReadScope])
async def get_job(job_id: JobId, sessions: SessionsDep) -> JobResponse:
    """One job: its state, stage, result and log."""
    return JobResponse(**await run_in_threadpool(retraining.get_job, sessions, job_id))


@router.post(
    "/v1/jobs/{job_id}/cancel", operation_id="cancel_job", dependencies=[Depends(retrain_scope)]
)
async def cancel_job(job_id: JobId, sessions: SessionsDep) -> JobResponse:
    """Cancel a queued job at once; a running one stops at its next stage."""
    return JobResponse(**await run_in_threadpool(retraining.cancel_job, sessions, job_id))


@router.get("/v1/retrain/triggers", operation_id="list_triggers", dependencies=[ReadScope])
async def list_triggers(
    sessions: SessionsDep,
    model: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[TriggerResponse]:
    """Recorded retraining triggers, newest first, with what came of each."""
    rows = await run_in_threadpool(retraining.list_triggers, sessions, model, limit)
    return [TriggerResponse(**row) for row in rows]
