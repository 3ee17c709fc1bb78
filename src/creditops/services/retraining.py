"""Retraining: triggers become jobs, and the worker runs a job through its stages.

**Triggers** (``monitoring/triggers.py`` judges them) are recorded with their kind, reason
and evidence in ``retrain_triggers``, together with what came of them: a queued job, or
why none (a job of the model is queued or running; the cool-down after the last finished
job holds). ``force`` (manual requests) skips the cool-down, never the one-job rule.

**A job** (``jobs``; run by ``creditops worker``, never by the API) goes through
:data:`STAGES`: assemble the data (the parent version's original training file, checked
against its recorded hash, plus matured labelled decisions), check it, train with the
parent's spec and training settings, gate the challenger against the champion on a common
holdout (the champion's test split plus the out-of-time production rows), register it with
its lineage (``staging`` alias when the gate passes), notify. A retraining whose data,
spec and settings hashes equal an existing version's registers nothing and names that
version. Cancellation is checked between stages.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from sqlalchemy.exc import IntegrityError as DatabaseIntegrityError
from sqlalchemy.orm import Session, sessionmaker

from creditops.alerts.episodes import Alert
from creditops.domain.windows import utc_text
from creditops.errors import CreditopsError, NotFoundError
from creditops.features.assembly import (
    DECIDED_AT,
    Assembled,
    AssemblyConfig,
    DataLimits,
    assemble,
    check_training_data,
    failed,
)
from creditops.features.dataset import file_sha256, load_training_data, read_table
from creditops.modeling.gate import load_gate_profile
from creditops.monitoring.drift.binned import drift_from_profile
from creditops.monitoring.triggers import (
    DriftObservation,
    DriftRule,
    Trigger,
    drift_trigger,
    new_data_trigger,
    performance_trigger,
    schedule_trigger,
)
from creditops.registry.records import VersionInfo
from creditops.services.context import AppContext
from creditops.services.model_versions import (
    SETTINGS_ARTIFACT,
    LoadedModel,
    load_model,
    load_test_set,
)
from creditops.services.training import (
    TrainRequest,
    canonical_sha256,
    register_version,
    train_version,
)
from creditops.services.validation import judge
from creditops.settings import RetrainSettings
from creditops.store.job_repositories import JobRepository, TriggerRepository
from creditops.store.monitoring_repositories import (
    MonitoringReportRepository,
    MonitorStateRepository,
)
from creditops.store.repositories import LabelledWindowRepository
from creditops.store.tables import JobRow, TriggerRow

log = logging.getLogger(__name__)
STAGES = ("assemble", "check", "train", "evaluate", "register", "notify")
DRIFT_HISTORY = 500  # stored data-drift checks the drift trigger looks back over


class JobCancelledError(CreditopsError):
    code = "job_cancelled"


class JobFailedError(CreditopsError):
    """A job stopped with a reason (data gone or unfit, ...); ``details`` go to its result."""

    code = "job_failed"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class TriggerOutcome:
    kind: str
    reason: str
    outcome: str  # job_queued | debounced
    detail: str
    job_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- triggers -----------------------------------------------------------------------------
def request_retrain(  # noqa: PLR0913 - who asks, for what, and why
    ctx: AppContext,
    sessions: sessionmaker[Session],
    model: str,
    trigger: Trigger,
    *,
    force: bool = False,
    requested_by: str = "worker",
) -> TriggerOutcome:
    """Record ``trigger`` and queue a retraining job of ``model`` unless one is queued or
    running, or (without ``force``) the cool-down after the last finished job holds."""
    settings = ctx.settings.retrain.for_model(model)
    now = datetime.now(UTC)
    detail, job_id = "", None
    try:
        with sessions.begin() as session:
            jobs = JobRepository(session)
            active = jobs.active(model)
            if active is not None:
                detail = f"job {active.job_id} is {active.state}"
            elif not force and (last := jobs.last_finished(model)) is not None:
                until = (last.finished_at or now) + timedelta(hours=settings.cooldown_hours)
                if now < until:
                    detail = f"cool-down after job {last.job_id} until {utc_text(until)}"
            if not detail:
                job_id = str(uuid.uuid4())
                jobs.add(_new_job(job_id, model, trigger, requested_by, force, now))
    except DatabaseIntegrityError:  # uq_jobs_active_model: another process queued one first
        job_id, detail = None, "another process queued a job of this model at the same time"
    outcome = "job_queued" if job_id else "debounced"
    _record(sessions, model, trigger, outcome, detail, job_id)
    log.info("retraining trigger %s of %s: %s %s", trigger.kind, model, outcome, detail)
    return TriggerOutcome(trigger.kind, trigger.reason, outcome, detail, job_id)


def _new_job(  # noqa: PLR0913 - the columns of one new row
    job_id: str, model: str, trigger: Trigger, requested_by: str, force: bool, now: datetime
) -> JobRow:
    return JobRow(
        job_id=job_id,
        model_name=model,
        kind="retrain",
        trigger_kind=trigger.kind,
        trigger_reason=trigger.reason,
        evidence=dict(trigger.evidence),
        requested_by=requested_by,
        force=force,
        state="queued",
        stage=None,
        created_at=now,
        started_at=None,
        finished_at=None,
        cancel_requested=False,
        worker=None,
        result={},
        log=f"{utc_text(now)} queued by {requested_by}: {trigger.reason}\n",
    )


def _record(  # noqa: PLR0913 - the columns of one trigger row
    sessions: sessionmaker[Session],
    model: str,
    trigger: Trigger,
    outcome: str,
    detail: str,
    job_id: str | None,
) -> None:
    with sessions.begin() as session:
        TriggerRepository(session).add(
            TriggerRow(
                model_name=model,
                kind=trigger.kind,
                reason=trigger.reason,
                evidence=dict(trigger.evidence),
                at=datetime.now(UTC),
                outcome=outcome,
                detail=detail,
                job_id=job_id,
            )
        )


def due_triggers(
    ctx: AppContext, sessions: sessionmaker[Session], model: str, checked: dict[str, Any]
) -> list[Trigger]:
    """The triggers that hold for ``model`` now (``checked``: the latest check's results
    by kind), among those enabled in the settings."""
    settings = ctx.settings.retrain.for_model(model)
    now = datetime.now(UTC)
    found: list[Trigger | None] = []
    if "drift" in settings.triggers:
        found.append(drift_trigger(_drift_history(sessions, model), now, _drift_rule(settings)))
    if "performance" in settings.triggers and "performance" in checked:
        drop = ctx.settings.monitor.max_performance_drop
        found.append(performance_trigger(checked["performance"], drop))
    if "new_data" in settings.triggers:
        found.append(_new_data(ctx, sessions, model, settings, now))
    if "schedule" in settings.triggers and settings.schedule:
        found.append(_scheduled(sessions, model, settings.schedule, now))
    return [t for t in found if t is not None]


def act_on_triggers(
    ctx: AppContext, sessions: sessionmaker[Session], model: str, checked: dict[str, Any]
) -> list[TriggerOutcome]:
    """Record every trigger that holds and queue at most one job for them."""
    return [
        request_retrain(ctx, sessions, model, t)
        for t in due_triggers(ctx, sessions, model, checked)
    ]


def _drift_rule(settings: RetrainSettings) -> DriftRule:
    return DriftRule(
        timedelta(hours=settings.drift_sustained_hours), settings.drift_score, settings.drift_share
    )


def _drift_history(sessions: sessionmaker[Session], model: str) -> list[DriftObservation]:
    with sessions() as session:
        rows = MonitoringReportRepository(session).list(model, "data_drift", DRIFT_HISTORY, 0)
        return [
            DriftObservation(
                row.created_at,
                row.level,
                row.summary.get("drift_score"),
                row.summary.get("drifted_share"),
                row.report_id,
            )
            for row in rows
        ]


def _new_data(
    ctx: AppContext,
    sessions: sessionmaker[Session],
    model: str,
    settings: RetrainSettings,
    now: datetime,
) -> Trigger | None:
    versions = ctx.registry.list_versions(model)
    if not versions:
        return None
    since = max(v.created_at for v in versions)
    until = now - timedelta(days=settings.outcome_maturity_days)
    with sessions() as session:
        matured = LabelledWindowRepository(session).count_matured(model, since, until)
    return new_data_trigger(matured, settings.new_data_outcomes, since)


def _scheduled(
    sessions: sessionmaker[Session], model: str, expression: str, now: datetime
) -> Trigger | None:
    key = f"retrain_schedule:{model}"
    with sessions.begin() as session:
        state = MonitorStateRepository(session)
        started = (state.get(key) or {}).get("since")
        if started is None:
            state.put(key, {"since": utc_text(now)})
            return None
        last = TriggerRepository(session).last_of_kind(model, "schedule")
    base = (
        max(datetime.fromisoformat(started), last.at) if last else datetime.fromisoformat(started)
    )
    return schedule_trigger(expression, base, now)


# -- jobs: queries ------------------------------------------------------------------------
def job_dict(row: JobRow) -> dict[str, Any]:
    return {
        "job_id": row.job_id,
        "model": row.model_name,
        "kind": row.kind,
        "trigger": {
            "kind": row.trigger_kind,
            "reason": row.trigger_reason,
            "evidence": row.evidence,
        },
        "requested_by": row.requested_by,
        "force": row.force,
        "state": row.state,
        "stage": row.stage,
        "created_at": utc_text(row.created_at),
        "started_at": utc_text(row.started_at),
        "finished_at": utc_text(row.finished_at),
        "cancel_requested": row.cancel_requested,
        "result": row.result,
        "log": row.log,
    }


def list_jobs(
    sessions: sessionmaker[Session], model: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    with sessions() as session:
        return [job_dict(r) for r in JobRepository(session).list(model, limit, offset)]


def get_job(sessions: sessionmaker[Session], job_id: str) -> dict[str, Any]:
    with sessions() as session:
        row = JobRepository(session).get(job_id)
        if row is None:
            raise NotFoundError(f"job {job_id!r} does not exist", field="job_id")
        return job_dict(row)


def cancel_job(sessions: sessionmaker[Session], job_id: str) -> dict[str, Any]:
    """Cancel a queued job at once; ask a running one to stop at its next stage."""
    with sessions.begin() as session:
        row = JobRepository(session).cancel(job_id)
        if row is None:
            raise NotFoundError(f"job {job_id!r} does not exist", field="job_id")
        return job_dict(row)


def list_triggers(
    sessions: sessionmaker[Session], model: str | None, limit: int
) -> list[dict[str, Any]]:
    with sessions() as session:
        return [
            {
                "model": r.model_name,
                "kind": r.kind,
                "reason": r.reason,
                "evidence": r.evidence,
                "at": utc_text(r.at),
                "outcome": r.outcome,
                "detail": r.detail,
                "job_id": r.job_id,
            }
            for r in TriggerRepository(session).list(model, limit)
        ]


# -- jobs: running ------------------------------------------------------------------------
def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_pending_job(ctx: AppContext, sessions: sessionmaker[Session]) -> str | None:
    """Fail the jobs a dead worker left running, then run the oldest queued job. The caller
    holds the job lock, so no other process can be running a job meanwhile. Returns the id
    of the job run (None when none was queued)."""
    with sessions.begin() as session:
        repo = JobRepository(session)
        abandoned = [(j, repo.get(j)) for j in repo.fail_abandoned("the worker running it stopped")]
        abandoned_rows = [job_dict(row) for _, row in abandoned if row is not None]
    for job in abandoned_rows:
        _notify(ctx, job, "failed", job["result"].get("reason", ""))
    with sessions.begin() as session:
        repo = JobRepository(session)
        row = repo.next_queued()
        if row is None or not repo.claim(row.job_id, worker_name(), datetime.now(UTC)):
            return None
        job = job_dict(row)
    JobRun(ctx, sessions, job).execute()
    return str(job["job_id"])


class JobRun:
    """One job through :data:`STAGES` (see the module docstring)."""

    def __init__(self, ctx: AppContext, sessions: sessionmaker[Session], job: dict[str, Any]):
        self.ctx, self.sessions, self.job = ctx, sessions, job
        self.model: str = job["model"]
        self.settings = ctx.settings.retrain.for_model(self.model)
        self.work = Path(tempfile.mkdtemp(prefix=f"job-{job['job_id'][:8]}-"))

    def say(self, stage: str, line: str = "") -> None:
        """Progress: the stage and a log line; raises when a cancellation was asked for."""
        text = f"{datetime.now(UTC).isoformat(timespec='milliseconds')} [{stage}] {line}".rstrip()
        with self.sessions.begin() as session:
            cancel = JobRepository(session).set_stage(self.job["job_id"], stage, text)
        if cancel:
            raise JobCancelledError(f"cancelled during stage {stage}")

    def execute(self) -> None:
        _notify(self.ctx, self.job, "started", self.job["trigger"]["reason"])
        try:
            result = self._stages()
        except JobCancelledError as exc:
            self._finish("cancelled", {"reason": exc.message}, exc.message)
        except JobFailedError as exc:
            self._finish("failed", {"reason": exc.message, **exc.details}, exc.message)
        except CreditopsError as exc:
            self._finish("failed", {"reason": exc.message}, exc.message)
        except Exception as exc:  # a job must end in a state, whatever broke
            log.exception("job %s failed", self.job["job_id"])
            reason = f"{type(exc).__name__}: {exc}"
            self._finish("failed", {"reason": reason}, reason)
        else:
            self._finish("succeeded", result, result.get("summary", "done"))
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    def _finish(self, state: str, result: dict[str, Any], line: str) -> None:
        stamped = f"{datetime.now(UTC).isoformat(timespec='milliseconds')} [{state}] {line}"
        with self.sessions.begin() as session:
            JobRepository(session).finish(self.job["job_id"], state, result, stamped)
        if state != "cancelled":
            event = (
                "failed" if state == "failed" or result.get("gate_passed") is False else "passed"
            )
            self.job["result"] = result
            _notify(self.ctx, self.job, event, line)

    def _stages(self) -> dict[str, Any]:
        self.say("assemble", "loading the production version")
        parent = self._parent()
        assembled, data_path = self._assemble(parent)
        self.say("check", f"{assembled.counts['total']} rows: checking them")
        data_checks, psi = self._check(parent, data_path)
        settings = self._parent_settings(parent)
        spec_path = self.work / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(parent.model.bundle.spec, sort_keys=False))
        request = TrainRequest(spec_path=spec_path, data_path=data_path, name=self.model)
        reused = self._same_as_existing(parent, data_path, settings)
        if reused is not None:
            summary = (
                f"data, spec and settings equal version {reused.version}'s: nothing registered"
            )
            self.say("register", summary)
            return {"registered": False, "version": reused.version, "summary": summary}
        self.say("train", "training with the parent's spec and settings")
        trained = train_version(self.ctx, request, lambda m: self.say("train", m), settings)
        self.say("evaluate", "gating against the champion on the common holdout")
        verdict, profile = self._gate(
            trained.result.model, trained.result.evaluation, parent, assembled
        )
        tags = self._tags(parent, assembled, verdict.result, profile)
        trained.artifacts["data/training.parquet"] = data_path
        self.say("register", "registering the candidate")
        registered = register_version(self.ctx, trained, lambda m: self.say("register", m), tags)
        if verdict.result.passed:
            self.ctx.registry.set_alias(self.model, "staging", registered.version)
        failed_checks = [
            f"{c.metric}{'[' + c.attribute + ']' if c.attribute else ''}"
            for c in verdict.result.failed
        ]
        self.say(
            "notify",
            "gate passed: staging"
            if verdict.result.passed
            else f"gate failed: {', '.join(failed_checks)}",
        )
        return {
            "registered": True,
            "version": registered.version,
            "parent_version": parent.info.version,
            "gate_passed": verdict.result.passed,
            "failed_checks": failed_checks,
            "alias": "staging" if verdict.result.passed else None,
            "data_checks": data_checks,
            "feature_psi": psi,
            "rows": assembled.counts,
            "metrics": {
                k: verdict.evaluation.metrics.get(k) for k in ("auc", "gini", "ks", "brier")
            },
            "champion": verdict.champion,
            "summary": (
                f"registered version {registered.version}: gate "
                + (
                    "passed, alias staging"
                    if verdict.result.passed
                    else f"failed ({', '.join(failed_checks)})"
                )
            ),
        }

    # -- the stages' parts ---------------------------------------------------------------
    def _parent(self) -> LoadedModel:
        """The version being retrained: production, else the newest."""
        registry = self.ctx.registry
        ref = "production" if registry.find_alias(self.model, "production") else "latest"
        return load_model(self.ctx, self.model, ref)

    def _assemble(self, parent: LoadedModel) -> tuple[Assembled, Path]:
        """The original training file (verified against its recorded hash) plus matured
        labelled decisions; written as Parquet unless nothing was added."""
        tags = parent.info.tags
        original_path = Path(tags.get("data_path", ""))
        if not tags.get("data_path") or not original_path.is_file():
            raise JobFailedError(
                f"the training data of version {parent.info.version} is gone "
                f"({tags.get('data_path') or 'no data_path recorded'})"
            )
        if file_sha256(original_path) != tags.get("data_sha256"):
            raise JobFailedError(
                f"the training data of version {parent.info.version} changed since it was "
                f"trained: {original_path} no longer has sha256 {tags.get('data_sha256')}"
            )
        original = read_table(original_path)
        production = self._production_rows(parent, original)
        config = AssemblyConfig(
            self.settings.max_production_share,
            self.settings.production_weight,
            self.settings.oot_share,
        )
        assembled = assemble(original, production, parent.model.spec, config)
        self.say("assemble", f"rows by source: {assembled.counts}")
        if not assembled.has_production:
            return assembled, original_path
        path = self.work / "training.parquet"
        assembled.frame.to_parquet(path, index=False)
        return assembled, path

    def _production_rows(self, parent: LoadedModel, original: pd.DataFrame) -> pd.DataFrame:
        spec = parent.model.spec
        now = datetime.now(UTC)
        until = now - timedelta(days=self.settings.outcome_maturity_days)
        since = now - timedelta(days=self.settings.window_days)
        with self.sessions() as session:
            pairs = LabelledWindowRepository(session).matured(self.model, since, until)
        target = spec.target.column
        positive = spec.target.positive
        others = [v for v in original[target].dropna().unique().tolist() if str(v) != str(positive)]
        negative = others[0] if others else 0
        rows = [
            {
                **{f: d.inputs.get(f) for f in spec.features},
                target: positive if o.defaulted else negative,
                DECIDED_AT: d.created_at,
            }
            for d, o in pairs
        ]
        return pd.DataFrame(rows, columns=[*spec.features, target, DECIDED_AT])

    def _check(
        self, parent: LoadedModel, path: Path
    ) -> tuple[list[dict[str, Any]], dict[str, float]]:
        spec = parent.model.spec
        data = load_training_data(path, spec, max_dirty_share=0.05)
        limits = DataLimits(
            self.settings.min_rows, self.settings.min_class_rows, self.settings.max_missing_share
        )
        checks = check_training_data(data, spec, limits)
        drift = drift_from_profile(
            parent.model.bundle.reference_profile, data.frame[list(spec.features)]
        )
        psi = {f.feature: round(f.psi, 6) for f in drift.features}
        self.say("check", f"largest feature PSI against the parent's data: {max(psi.values()):.3f}")
        problems = failed(checks)
        if problems:
            raise JobFailedError(
                f"the assembled data is unfit: {'; '.join(problems)}",
                data_checks=checks,
                feature_psi=psi,
            )
        return checks, psi

    def _parent_settings(self, parent: LoadedModel) -> dict[str, Any] | None:
        """The parent's training_settings.json (None for versions trained before it was
        recorded: the configured settings apply)."""
        try:
            path = self.ctx.registry.download_artifact(
                self.model, parent.info.version, SETTINGS_ARTIFACT, self.work
            )
        except CreditopsError:
            return None
        settings: dict[str, Any] = json.loads(Path(path).read_text())
        if self.settings.tune_trials:
            settings["tune_trials"] = self.settings.tune_trials
            settings["tune_timeout_s"] = self.settings.tune_timeout_s
        return settings

    def _same_as_existing(
        self, parent: LoadedModel, data_path: Path, settings: dict[str, Any] | None
    ) -> VersionInfo | None:
        if settings is None:
            return None
        wanted = {
            "data_sha256": file_sha256(data_path),
            "spec_sha256": parent.model.spec.sha256(),
            "settings_sha256": canonical_sha256(settings),
        }
        for version in self.ctx.registry.list_versions(self.model):
            if all(version.tags.get(k) == v for k, v in wanted.items()):
                return version
        return None

    def _gate(
        self, model: Any, evaluation: Any, parent: LoadedModel, assembled: Assembled
    ) -> tuple[Any, str]:
        profile_ref = (
            self.settings.gate_profile or parent.info.tags.get("gate_profile") or "default"
        )
        profile = load_gate_profile(profile_ref)
        target = parent.model.spec.target.column
        champion_test = load_test_set(self.ctx, self.model, parent.info.version)
        oot = assembled.out_of_time.copy()
        if len(oot):
            positive = str(parent.model.spec.target.positive)
            oot[target] = (oot[target].astype(str) == positive).astype("int8")
        holdout = pd.concat(
            [champion_test, oot.reindex(columns=champion_test.columns)], ignore_index=True
        )
        self.say(
            "evaluate", f"holdout: {len(champion_test)} test rows + {len(oot)} out-of-time rows"
        )
        verdict = judge(model, holdout, profile, parent, evaluation.test_frame)
        return verdict, profile.name

    def _tags(
        self, parent: LoadedModel, assembled: Assembled, result: Any, profile: str
    ) -> dict[str, str]:
        evidence = json.dumps(self.job["trigger"]["evidence"], default=str, sort_keys=True)
        return {
            "parent_version": parent.info.version,
            "trigger_kind": self.job["trigger"]["kind"],
            "trigger_reason": self.job["trigger"]["reason"][:500],
            "trigger_evidence": evidence[:2000],
            "retrain_job_id": self.job["job_id"],
            "rows_by_source": json.dumps(assembled.counts, sort_keys=True),
            "gate_passed": "true" if result.passed else "false",
            "gate_profile": profile,
            "gate_validated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "gate_failed_checks": ",".join(c.metric for c in result.failed)[:500],
        }


def _notify(ctx: AppContext, job: dict[str, Any], event: str, detail: str) -> None:
    """An alert through the configured channels: a job started, passed or failed."""
    settings = ctx.settings.alerts
    if not settings.enabled:
        return
    result = job.get("result") or {}
    details = {
        "job": job["job_id"],
        "trigger": f"{job['trigger']['kind']}: {job['trigger']['reason']}",
        "evidence": job["trigger"]["evidence"],
    }
    if result:
        details["result"] = {
            k: v for k, v in result.items() if k not in ("data_checks", "feature_psi")
        }
    alert = Alert(
        key=f"{job['model']}:retraining",
        model=job["model"],
        kind="retraining",
        severity="critical" if event == "failed" else "info",
        title=f"Retraining {event}",
        summary=detail or event,
        at=datetime.now(UTC),
        details=details,
    )
    try:
        ctx.alert_dispatcher.dispatch(alert)
    except CreditopsError as exc:  # a broken channel configuration must not fail the job
        log.warning("retraining alert not sent: %s", exc.message)
