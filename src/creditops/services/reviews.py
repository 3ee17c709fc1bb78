"""The review queue: decisions in the review band waiting for a person, and the reviewer's
final decision, recorded against the original (which is never replaced)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from creditops.errors import InvalidInputError, NotFoundError
from creditops.services.archive import decision_dict
from creditops.services.events import record_event
from creditops.settings import EventSettings
from creditops.store.admin_repositories import AuditRepository
from creditops.store.outbox import DECISION_OVERRIDDEN
from creditops.store.repositories import DecisionRepository, ReviewRepository


def pending_reviews(
    sessions: sessionmaker[Session], limit: int, offset: int
) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = DecisionRepository(session).pending_reviews(limit=limit, offset=offset)
        return [decision_dict(r) for r in rows]


@dataclass(frozen=True)
class Verdict:
    """A reviewer's final decision; an override reason code marks it as overriding the
    model's."""

    final_decision: str
    override_reason_code: str | None
    note: str
    reviewer: str


def submit_review(
    sessions: sessionmaker[Session],
    decision_id: str,
    verdict: Verdict,
    actor: str,
    events: EventSettings | None = None,
) -> dict[str, Any]:
    """Record a reviewer's final decision against the original; the original stays. With
    ``events`` enabled, an override (a review with a reason code) also gets its
    ``decision.overridden`` event in the same transaction."""
    final_decision, override_reason_code = verdict.final_decision, verdict.override_reason_code
    with sessions.begin() as session:
        decision = DecisionRepository(session).get(decision_id)
        if decision is None:
            raise NotFoundError(f"decision {decision_id!r} does not exist", field="decision_id")
        if decision.decision != "review":
            raise InvalidInputError(
                f"decision {decision_id!r} is '{decision.decision}', not 'review'",
                field="decision_id",
            )
        review = ReviewRepository(session).add(
            decision_id=decision_id,
            final_decision=final_decision,
            override_reason_code=override_reason_code,
            note=verdict.note,
            reviewer=verdict.reviewer,
        )
        AuditRepository(session).add(
            actor=actor,
            action="review.submit",
            target=decision_id,
            outcome="ok",
            details={"final_decision": final_decision, "override": override_reason_code},
        )
        if events is not None and override_reason_code is not None:
            record_event(
                session,
                events,
                event_type=DECISION_OVERRIDDEN,
                model=decision.model_name,
                version=decision.model_version,
                occurred_at=review.created_at,
                data={
                    "decision_id": decision_id,
                    "review_id": review.id,
                    "original_decision": decision.decision,
                    "final_decision": final_decision,
                    "override_reason_code": override_reason_code,
                    "reviewer": verdict.reviewer,
                },
            )
        return {
            "review_id": review.id,
            "decision_id": decision_id,
            "model_name": decision.model_name,
            "original_decision": decision.decision,
            "final_decision": final_decision,
            "override_reason_code": override_reason_code,
            "overridden": override_reason_code is not None,
        }
