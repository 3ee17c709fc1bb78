"""Deployments: start, drive, pause, resume, abort, promote and roll back (docs/deployments.md).

The state lives in the store (``deployments``), so every API process and the worker agree.
Operators act through the API or the CLI (:func:`start`, :func:`act`, :func:`rollback`,
:func:`promote`); the worker calls :func:`drive` every ``deploy.evaluate_interval_s``: it
reads the serving processes' reports (``services/serving.RouteFollower``), rolls back a
candidate that failed its health check or errs too often, starts a deployment once the
candidate is ready, judges each canary step on the live traffic of both arms
(``monitoring/canary``), advances, and at the end moves the ``production`` alias. Every
change is appended to the deployment's history and written to the audit trail in the same
transaction; a rollback also sends an alert with its evidence.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as DatabaseIntegrityError
from sqlalchemy.orm import Session, sessionmaker

from creditops.alerts.episodes import Alert
from creditops.domain.deployments import (
    ACTIVE_STATES,
    ARM_CANDIDATE,
    ARM_STABLE,
    AWAITING,
    STRATEGIES,
    next_state,
    plan_for,
)
from creditops.domain.windows import utc_text
from creditops.errors import ConflictError, CreditopsError, InvalidInputError, NotFoundError
from creditops.features.spec import Spec
from creditops.modeling.fairness import protected_groups
from creditops.monitoring.canary import ArmWindow, GateThresholds, compare_shadow, judge_step
from creditops.registry.records import VersionInfo
from creditops.services.context import AppContext
from creditops.services.events import record_event
from creditops.services.evidence import check_promotion_evidence
from creditops.services.model_versions import load_model, servable
from creditops.services.model_versions import promote as move_alias
from creditops.settings import DeploySettings, EventSettings
from creditops.store.admin_repositories import AuditRepository
from creditops.store.deployment_repositories import (
    DeploymentRepository,
    ServingProcessRepository,
    ShadowRepository,
)
from creditops.store.outbox import DEPLOYMENT_CHANGED
from creditops.store.tables import DecisionRow, DeploymentRow, ShadowDecisionRow

log = logging.getLogger("creditops.deployments")
MIN_ATTEMPTS = 10  # candidate scorings before its error rate is judged
MIN_LATENCY_DECISIONS = 50  # candidate decisions before its p99 latency is judged
SHADOW_COMPARED = 20_000  # most recent shadow pairs in a comparison report
GATE_FIELDS = tuple(f.name for f in fields(GateThresholds))


@dataclass(frozen=True)
class DeployRequest:
    model: str
    version: str
    strategy: str
    reason: str = ""
    steps: list[float] | None = None
    step_interval_s: float | None = None
    gate: dict[str, float] = field(default_factory=dict)
    experiment: dict[str, Any] | None = None  # an A/B test's design (services/experiments)


def _now() -> datetime:
    return datetime.now(UTC)


def _event(event: str, actor: str, detail: str = "", **extra: Any) -> dict[str, Any]:
    return {"at": utc_text(_now()), "event": event, "actor": actor, "detail": detail, **extra}


def _audit(  # noqa: PLR0913 - the session, who, what, which deployment, details, events
    session: Session,
    actor: str,
    action: str,
    row: DeploymentRow,
    details: dict[str, Any],
    events: EventSettings | None,
) -> None:
    """The audit entry of a deployment change and, with events on, its ``deployment.changed``
    event, both in the caller's transaction (after the change, so the event carries the new
    state)."""
    AuditRepository(session).add(
        actor=actor,
        action=action,
        target=row.model_name,
        outcome="ok",
        details={"deployment_id": row.deployment_id, **details},
    )
    if events is None or not events.enabled:
        return
    now = session.scalars(
        select(DeploymentRow)
        .where(DeploymentRow.deployment_id == row.deployment_id)
        .execution_options(populate_existing=True)
    ).one()
    record_event(
        session,
        events,
        event_type=DEPLOYMENT_CHANGED,
        model=now.model_name,
        version=now.candidate_version,
        occurred_at=now.updated_at,
        data={
            "deployment_id": now.deployment_id,
            "action": action.removeprefix("deployment."),
            "state": now.state,
            "strategy": now.strategy,
            "stable_version": now.stable_version,
            "candidate_version": now.candidate_version,
            "traffic_share": now.traffic_share,
            "production_version": _production_after(now),
            "actor": actor,
            "reason": str(details.get("reason", "")),
        },
    )


def _production_after(row: DeploymentRow) -> str | None:
    """The version behind the ``production`` alias once this change is committed."""
    return row.candidate_version if row.state == "succeeded" else row.stable_version


def _alias_event(  # noqa: PLR0913 - the session, the settings and the move
    session: Session,
    events: EventSettings,
    name: str,
    before: str | None,
    after: str,
    action: str,
    actor: str,
    reason: str,
) -> None:
    """``deployment.changed`` for a ``production`` alias moved outside a deployment (a direct
    promotion or a rollback to a named version): no deployment id, no strategy."""
    record_event(
        session,
        events,
        event_type=DEPLOYMENT_CHANGED,
        model=name,
        version=after,
        data={
            "deployment_id": None,
            "action": action,
            "state": None,
            "strategy": None,
            "stable_version": before,
            "candidate_version": after,
            "traffic_share": 1.0,
            "production_version": after,
            "actor": actor,
            "reason": reason,
        },
    )


def thresholds(settings: DeploySettings, overrides: dict[str, Any]) -> GateThresholds:
    """The gate of a deployment: the settings, with the request's overrides."""
    unknown = sorted(set(overrides) - set(GATE_FIELDS))
    if unknown:
        raise InvalidInputError(
            f"unknown gate setting(s): {', '.join(unknown)}; known: {', '.join(GATE_FIELDS)}",
            field="gate",
        )
    base = {name: getattr(settings, name) for name in GATE_FIELDS if hasattr(settings, name)}
    return GateThresholds(**{**base, **overrides})


# -- operators ----------------------------------------------------------------------------
def start(
    ctx: AppContext, sessions: sessionmaker[Session], request: DeployRequest, actor: str
) -> dict[str, Any]:
    """Record a new deployment of ``request.version`` (pending until the serving processes
    have it loaded and healthy). Refused for a version that may not decide (no passed gate
    and no recorded override), for the version already in production, and while another
    deployment of the model is in progress (409)."""
    settings = ctx.settings.deploy
    plan = plan_for(
        request.strategy,
        request.steps or (settings.canary_steps if request.strategy == "canary" else None),
    )
    thresholds(settings, request.gate)  # refuse unknown gate settings now
    candidate = ctx.registry.get_version(request.model, request.version)
    ok, why = servable(candidate)
    if not ok:
        raise InvalidInputError(
            f"{request.model} v{candidate.version} may not decide on applicants: {why}",
            field="version",
        )
    check_promotion_evidence(ctx, sessions, request.model, candidate.version)
    stable = ctx.registry.find_alias(request.model, "production")
    if stable is not None and stable.version == candidate.version:
        raise ConflictError(
            f"{request.model} v{candidate.version} is already in production", field="version"
        )
    now = _now()
    awaiting = settings.four_eyes and plan.strategy != "shadow"  # a shadow never answers
    options = {
        "step_interval_s": request.step_interval_s or settings.step_interval_s,
        "gate": dict(request.gate),
    }
    if request.strategy == "ab_test":
        if request.experiment is None:
            raise InvalidInputError("an A/B test needs its design", field="strategy")
        options["experiment"] = request.experiment
    row = DeploymentRow(
        deployment_id=str(uuid.uuid4()),
        model_name=request.model,
        strategy=plan.strategy,
        state=AWAITING if awaiting else "pending",
        stable_version=stable.version if stable else None,
        candidate_version=candidate.version,
        steps=list(plan.steps),
        step=-1,
        traffic_share=0.0,
        options=options,
        history=[
            _event(
                "started",
                actor,
                request.reason,
                strategy=plan.strategy,
                stable=stable.version if stable else None,
                candidate=candidate.version,
            )
        ],
        started_by=actor,
        reason=request.reason,
        created_at=now,
        updated_at=now,
        step_started_at=None,
        finished_at=None,
    )
    try:
        with sessions.begin() as session:
            DeploymentRepository(session).add(row)
            _audit(
                session,
                actor,
                "deployment.start",
                row,
                {
                    "strategy": plan.strategy,
                    "candidate": candidate.version,
                    "stable": row.stable_version,
                    "reason": request.reason,
                },
                ctx.settings.events,
            )
    except DatabaseIntegrityError:
        raise ConflictError(
            f"a deployment of {request.model} is already in progress; pause, abort or wait "
            "for it first",
            field="model",
        ) from None
    return get(sessions, row.deployment_id)


def act(  # noqa: PLR0913 - which deployment, what, who, why, and the events setting
    sessions: sessionmaker[Session],
    deployment_id: str,
    action: str,
    actor: str,
    reason: str = "",
    events: EventSettings | None = None,
) -> dict[str, Any]:
    """Pause, resume or abort a deployment (an abort leaves the stable version serving)."""
    with sessions.begin() as session:
        repo = DeploymentRepository(session)
        row = repo.get(deployment_id)
        if row is None:
            raise NotFoundError(f"no deployment {deployment_id!r}", field="deployment_id")
        target = next_state(row.state, action)
        if action == "approve" and actor == row.started_by:
            raise ConflictError(
                "four-eyes: the approver must be another key holder than the requester "
                f"({row.started_by})",
                field="actor",
            )
        values: dict[str, Any] = {
            "state": target,
            "updated_at": _now(),
            "history": [*row.history, _event(action, actor, reason)],
        }
        if target == "aborted":
            values.update(traffic_share=0.0, finished_at=_now())
        if not repo.move(deployment_id, [row.state], **values):
            raise ConflictError("the deployment changed meanwhile; try again", field="state")
        _audit(
            session,
            actor,
            f"deployment.{action}",
            row,
            {"reason": reason, "from": row.state},
            events,
        )
    return get(sessions, deployment_id)


def rollback(  # noqa: PLR0913 - the model, who, why and an optional target
    ctx: AppContext,
    sessions: sessionmaker[Session],
    name: str,
    actor: str,
    reason: str,
    to: str | None = None,
) -> dict[str, Any]:
    """Back to the previous production version. A deployment in progress is rolled back
    (its candidate stops answering); otherwise the ``production`` alias moves back to the
    version the last deployment replaced, or to ``to``, which must be servable."""
    with sessions() as session:
        active = DeploymentRepository(session).active(name)
        last = DeploymentRepository(session).last(name)
    if active and to is None:
        return _roll_back(ctx, sessions, active[0], actor, reason or "manual rollback", {})
    current = ctx.registry.find_alias(name, "production")
    if to is None:
        if last is None or last.state != "succeeded" or last.stable_version is None:
            raise ConflictError(
                f"no previous production version of {name} is recorded; pass --to VERSION",
                field="to",
            )
        return _roll_back(ctx, sessions, last, actor, reason or "manual rollback", {})
    target = ctx.registry.get_version(name, to)
    ok, why = servable(target)
    if not ok:
        raise InvalidInputError(f"{name} v{target.version} may not decide: {why}", field="to")
    if current is not None and current.version == target.version:
        raise ConflictError(f"{name} v{target.version} is already in production", field="to")
    if active:
        _roll_back(ctx, sessions, active[0], actor, reason or "manual rollback", {})
    ctx.registry.set_alias(name, "production", target.version)
    with sessions.begin() as session:
        AuditRepository(session).add(
            actor=actor,
            action="model.rollback",
            target=name,
            outcome="ok",
            details={
                "from": current.version if current else None,
                "to": target.version,
                "reason": reason,
            },
        )
        if ctx.settings.events.enabled:
            before = current.version if current else None
            _alias_event(
                session,
                ctx.settings.events,
                name,
                before,
                target.version,
                "rollback",
                actor,
                reason,
            )
    return {
        "model": name,
        "from_version": current.version if current else None,
        "to_version": target.version,
        "reason": reason,
    }


def promote(  # noqa: PLR0913 - who asks, for what, how and why
    ctx: AppContext,
    sessions: sessionmaker[Session],
    name: str,
    version: str | None,
    strategy: str | None,
    actor: str,
    reason: str = "",
) -> dict[str, Any]:
    """Staging to production: a deployment of the ``staging`` version (or ``version``) with
    the default strategy (``deploy.default_strategy``) unless another is named."""
    candidate = ctx.registry.get_version(name, version or "staging")
    chosen = strategy or ctx.settings.deploy.default_strategy
    return start(
        ctx,
        sessions,
        DeployRequest(model=name, version=candidate.version, strategy=chosen, reason=reason),
        actor,
    )


def promote_alias(  # noqa: PLR0913 - the alias move of `creditops models promote`
    ctx: AppContext,
    sessions: sessionmaker[Session],
    name: str,
    version: str,
    alias: str,
    *,
    force: bool,
    reason: str,
    actor: str,
) -> VersionInfo:
    """Move an alias directly (the CLI's ``models promote``), with an audit entry; an
    override of the gate (``force`` with ``reason``) is audited as such. With four-eyes
    promotion on, a move of ``production`` is refused: it must be a deployment that a
    second person approves."""
    if alias == "production" and ctx.settings.deploy.four_eyes:
        raise ConflictError(
            "four-eyes promotion is on: start a deployment (`creditops deploy start`) and "
            "have another key holder with scope 'promote' approve it",
            field="to",
        )
    before = ctx.registry.get_version(name, version)
    if alias == "production":
        check_promotion_evidence(ctx, sessions, name, before.version)
    before_production = ctx.registry.find_alias(name, "production")
    info = move_alias(ctx, name, version, alias, force=force, reason=reason, actor=actor)
    with sessions.begin() as session:
        audit = AuditRepository(session)
        if alias == "production" and not servable(before)[0]:
            audit.add(
                actor, "model.gate_override", f"{name}:{info.version}", "ok", {"reason": reason}
            )
        audit.add(
            actor,
            "model.promote",
            f"{name}:{info.version}",
            "ok",
            {"alias": alias, "reason": reason},
        )
        if alias == "production" and ctx.settings.events.enabled:
            production = before_production.version if before_production else None
            _alias_event(
                session,
                ctx.settings.events,
                name,
                production,
                info.version,
                "promote",
                actor,
                reason,
            )
    return info


# -- reading ------------------------------------------------------------------------------
def to_dict(row: DeploymentRow) -> dict[str, Any]:
    return {
        "deployment_id": row.deployment_id,
        "model": row.model_name,
        "strategy": row.strategy,
        "state": row.state,
        "stable_version": row.stable_version,
        "candidate_version": row.candidate_version,
        "traffic_share": row.traffic_share,
        "step": row.step,
        "steps": list(row.steps),
        "options": dict(row.options),
        "history": list(row.history),
        "started_by": row.started_by,
        "reason": row.reason,
        "created_at": utc_text(row.created_at),
        "updated_at": utc_text(row.updated_at),
        "finished_at": utc_text(row.finished_at),
        "results": dict(row.results or {}),
    }


def get(sessions: sessionmaker[Session], deployment_id: str) -> dict[str, Any]:
    """A deployment; a shadow's carries its comparison report."""
    with sessions() as session:
        row = DeploymentRepository(session).get(deployment_id)
        if row is None:
            raise NotFoundError(f"no deployment {deployment_id!r}", field="deployment_id")
        result = to_dict(row)
        if row.strategy == "shadow":
            pairs = ShadowRepository(session).compared(deployment_id, SHADOW_COMPARED)
            primary = [_compared(d) for _, d in pairs]
            shadow = [_compared(sh) for sh, _ in pairs]
            result["shadow_report"] = compare_shadow(primary, shadow)
    return result


def _compared(row: DecisionRow | ShadowDecisionRow) -> dict[str, Any]:
    """One side of a shadow comparison pair (``monitoring/canary.compare_shadow``)."""
    return {
        "application_id": row.application_id,
        "pd": row.pd,
        "decision": row.decision,
        "reasons": row.reasons,
    }


def list_deployments(
    sessions: sessionmaker[Session], model: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    with sessions() as session:
        return [to_dict(r) for r in DeploymentRepository(session).list(model, limit, offset)]


# -- the worker's part --------------------------------------------------------------------
def drive(
    ctx: AppContext, sessions: sessionmaker[Session], now: datetime | None = None
) -> list[str]:
    """One pass over the deployments in progress (see the module docstring); returns what
    it did, as messages."""
    now = now or _now()
    settings = ctx.settings.deploy
    with sessions.begin() as session:
        ServingProcessRepository(session).forget_stale(
            now - timedelta(seconds=10 * settings.process_stale_s)
        )
    with sessions() as session:
        active = DeploymentRepository(session).active()
        alive = ServingProcessRepository(session).alive(
            now - timedelta(seconds=settings.process_stale_s)
        )
        reports = [(p.process_id, dict(p.report)) for p in alive]
    done = []
    for row in active:
        try:
            message = _drive_one(ctx, sessions, row, reports, now)
        except CreditopsError as exc:
            log.error("deployment %s: %s", row.deployment_id, exc.message)
            continue
        if message:
            log.warning("%s", message)
            done.append(message)
    return done


Entries = list[tuple[str, dict[str, Any] | None]]


def _drive_one(
    ctx: AppContext,
    sessions: sessionmaker[Session],
    row: DeploymentRow,
    reports: list[tuple[str, dict[str, Any]]],
    now: datetime,
) -> str | None:
    settings = ctx.settings.deploy
    limits = thresholds(settings, row.options.get("gate") or {})
    serving = [(pid, r) for pid, r in reports if row.model_name in r.get("serving", {})]
    entries: Entries = [
        (pid, r.get("deployments", {}).get(row.deployment_id)) for pid, r in serving
    ]
    counts = (
        sum(int(e.get("attempts", 0)) for _, e in entries if e),
        sum(int(e.get("errors", 0)) for _, e in entries if e),
    )
    unhealthy = _unhealthy(sessions, row, entries, counts, limits)
    if unhealthy is not None:
        return _message(_roll_back(ctx, sessions, row, "worker", *unhealthy))
    if row.state == "pending":
        ready = row.strategy == "rolling" or all(e and e.get("ready") for _, e in entries)
        if ready:
            return _begin(ctx, sessions, row, len(serving))
        if now - row.created_at > timedelta(seconds=settings.ready_timeout_s):
            waiting = [pid for pid, e in entries if not (e and e.get("ready"))]
            return _message(
                _roll_back(
                    ctx,
                    sessions,
                    row,
                    "worker",
                    "the candidate was not ready in time",
                    {"waiting_for": waiting},
                )
            )
        return None
    if row.state != "progressing" or row.strategy in ("shadow", "ab_test"):
        return None  # a shadow runs until stopped; an experiment is judged by its looks
    if row.strategy != "canary":
        return _succeed(ctx, sessions, row, {})
    interval = float(row.options.get("step_interval_s") or settings.step_interval_s)
    if row.step_started_at is None or now - row.step_started_at < timedelta(seconds=interval):
        return None
    return _judge(ctx, sessions, row, limits, counts)


def _unhealthy(
    sessions: sessionmaker[Session],
    row: DeploymentRow,
    entries: Entries,
    counts: tuple[int, int],
    limits: GateThresholds,
) -> tuple[str, dict[str, Any]] | None:
    """Why the candidate must be rolled back now, with the evidence, or None: a failed
    health check in any serving process, the error rate, or the p99 latency."""
    for pid, entry in entries:
        if entry and entry.get("health_error"):
            evidence = {"process": pid, "health_error": entry["health_error"]}
            return "the candidate failed its health check", evidence
    attempts, errors = counts
    if attempts >= MIN_ATTEMPTS and errors / attempts > limits.max_error_rate:
        evidence = {
            "attempts": attempts,
            "errors": errors,
            "error_rate": errors / attempts,
            "threshold": limits.max_error_rate,
        }
        reason = (
            f"the candidate's error rate {errors / attempts:.1%} exceeds "
            f"{limits.max_error_rate:.0%}"
        )
        return reason, evidence
    return _slow_candidate(sessions, row, limits)


def _slow_candidate(
    sessions: sessionmaker[Session], row: DeploymentRow, limits: GateThresholds
) -> tuple[str, dict[str, Any]] | None:
    """The reason and evidence when the candidate's p99 latency over its current step is
    above the limit (judged from MIN_LATENCY_DECISIONS decisions on), else None."""
    if row.step_started_at is None or row.strategy == "shadow":
        return None
    with sessions() as session:
        latencies = DeploymentRepository(session).latencies(
            row.deployment_id, ARM_CANDIDATE, row.step_started_at
        )
    if len(latencies) < MIN_LATENCY_DECISIONS:
        return None
    p99 = float(np.percentile(latencies, 99))
    if p99 <= limits.max_p99_latency_ms:
        return None
    evidence = {"p99_latency_ms": p99, "threshold": limits.max_p99_latency_ms, "n": len(latencies)}
    return (
        f"the candidate's p99 latency {p99:.0f} ms exceeds {limits.max_p99_latency_ms:.0f} ms",
        evidence,
    )


def _message(result: dict[str, Any]) -> str:
    return f"{result['model']}: deployment {result['deployment_id']} {result['state']}"


def _begin(
    ctx: AppContext, sessions: sessionmaker[Session], row: DeploymentRow, processes: int
) -> str:
    """Pending to progressing: the first step's share (all traffic but for a canary or a
    shadow); immediate, blue-green and rolling then succeed at once."""
    plan = plan_for(row.strategy, row.steps if row.strategy in ("canary", "ab_test") else None)
    share = plan.share(0)
    now = _now()
    detail = f"candidate ready in {processes} serving process(es)"
    with sessions.begin() as session:
        moved = DeploymentRepository(session).move(
            row.deployment_id,
            ["pending"],
            state="progressing",
            step=0,
            traffic_share=share,
            step_started_at=now,
            updated_at=now,
            history=[*row.history, _event("progressing", "worker", detail, step=0, share=share)],
        )
        if moved:
            _audit(
                session,
                "worker",
                "deployment.step",
                row,
                {"step": 0, "share": share},
                ctx.settings.events,
            )
    if not moved:
        return f"{row.model_name}: deployment {row.deployment_id} changed meanwhile"
    if row.strategy in ("immediate", "blue_green", "rolling"):
        fresh = _reload(sessions, row.deployment_id)
        return _succeed(ctx, sessions, fresh, {})
    return f"{row.model_name}: deployment {row.deployment_id} at {share:.0%}"


def _reload(sessions: sessionmaker[Session], deployment_id: str) -> DeploymentRow:
    with sessions() as session:
        row = DeploymentRepository(session).get(deployment_id)
        assert row is not None
        session.expunge(row)
        return row


def _judge(
    ctx: AppContext,
    sessions: sessionmaker[Session],
    row: DeploymentRow,
    limits: GateThresholds,
    counts: tuple[int, int],
) -> str:
    assert row.step_started_at is not None
    stable, candidate = _windows(ctx, sessions, row, counts)
    verdict = judge_step(stable, candidate, limits)
    evidence = {"step": row.step, "share": row.traffic_share, **verdict.to_dict()}
    if verdict.outcome == "failed":
        reason = f"canary step {row.step} failed: {', '.join(verdict.failed_checks)}"
        return _message(_roll_back(ctx, sessions, row, "worker", reason, evidence))
    if verdict.outcome == "insufficient_data":
        last = row.history[-1] if row.history else {}
        if last.get("event") != "waiting" or last.get("step") != row.step:
            with sessions.begin() as session:
                DeploymentRepository(session).move(
                    row.deployment_id,
                    ["progressing"],
                    updated_at=_now(),
                    history=[
                        *row.history,
                        _event(
                            "waiting", "worker", "too few decisions to judge the step", **evidence
                        ),
                    ],
                )
        return f"{row.model_name}: deployment {row.deployment_id} waits for traffic"
    plan = plan_for("canary", row.steps)
    if plan.last_step(row.step):
        return _succeed(ctx, sessions, row, evidence)
    step = row.step + 1
    share = plan.share(step)
    now = _now()
    with sessions.begin() as session:
        if DeploymentRepository(session).move(
            row.deployment_id,
            ["progressing"],
            step=step,
            traffic_share=share,
            step_started_at=now,
            updated_at=now,
            history=[
                *row.history,
                _event("step_passed", "worker", f"step {row.step} passed", **evidence),
                _event("progressing", "worker", "", step=step, share=share),
            ],
        ):
            _audit(
                session,
                "worker",
                "deployment.step",
                row,
                {"step": step, "share": share, "gate": verdict.to_dict()},
                ctx.settings.events,
            )
    return (
        f"{row.model_name}: deployment {row.deployment_id} passed step {row.step}, at {share:.0%}"
    )


_SPECS: dict[tuple[str, str], Spec] = {}


def spec_of(ctx: AppContext, name: str, version: str) -> Spec:
    """The spec of a version (cached: a version's spec never changes)."""
    key = (name, version)
    if key not in _SPECS:
        _SPECS[key] = load_model(ctx, name, version).model.spec
    return _SPECS[key]


def _windows(
    ctx: AppContext, sessions: sessionmaker[Session], row: DeploymentRow, counts: tuple[int, int]
) -> tuple[ArmWindow, ArmWindow]:
    """Both arms' decisions since the step started."""
    assert row.step_started_at is not None
    with sessions() as session:
        repo = DeploymentRepository(session)
        decided = repo.arm_decisions(row.deployment_id, row.step_started_at)
        timed = {
            arm: repo.latencies(row.deployment_id, arm, row.step_started_at)
            for arm in (ARM_STABLE, ARM_CANDIDATE)
        }
    spec = spec_of(ctx, row.model_name, row.candidate_version)
    arms = []
    for arm in (ARM_STABLE, ARM_CANDIDATE):
        mine = [d for d in decided if d[0] == arm]
        inputs = pd.DataFrame([d[3] for d in mine])
        groups = {
            column: protected_groups(inputs, spec, column)
            for column in spec.protected
            if column in inputs.columns
        }
        attempts, errors = counts if arm == ARM_CANDIDATE else (0, 0)
        arms.append(
            ArmWindow(
                pd=np.array([d[1] for d in mine], dtype=np.float64),
                approved=np.array([d[2] == "approve" for d in mine], dtype=bool),
                latency_ms=np.array(timed[arm], dtype=np.float64),
                groups=groups,
                attempts=attempts,
                errors=errors,
            )
        )
    return arms[0], arms[1]


def _succeed(
    ctx: AppContext, sessions: sessionmaker[Session], row: DeploymentRow, evidence: dict[str, Any]
) -> str:
    """The last step passed: the ``production`` alias moves to the candidate (first, so a
    failure leaves the deployment in progress to be retried), then the state."""
    ctx.registry.set_alias(row.model_name, "production", row.candidate_version)
    now = _now()
    with sessions.begin() as session:
        if DeploymentRepository(session).move(
            row.deployment_id,
            ["progressing"],
            state="succeeded",
            traffic_share=1.0,
            updated_at=now,
            finished_at=now,
            history=[
                *row.history,
                _event(
                    "succeeded", "worker", f"production is now v{row.candidate_version}", **evidence
                ),
            ],
        ):
            _audit(
                session,
                "worker",
                "deployment.promote",
                row,
                {"from": row.stable_version, "to": row.candidate_version},
                ctx.settings.events,
            )
    return (
        f"{row.model_name}: {row.deployment_id} succeeded, production is v{row.candidate_version}"
    )


def save_results(
    sessions: sessionmaker[Session], row: DeploymentRow, results: dict[str, Any]
) -> None:
    """Store what the worker measured (an experiment's looks) on a deployment in progress."""
    with sessions.begin() as session:
        DeploymentRepository(session).move(
            row.deployment_id, ["progressing", "paused"], results=results, updated_at=_now()
        )
    row.results = results


def stop_experiment(  # noqa: PLR0913 - the experiment, who, why and the evidence
    ctx: AppContext,
    sessions: sessionmaker[Session],
    row: DeploymentRow,
    actor: str,
    reason: str,
    evidence: dict[str, Any],
) -> str:
    """A guardrail was breached: the treatment stops answering, with an alert."""
    return _message(_roll_back(ctx, sessions, row, actor, reason, evidence))


def finish_experiment(  # noqa: PLR0913 - the experiment, who, the verdict, what to do
    ctx: AppContext,
    sessions: sessionmaker[Session],
    row: DeploymentRow,
    actor: str,
    verdict: str,
    *,
    promote: bool,
) -> str:
    """Conclude an experiment: promote the treatment (the alias moves) or keep control."""
    if promote:
        return _succeed(ctx, sessions, row, {"verdict": verdict, "concluded_by": actor})
    now = _now()
    with sessions.begin() as session:
        moved = DeploymentRepository(session).move(
            row.deployment_id,
            list(ACTIVE_STATES),
            state="aborted",
            traffic_share=0.0,
            updated_at=now,
            finished_at=now,
            history=[*row.history, _event("concluded", actor, f"{verdict}: control kept")],
        )
        if not moved:
            raise ConflictError("the experiment already ended", field="state")
        _audit(
            session,
            actor,
            "deployment.conclude",
            row,
            {"verdict": verdict, "kept": row.stable_version},
            ctx.settings.events,
        )
    return f"{row.model_name}: experiment {row.deployment_id} concluded ({verdict}), control kept"


def _roll_back(  # noqa: PLR0913 - the deployment, who, why and the evidence
    ctx: AppContext,
    sessions: sessionmaker[Session],
    row: DeploymentRow,
    actor: str,
    reason: str,
    evidence: dict[str, Any],
) -> dict[str, Any]:
    """The candidate stops answering; after a success the alias moves back too. Audited,
    and alerted with the evidence."""
    if row.state == "succeeded":
        if row.stable_version is None:
            raise ConflictError("this deployment replaced no version; pass --to", field="to")
        ctx.registry.set_alias(row.model_name, "production", row.stable_version)
    now = _now()
    with sessions.begin() as session:
        moved = DeploymentRepository(session).move(
            row.deployment_id,
            [*ACTIVE_STATES, "succeeded"],
            state="rolled_back",
            traffic_share=0.0,
            updated_at=now,
            finished_at=row.finished_at or now,
            history=[*row.history, _event("rolled_back", actor, reason, evidence=evidence)],
        )
        if not moved:
            raise ConflictError("the deployment already ended", field="state")
        _audit(
            session,
            actor,
            "deployment.rollback",
            row,
            {"reason": reason, "evidence": evidence, "back_to": row.stable_version},
            ctx.settings.events,
        )
    _alert(ctx, row, reason, evidence)
    return get(sessions, row.deployment_id)


def _alert(ctx: AppContext, row: DeploymentRow, reason: str, evidence: dict[str, Any]) -> None:
    if not ctx.settings.alerts.enabled:
        return
    alert = Alert(
        key=f"{row.model_name}:deployment:{row.deployment_id}",
        model=row.model_name,
        kind="deployment",
        severity="critical",
        title=f"Deployment of {row.model_name} v{row.candidate_version} rolled back",
        summary=reason,
        at=_now(),
        details={
            "deployment": row.deployment_id,
            "strategy": row.strategy,
            "stable": row.stable_version,
            "candidate": row.candidate_version,
            "evidence": evidence,
        },
    )
    try:
        ctx.alert_dispatcher.dispatch(alert)
    except CreditopsError as exc:  # a broken channel must not stop the rollback
        log.warning("rollback alert not sent: %s", exc.message)


def refused_alert(ctx: AppContext, model: str, version: str, why: str) -> None:
    """An API process refused to serve the version the production alias names."""
    if not ctx.settings.alerts.enabled:
        return
    alert = Alert(
        key=f"{model}:refused:{version}",
        model=model,
        kind="deployment",
        severity="critical",
        title=f"Refused to serve {model} v{version}",
        summary=f"the production alias names v{version}, but {why}",
        at=_now(),
        details={"version": version, "why": why},
    )
    try:
        ctx.alert_dispatcher.dispatch(alert)
    except CreditopsError as exc:
        log.warning("refusal alert not sent: %s", exc.message)


__all__ = [
    "STRATEGIES",
    "DeployRequest",
    "act",
    "drive",
    "get",
    "list_deployments",
    "promote",
    "promote_alias",
    "refused_alert",
    "rollback",
    "start",
]


def latest_per_model(sessions: sessionmaker[Session], names: list[str]) -> list[dict[str, Any]]:
    """The latest deployment of each of ``names`` (for the Prometheus gauges)."""
    found = []
    with sessions() as session:
        repo = DeploymentRepository(session)
        for name in names:
            row = repo.last(name)
            if row is not None:
                found.append(to_dict(row))
    return found
