"""Observed outcomes of earlier decisions (did the applicant default?), linked to the
decisions they belong to: the labels that performance monitoring and retraining read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from creditops.domain.windows import utc_text
from creditops.errors import InvalidInputError
from creditops.services.events import record_event
from creditops.settings import EventSettings
from creditops.store.admin_repositories import AuditRepository
from creditops.store.outbox import OUTCOME_RECORDED
from creditops.store.repositories import DecisionRepository, OutcomeRepository
from creditops.store.tables import DecisionRow


@dataclass(frozen=True)
class OutcomeInput:
    decision_id: str | None
    application_id: str | None
    defaulted: bool
    observed_at: datetime | None


@dataclass
class FeedbackResult:
    created: int
    updated: int
    unchanged: int
    unknown: list[dict[str, str | None]]


def record_outcomes(
    sessions: sessionmaker[Session],
    items: Sequence[OutcomeInput],
    actor: str,
    events: EventSettings | None = None,
) -> FeedbackResult:
    """Link observed outcomes to earlier decisions; idempotent; unknown ids reported back.

    An ``application_id`` alone links to that application's most recent decision. With
    ``events`` enabled each new or changed outcome also gets its ``outcome.recorded`` event
    in the same transaction (an unchanged repeat gets none).
    """
    result = FeedbackResult(0, 0, 0, [])
    now = datetime.now(UTC)
    with sessions.begin() as session:
        decisions = DecisionRepository(session)
        outcomes = OutcomeRepository(session)
        for item in items:
            if not item.decision_id and not item.application_id:
                raise InvalidInputError(
                    "each outcome needs decision_id or application_id", field="decision_id"
                )
            row: DecisionRow | None = None
            if item.decision_id:
                row = decisions.get(item.decision_id)
                if (
                    row is not None
                    and item.application_id
                    and item.application_id != row.application_id
                ):
                    raise InvalidInputError(
                        f"decision {item.decision_id!r} belongs to application "
                        f"{row.application_id!r}, not {item.application_id!r}",
                        field="application_id",
                    )
            elif item.application_id:
                found = decisions.get_by_application(item.application_id)
                row = found[-1] if found else None
            if row is None:
                result.unknown.append(
                    {"decision_id": item.decision_id, "application_id": item.application_id}
                )
                continue
            # A retry without observed_at keeps the time first recorded (idempotence).
            known = outcomes.get(row.decision_id)
            observed = item.observed_at or (known.observed_at if known else now)
            status = outcomes.record(row.decision_id, row.application_id, item.defaulted, observed)
            setattr(result, status, getattr(result, status) + 1)
            if events is not None and status != "unchanged":
                record_event(
                    session,
                    events,
                    event_type=OUTCOME_RECORDED,
                    model=row.model_name,
                    version=row.model_version,
                    occurred_at=now,
                    data={
                        "decision_id": row.decision_id,
                        "application_id": row.application_id,
                        "defaulted": item.defaulted,
                        "observed_at": utc_text(observed),
                        "change": status,
                    },
                )
        AuditRepository(session).add(
            actor=actor,
            action="feedback.record",
            target=f"{len(items)} outcomes",
            outcome="ok",
            details={
                "created": result.created,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "unknown": len(result.unknown),
            },
        )
    return result
