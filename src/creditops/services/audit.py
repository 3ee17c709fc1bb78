"""The audit trail as evidence: verify its hash chain, export it, and answer "who was
answering for this model at that instant, and who put them there" by replaying it.

Every change of who answers is an audit record (docs/deployments.md): a deployment's
start, each step with its traffic share, promotion, rollback, abort, an experiment's
conclusion, and the alias moves and rollbacks made outside deployments. :func:`history_at`
replays a model's records up to an instant; nothing else is consulted, so the answer is
as trustworthy as the chain (``verify``) says the trail is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from creditops.domain.windows import utc_text
from creditops.store.admin_repositories import AuditRepository
from creditops.store.tables import AuditRow

ROUTING_ACTIONS = (
    "deployment.start",
    "deployment.step",
    "deployment.promote",
    "deployment.rollback",
    "deployment.abort",
    "deployment.reject",
    "deployment.conclude",
    "model.promote",
    "model.rollback",
)


def verify(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions() as session:
        return AuditRepository(session).verify()


def export(sessions: sessionmaker[Session], path: Path) -> int:
    """Write every record, in chain order, as JSON lines (with seq and both hashes) to
    ``path`` (written to a temporary file and renamed); returns the number of records."""
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with sessions() as session, tmp.open("w", encoding="utf-8") as out:
        for row in AuditRepository(session).all_in_order():
            out.write(json.dumps(record_dict(row), ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    tmp.replace(path)
    return count


def record_dict(row: AuditRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "id": row.id,
        "at": utc_text(row.at),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "details": row.details,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


@dataclass
class _Replay:
    production: str | None = None
    production_by: str | None = None
    production_since: str | None = None
    deployment: dict[str, Any] | None = None
    promoted: dict[str, str] = field(default_factory=dict)  # deployment id -> its candidate

    def apply(self, row: AuditRow) -> None:  # noqa: C901 - one case per routing action
        d, action = row.details, row.action
        if action == "deployment.start":
            if self.production is None:
                self.production = d.get("stable")
            self.deployment = {
                "deployment_id": d.get("deployment_id"),
                "strategy": d.get("strategy"),
                "stable": d.get("stable"),
                "candidate": d.get("candidate"),
                "share": 0.0,
                "started_by": row.actor,
                "started_at": utc_text(row.at),
                "reason": d.get("reason", ""),
            }
        elif action == "deployment.step" and self._current(d):
            assert self.deployment is not None
            self.deployment["share"] = float(d.get("share", 0.0))
        elif action == "deployment.promote":
            self._set_production(str(d.get("to")), row)
            self.promoted[str(d.get("deployment_id"))] = str(d.get("to"))
            if self._current(d):
                self.deployment = None
        elif action == "deployment.rollback":
            if self._current(d):
                self.deployment = None
            elif str(d.get("deployment_id")) in self.promoted and d.get("back_to"):
                self._set_production(str(d["back_to"]), row)
        elif action in ("deployment.abort", "deployment.reject", "deployment.conclude") and (
            self._current(d)
        ):
            self.deployment = None
        elif action == "model.promote" and d.get("alias") == "production":
            self._set_production(row.target.split(":", 1)[1], row)
        elif action == "model.rollback" and d.get("to"):
            self._set_production(str(d["to"]), row)

    def _current(self, details: dict[str, Any]) -> bool:
        return self.deployment is not None and self.deployment["deployment_id"] == details.get(
            "deployment_id"
        )

    def _set_production(self, version: str, row: AuditRow) -> None:
        self.production = version
        self.production_by = f"{row.actor} ({row.action}, audit record {row.seq})"
        self.production_since = utc_text(row.at)


def history_at(sessions: sessionmaker[Session], name: str, at: datetime) -> dict[str, Any]:
    """Which versions answered for ``name`` at ``at``, with which share, under which
    deployment or experiment, and who put them there (replayed from the audit trail)."""
    with sessions() as session:
        rows = session.scalars(
            select(AuditRow)
            .where(
                AuditRow.action.in_(ROUTING_ACTIONS),
                or_(AuditRow.target == name, AuditRow.target.like(f"{name}:%")),
                AuditRow.at <= at,
            )
            .order_by(AuditRow.seq)
        ).all()
        replay = _Replay()
        for row in rows:
            replay.apply(row)
    serving: list[dict[str, Any]] = []
    deployment = replay.deployment
    if deployment is None:
        if replay.production is not None:
            serving.append({"version": replay.production, "share": 1.0, "arm": "production"})
    else:
        share = float(deployment["share"])
        shadow = deployment["strategy"] == "shadow"
        experiment = deployment["strategy"] == "ab_test"
        stable_arm, candidate_arm = (
            ("control", "treatment") if experiment else ("stable", "candidate")
        )
        serving.append(
            {
                "version": deployment["stable"],
                "share": 1.0 if shadow else 1.0 - share,
                "arm": stable_arm,
            }
        )
        serving.append(
            {
                "version": deployment["candidate"],
                "share": 0.0 if shadow else share,
                "arm": "shadow" if shadow else candidate_arm,
            }
        )
    return {
        "model": name,
        "at": utc_text(at),
        "serving": serving,
        "deployment": deployment,
        "production": replay.production,
        "production_put_by": replay.production_by,
        "production_since": replay.production_since,
        "records_replayed": len(rows),
    }


def trace_decision(sessions: sessionmaker[Session], decision_id: str) -> dict[str, Any]:
    """A logged decision traced to what answered it: its model version, the deployment or
    experiment and the arm that routed it, who was answering at that instant, and the
    audit records of the deployment that put the version there."""
    from creditops.errors import NotFoundError
    from creditops.store.tables import DecisionRow

    with sessions() as session:
        decision = session.get(DecisionRow, decision_id)
        if decision is None:
            raise NotFoundError(f"no decision {decision_id!r}", field="decision_id")
        facts: dict[str, Any] = {
            "decision_id": decision.decision_id,
            "application_id": decision.application_id,
            "model": decision.model_name,
            "version": decision.model_version,
            "policy_version": decision.policy_version,
            "decided_at": utc_text(decision.created_at),
            "deployment_id": decision.deployment_id,
            "arm": decision.route,
        }
        records: list[dict[str, Any]] = []
        if decision.deployment_id:
            rows = session.scalars(
                select(AuditRow)
                .where(AuditRow.action.like("deployment.%"), AuditRow.target == decision.model_name)
                .order_by(AuditRow.seq)
            ).all()
            records = [
                record_dict(r)
                for r in rows
                if r.details.get("deployment_id") == decision.deployment_id
            ]
    facts["serving_then"] = history_at(sessions, decision.model_name, decision.created_at)
    facts["deployment_records"] = records
    return facts
