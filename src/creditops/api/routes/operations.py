"""Model listing, outcome feedback, the review queue and the kill switch."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query
from starlette.concurrency import run_in_threadpool

from creditops.api.schemas import (
    FeedbackRequest,
    FeedbackResponse,
    ModelSummaryResponse,
    ReviewRequest,
    SuspendRequest,
    VersionResponse,
)
from creditops.api.security import Principal
from creditops.api.state import ApiState
from creditops.errors import ModelNotFoundError
from creditops.services import records
from creditops.services.records import OutcomeInput

ModelName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


def actor(principal: Principal) -> str:
    return principal.key_id or principal.name


def add_operation_routes(app: FastAPI, state: ApiState) -> None:
    read = Depends(state.auth.require("read"))
    feedback_scope = Depends(state.auth.require("feedback"))
    admin = Depends(state.auth.require("admin"))
    router = APIRouter()

    @router.get(
        "/v1/models",
        tags=["models"],
        operation_id="list_models",
        response_model=list[ModelSummaryResponse],
    )
    async def list_models(principal: Principal = read) -> list[ModelSummaryResponse]:
        """Served models, the version that serves, aliases and suspension state."""
        del principal
        out = []
        for slot in state.router.slots():
            out.append(
                ModelSummaryResponse(
                    name=slot.name,
                    serving_version=slot.version,
                    suspended=state.controls.is_suspended(slot.name),
                    aliases={a: slot.version for a in slot.info.aliases},
                    features=dict(slot.model.spec.features),
                )
            )
        return out

    @router.get(
        "/v1/models/{name}/versions",
        tags=["models"],
        operation_id="list_versions",
        response_model=list[VersionResponse],
    )
    async def list_versions(name: ModelName, principal: Principal = read) -> list[VersionResponse]:
        """Every registered version of a model, its aliases and metrics."""
        del principal
        versions = await run_in_threadpool(state.ctx.registry.list_versions, name)
        if not versions:
            raise ModelNotFoundError(name)
        serving = {s.name: s.version for s in state.router.slots()}.get(name)
        return [
            VersionResponse(
                name=v.name,
                version=v.version,
                aliases=list(v.aliases),
                created_at=v.created_at,
                metrics=dict(v.metrics),
                tags=dict(v.tags),
                serving=v.version == serving,
            )
            for v in versions
        ]

    @router.post(
        "/v1/feedback",
        tags=["feedback"],
        operation_id="record_feedback",
        response_model=FeedbackResponse,
    )
    async def feedback(
        body: FeedbackRequest, principal: Principal = feedback_scope
    ) -> FeedbackResponse:
        """Observed outcomes for earlier decisions. Idempotent; unknown ids come back."""
        items = [
            OutcomeInput(o.decision_id, o.application_id, o.defaulted, o.observed_at)
            for o in body.outcomes
        ]
        result = await run_in_threadpool(
            records.record_outcomes, state.sessions, items, actor(principal)
        )
        return FeedbackResponse(
            created=result.created,
            updated=result.updated,
            unchanged=result.unchanged,
            unknown=result.unknown,
        )

    @router.get("/v1/reviews", tags=["reviews"], operation_id="pending_reviews")
    async def reviews(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
        principal: Principal = read,
    ) -> list[dict[str, Any]]:
        """Decisions in the review band still waiting for a reviewer."""
        del principal
        return await run_in_threadpool(records.pending_reviews, state.sessions, limit, offset)

    @router.post("/v1/reviews/{decision_id}", tags=["reviews"], operation_id="submit_review")
    async def review(
        decision_id: Annotated[
            str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
        ],
        body: ReviewRequest,
        principal: Principal = feedback_scope,
    ) -> dict[str, Any]:
        """A reviewer's final decision, recorded against the original (never replacing it)."""
        result = await run_in_threadpool(
            records.submit_review,
            state.sessions,
            decision_id,
            body.final_decision,
            body.override_reason_code,
            body.note,
            body.reviewer,
            actor(principal),
        )
        state.metrics.reviews.labels(result["model_name"]).inc()
        if result["overridden"]:
            state.metrics.overrides.labels(result["model_name"]).inc()
        return result

    async def _switch(
        name: str, suspended: bool, reason: str, principal: Principal
    ) -> dict[str, Any]:
        state.router.route(name)  # 404 for a model this service does not serve
        result = await run_in_threadpool(
            records.set_suspended, state.sessions, name, suspended, reason, actor(principal)
        )
        await run_in_threadpool(state.controls.refresh)
        state.metrics.suspended.labels(name).set(1 if suspended else 0)
        return result

    @router.post("/v1/models/{name}/suspend", tags=["models"], operation_id="suspend_model")
    async def suspend(
        name: ModelName, body: SuspendRequest | None = None, principal: Principal = admin
    ) -> dict[str, Any]:
        """Kill switch: route every new decision of this model to review."""
        return await _switch(name, True, body.reason if body else "", principal)

    @router.post("/v1/models/{name}/resume", tags=["models"], operation_id="resume_model")
    async def resume(
        name: ModelName, body: SuspendRequest | None = None, principal: Principal = admin
    ) -> dict[str, Any]:
        """Resume automated decisioning."""
        return await _switch(name, False, body.reason if body else "", principal)

    app.include_router(router)
