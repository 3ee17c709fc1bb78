"""Use cases on the service database: outcomes, reviews, the kill switch, API keys, audit,
export and retention. Each public function is one transaction."""

from __future__ import annotations

import getpass
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from creditops.domain.access import hash_key
from creditops.errors import InvalidInputError, NotFoundError
from creditops.store.admin_repositories import (
    ApiKeyRepository,
    AuditRepository,
    ModelControlRepository,
)
from creditops.store.repositories import DecisionRepository, OutcomeRepository, ReviewRepository
from creditops.store.tables import ApiKeyRow, DecisionRow

KEY_PREFIX = "co"


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


# -- outcomes ---------------------------------------------------------------------------
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
    sessions: sessionmaker[Session], items: Sequence[OutcomeInput], actor: str
) -> FeedbackResult:
    """Link observed outcomes to earlier decisions; idempotent; unknown ids reported back.

    An ``application_id`` alone links to that application's most recent decision.
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


# -- reviews ----------------------------------------------------------------------------
def pending_reviews(
    sessions: sessionmaker[Session], limit: int, offset: int
) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = DecisionRepository(session).pending_reviews(limit=limit, offset=offset)
        return [decision_dict(r) for r in rows]


def submit_review(
    sessions: sessionmaker[Session],
    decision_id: str,
    final_decision: str,
    override_reason_code: str | None,
    note: str,
    reviewer: str,
    actor: str,
) -> dict[str, Any]:
    """Record a reviewer's final decision against the original; the original stays."""
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
            note=note,
            reviewer=reviewer,
        )
        AuditRepository(session).add(
            actor=actor,
            action="review.submit",
            target=decision_id,
            outcome="ok",
            details={"final_decision": final_decision, "override": override_reason_code},
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


# -- kill switch ------------------------------------------------------------------------
def set_suspended(
    sessions: sessionmaker[Session], model: str, suspended: bool, reason: str, actor: str
) -> dict[str, Any]:
    with sessions.begin() as session:
        ModelControlRepository(session).set(model, suspended, reason, actor)
        AuditRepository(session).add(
            actor=actor,
            action="model.suspend" if suspended else "model.resume",
            target=model,
            outcome="ok",
            details={"reason": reason},
        )
    return {"model": model, "suspended": suspended, "reason": reason}


# -- API keys ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CreatedKey:
    key: str
    key_id: str
    name: str
    scopes: list[str]


def create_key(
    sessions: sessionmaker[Session],
    name: str,
    scopes: Sequence[str],
    valid: Sequence[str],
    actor: str,
) -> CreatedKey:
    unknown = [s for s in scopes if s not in valid]
    if unknown or not scopes:
        raise InvalidInputError(
            f"--scopes must be a comma-separated subset of {', '.join(valid)}; got {list(scopes)}",
            field="scopes",
        )
    if not name.strip():
        raise InvalidInputError("--name must not be empty", field="name")
    key_id = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(24)}"
    with sessions.begin() as session:
        ApiKeyRepository(session).add(
            key_id=key_id, name=name, key_hash=hash_key(key), scopes=sorted(set(scopes))
        )
        AuditRepository(session).add(
            actor=actor,
            action="key.create",
            target=key_id,
            outcome="ok",
            details={"name": name, "scopes": sorted(set(scopes))},
        )
    return CreatedKey(key=key, key_id=key_id, name=name, scopes=sorted(set(scopes)))


def list_keys(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    with sessions() as session:
        return [key_dict(r) for r in ApiKeyRepository(session).list()]


def revoke_key(sessions: sessionmaker[Session], key_id: str, actor: str) -> None:
    with sessions.begin() as session:
        if not ApiKeyRepository(session).revoke(key_id):
            raise NotFoundError(f"no active API key with id {key_id!r}", field="key_id")
        AuditRepository(session).add(
            actor=actor, action="key.revoke", target=key_id, outcome="ok", details={}
        )


def key_dict(row: ApiKeyRow) -> dict[str, Any]:
    return {
        "id": row.key_id,
        "name": row.name,
        "scopes": list(row.scopes),
        "created_at": row.created_at.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
    }


def audit_entries(
    sessions: sessionmaker[Session], limit: int, action: str | None
) -> list[dict[str, Any]]:
    with sessions() as session:
        return [
            {
                "id": r.id,
                "at": r.at.isoformat(),
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "outcome": r.outcome,
                "details": r.details,
            }
            for r in AuditRepository(session).list(limit=limit, action=action)
        ]


# -- export and retention ---------------------------------------------------------------
def decision_dict(row: DecisionRow) -> dict[str, Any]:
    return {
        "decision_id": row.decision_id,
        "application_id": row.application_id,
        "model_name": row.model_name,
        "model_version": row.model_version,
        "policy_version": row.policy_version,
        "pd": row.pd,
        "score": row.score,
        "decision": row.decision,
        "reasons": row.reasons,
        "inputs": row.inputs,
        "created_at": row.created_at.isoformat(),
        "latency_ms": row.latency_ms,
        "route": row.route,
        "suspended": row.suspended,
    }


# Decision columns exported as they are stored, in the export's column order.
_EXPORT_FIELDS = (
    "decision_id",
    "application_id",
    "model_name",
    "model_version",
    "policy_version",
    "pd",
    "score",
    "decision",
    "created_at",
    "latency_ms",
    "request_id",
    "api_key_id",
)


def _export_rows(
    rows: Sequence[DecisionRow], columns: Mapping[str, bool]
) -> Iterator[dict[str, Any]]:
    """Flat rows with a fixed set of input columns (numeric ones as floats, others as text)."""
    for row in rows:
        flat: dict[str, Any] = {name: getattr(row, name) for name in _EXPORT_FIELDS}
        for i in range(4):
            reason = row.reasons[i] if i < len(row.reasons) else None
            flat[f"reason_{i + 1}"] = reason["code"] if reason else None
        inputs = row.inputs or {}
        for key, numeric in columns.items():
            value = inputs.get(key)
            if value is None:
                flat[f"input_{key}"] = None
            else:
                flat[f"input_{key}"] = float(value) if numeric else str(value)
        yield flat


def _input_columns(
    sessions: sessionmaker[Session], since: datetime | None, model: str | None, chunk_size: int
) -> dict[str, bool]:
    """First pass: every input key in the export and whether all its values are numbers, so
    that every chunk is written with the same columns and types."""
    columns: dict[str, bool] = {}
    with sessions() as session:
        for chunk in DecisionRepository(session).iter_since(since, model, chunk_size):
            for row in chunk:
                for key, value in (row.inputs or {}).items():
                    numeric = value is None or (
                        isinstance(value, (int, float)) and not isinstance(value, bool)
                    )
                    columns[key] = columns.get(key, True) and numeric
    return dict(sorted(columns.items()))


def export_decisions(
    sessions: sessionmaker[Session],
    output: Path,
    fmt: str,
    since: datetime | None,
    model: str | None,
    chunk_size: int = 10_000,
) -> int:
    """Stream decisions to CSV or Parquet in chunks (bounded memory); returns the row count.

    Two passes over the window: the first fixes the input columns and their types, the
    second writes; so a later chunk can never change the file's header or schema.
    """
    if fmt not in ("csv", "parquet"):
        raise InvalidInputError(f"--format must be csv or parquet; got {fmt!r}", field="format")
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = _input_columns(sessions, since, model, chunk_size)
    names = [
        *_EXPORT_FIELDS,
        *(f"reason_{i}" for i in range(1, 5)),
        *(f"input_{k}" for k in columns),
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    total = 0
    writer: Any = None
    schema: Any = None
    with sessions() as session:
        for chunk in DecisionRepository(session).iter_since(since, model, chunk_size):
            frame = pd.DataFrame(list(_export_rows(chunk, columns)), columns=names)
            if fmt == "csv":
                frame.to_csv(
                    output, mode="w" if total == 0 else "a", header=total == 0, index=False
                )
            else:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    schema = _parquet_schema(table.schema, columns)
                    writer = pq.ParquetWriter(output, schema)
                writer.write_table(table.cast(schema))
            total += len(frame)
    if writer is not None:
        writer.close()
    if total == 0:
        empty = pd.DataFrame(columns=names)
        if fmt == "csv":
            empty.to_csv(output, index=False)
        else:
            empty.astype("string").to_parquet(output, index=False)
    return total


def _parquet_schema(inferred: Any, columns: Mapping[str, bool]) -> Any:
    """Fixed types for the input columns (float64 or string), whatever the first chunk held."""
    import pyarrow as pa

    fields = []
    for f in inferred:
        key = f.name.removeprefix("input_")
        if f.name.startswith("input_") and key in columns:
            fields.append(pa.field(f.name, pa.float64() if columns[key] else pa.string()))
        elif f.name.startswith("reason_") or pa.types.is_null(f.type):
            fields.append(pa.field(f.name, pa.string()))
        else:
            fields.append(f)
    return pa.schema(fields)


def purge_decisions(
    sessions: sessionmaker[Session], retention_days: int, actor: str, now: datetime | None = None
) -> dict[str, Any]:
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    with sessions.begin() as session:
        removed = DecisionRepository(session).purge_before(cutoff)
        AuditRepository(session).add(
            actor=actor,
            action="decisions.purge",
            target=cutoff.isoformat(),
            outcome="ok",
            details={"removed": removed, "retention_days": retention_days},
        )
    return {"removed": removed, "cutoff": cutoff.isoformat(), "retention_days": retention_days}
