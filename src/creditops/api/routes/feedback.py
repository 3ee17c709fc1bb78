"""Observed outcomes of earlier decisions, and the review queue."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from creditops.api.deps import (
    FeedbackKey,
    MetricsDep,
    Offset,
    ReadScope,
    SessionsDep,
    SettingsDep,
)
from creditops.api.schemas import (
    FeedbackRequest,
    FeedbackResponse,
    LoggedDecisionResponse,
    ReviewRequest,
    ReviewResponse,
)
from creditops.services import outcomes, reviews

DecisionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]

router = APIRouter()


@router.post("/v1/feedback", tags=["feedback"], operation_id="record_feedback")
async def record_feedback(
    body: FeedbackRequest, principal: FeedbackKey, sessions: SessionsDep, settings: SettingsDep
) -> FeedbackResponse:
    """Observed outcomes for earlier decisions. Idempotent; unknown ids come back."""
    items = [
        outcomes.OutcomeInput(o.decision_id, o.application_id, o.defaulted, o.observed_at)
        for o in body.outcomes
    ]
    result = await run_in_threadpool(
        outcomes.record_outcomes, sessions, items, principal.actor, settings.events
    )
    return FeedbackResponse(
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
        unknown=result.unknown,
    )


@router.get(
    "/v1/reviews", tags=["reviews"], operation_id="pending_reviews", dependencies=[ReadScope]
)
async def pending_reviews(
    sessions: SessionsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
) -> list[LoggedDecisionResponse]:
    """Decisions in the review band still waiting for a reviewer."""
    rows: list[dict[str, Any]] = await run_in_threadpool(
        reviews.pending_reviews, sessions, limit, offset
    )
    return [LoggedDecisionResponse(**row) for row in rows]


@router.post("/v1/reviews/{decision_id}", tags=["reviews"], operation_id="submit_review")
async def submit_review(  # noqa: PLR0913 - the path, the body and four dependencies
    decision_id: DecisionId,
    body: ReviewRequest,
    principal: FeedbackKey,
    sessions: SessionsDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> ReviewResponse:
    """A reviewer's final decision, recorded against the original (never replacing it)."""
    verdict = reviews.Verdict(
        body.final_decision, body.override_reason_code, body.note, body.reviewer
    )
    result = await run_in_threadpool(
        reviews.submit_review, sessions, decision_id, verdict, principal.actor, settings.events
    )
    metrics.reviews.labels(result["model_name"]).inc()
    if result["overridden"]:
        metrics.overrides.labels(result["model_name"]).inc()
    return ReviewResponse(**result)
