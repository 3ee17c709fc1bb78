"""A/B tests: an experiment is a deployment (strategy ``ab_test``) whose two arms both
answer, control (the production version) and treatment, split by application id as any
deployment is. The worker looks at it every ``ab.look_interval_s``: it measures the primary
metric per arm from the decision log and the outcomes, updates the always-valid test
(``monitoring/sequential``), checks the guardrails, and concludes when the test decides or
the maximum duration ends: the winner is promoted through the deployment path (the
``production`` alias moves), or control keeps answering. docs/experiments.md has the
statistics and what to conclude from them.

Primary metrics (``METRICS``): the approval rate (available at once); the default rate
among approved applicants, over decisions whose outcome window (``maturity_days``) has
passed and whose outcome is recorded; the AUC over those labelled decisions (DeLong
variances); the expected loss per application, PD x LGD x exposure, when the model's spec
names an exposure column.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas
from scipy import stats
from sqlalchemy.orm import Session, sessionmaker

from creditops.domain.deployments import ARM_CANDIDATE, ARM_STABLE
from creditops.domain.windows import utc_text
from creditops.errors import ConflictError, InvalidInputError, NotFoundError
from creditops.modeling.fairness import protected_groups
from creditops.modeling.metrics import delong_auc_ci
from creditops.monitoring.canary import group_rates
from creditops.monitoring.sequential import (
    ArmStats,
    Look,
    SequentialDesign,
    fixed_horizon_size,
    half_width,
    look,
    mean_of,
    proportion,
)
from creditops.services import deployments
from creditops.services.context import AppContext
from creditops.store.deployment_repositories import DeploymentRepository
from creditops.store.tables import DeploymentRow

log = logging.getLogger("creditops.experiments")
METRICS = ("approval_rate", "default_rate", "auc", "expected_loss")
LOWER_IS_BETTER = {"default_rate": True, "expected_loss": True}
MAX_LOOKS_KEPT = 400  # looks kept for the report's plot (thinned beyond)


@dataclass(frozen=True)
class Guardrails:
    max_approval_rate_change: float = 0.10
    min_fairness_ratio: float = 0.8
    max_fairness_drop: float = 0.05
    max_error_rate: float = 0.10
    min_group: int = 200  # groups smaller than this are too noisy to judge a ratio


@dataclass(frozen=True)
class ExperimentRequest:
    model: str
    treatment: str
    control: str | None = None  # the production version (the only one allowed)
    split: float = 0.5  # treatment's share
    max_duration_h: float = 48.0
    metric: str = "approval_rate"
    mde: float = 0.02
    alpha: float = 0.05
    maturity_days: float = 0.0
    lgd: float = 0.45
    auto_conclude: bool = True
    guardrails: Guardrails = field(default_factory=Guardrails)
    reason: str = ""


def start(
    ctx: AppContext, sessions: sessionmaker[Session], request: ExperimentRequest, actor: str
) -> dict[str, Any]:
    """Record an experiment (a deployment of strategy ``ab_test``)."""
    if request.metric not in METRICS:
        raise InvalidInputError(
            f"metric must be one of {', '.join(METRICS)}; got {request.metric!r}", field="metric"
        )
    if not 0.0 < request.split < 1.0:
        raise InvalidInputError("split must be a share in (0, 1)", field="split")
    production = ctx.registry.find_alias(request.model, "production")
    if production is None:
        raise ConflictError(f"{request.model} has no production version to test against")
    if request.control is not None and request.control != production.version:
        raise InvalidInputError(
            f"control must be the production version (v{production.version}): it is the one "
            "that answers outside the experiment",
            field="control",
        )
    if request.metric == "expected_loss":
        spec = deployments.spec_of(ctx, request.model, production.version)
        if not spec.exposure_column:
            raise InvalidInputError(
                "expected_loss needs an exposure column: name it in the spec (exposure_column)",
                field="metric",
            )
    experiment = {
        "metric": request.metric,
        "split": request.split,
        "max_duration_h": request.max_duration_h,
        "mde": request.mde,
        "alpha": request.alpha,
        "maturity_days": request.maturity_days,
        "lgd": request.lgd,
        "auto_conclude": request.auto_conclude,
        "guardrails": request.guardrails.__dict__,
    }
    return deployments.start(
        ctx,
        sessions,
        deployments.DeployRequest(
            model=request.model,
            version=request.treatment,
            strategy="ab_test",
            reason=request.reason,
            steps=[request.split],
            experiment=experiment,
        ),
        actor,
    )


# -- measuring ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArmData:
    pd: np.ndarray
    approved: np.ndarray
    defaulted: np.ndarray  # float: 1, 0, or NaN when unknown or not matured
    inputs: pandas.DataFrame

    @property
    def n(self) -> int:
        return len(self.pd)


def _arms(
    sessions: sessionmaker[Session], row: DeploymentRow, now: datetime, maturity_days: float
) -> dict[str, ArmData]:
    since = row.step_started_at or row.created_at
    with sessions() as session:
        rows = DeploymentRepository(session).experiment_rows(row.deployment_id, since)
    matured_before = now - timedelta(days=maturity_days)
    arms = {}
    for arm in (ARM_STABLE, ARM_CANDIDATE):
        mine = [r for r in rows if r[0] == arm]
        arms[arm] = ArmData(
            pd=np.array([r[1] for r in mine], dtype=np.float64),
            approved=np.array([r[2] == "approve" for r in mine], dtype=bool),
            defaulted=np.array(
                [
                    float(r[4]) if r[4] is not None and r[3] <= matured_before else math.nan
                    for r in mine
                ],
                dtype=np.float64,
            ),
            inputs=pandas.DataFrame([r[5] for r in mine]),
        )
    return arms


def metric_stats(metric: str, arm: ArmData, *, lgd: float, exposure: str | None) -> ArmStats:
    """One arm's primary metric as the sequential test takes it."""
    if metric == "approval_rate":
        return proportion(int(arm.approved.sum()), arm.n)
    if metric == "default_rate":
        known = arm.approved & ~np.isnan(arm.defaulted)
        return proportion(int(arm.defaulted[known].sum()), int(known.sum()))
    if metric == "auc":
        known = ~np.isnan(arm.defaulted)
        y, scores = arm.defaulted[known].astype(int), arm.pd[known]
        if known.sum() < 2 or y.min() == y.max():
            return ArmStats(int(known.sum()), math.nan, 0.0, variance_of_mean=True)
        interval = delong_auc_ci(y, scores)
        return ArmStats(int(known.sum()), interval.auc, interval.se**2, variance_of_mean=True)
    assert exposure is not None
    missing = pandas.Series([math.nan] * arm.n, dtype=float)
    column = arm.inputs[exposure] if exposure in arm.inputs.columns else missing
    values = pandas.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    return mean_of(np.nan_to_num(arm.pd * lgd * values))


def _beyond(estimate: float, variance: float, limit: float, alpha: float) -> bool:
    """True when the always-valid confidence sequence of ``estimate`` lies entirely beyond
    ``-limit`` (below it): the breach is real, not noise, however often it is looked at."""
    if variance <= 0 or limit <= 0:
        return False
    width = float(half_width(variance, limit**2, alpha))
    return estimate + width < -limit


def _log_ratio(rates: dict[str, tuple[float, int]], low: str, high: str) -> tuple[float, float]:
    """log(rate of ``low`` / rate of ``high``) and its delta-method variance."""
    (p_low, n_low), (p_high, n_high) = rates[low], rates[high]
    p_low, p_high = max(p_low, 0.5 / n_low), max(p_high, 0.5 / n_high)  # no log of zero
    variance = (1 - p_low) / (n_low * p_low) + (1 - p_high) / (n_high * p_high)
    return math.log(p_low / p_high), variance


def _guardrail_breach(
    arms: dict[str, ArmData], guard: Guardrails, spec: Any, alpha: float
) -> tuple[str, dict[str, Any]] | None:
    """A guardrail breached beyond noise (see docs/experiments.md): the approval rate moved
    further than ``max_approval_rate_change``, or the treatment's disparate impact ratio of
    a protected attribute is under ``min_fairness_ratio`` and lower than control's for the
    same two groups by more than ``max_fairness_drop`` (on the log scale). Each is judged
    with the always-valid confidence sequence, as repeated looks would otherwise breach
    by chance."""
    control, treatment = arms[ARM_STABLE], arms[ARM_CANDIDATE]
    if min(control.n, treatment.n) < guard.min_group:
        return None
    c, t = (
        proportion(int(control.approved.sum()), control.n),
        proportion(int(treatment.approved.sum()), treatment.n),
    )
    change = t.mean - c.mean
    if _beyond(-abs(change), c.v + t.v, guard.max_approval_rate_change, alpha):
        return (
            f"guardrail: the approval rate moved {change:+.1%} "
            f"(limit {guard.max_approval_rate_change:.0%})",
            {"approval_rate_change": change},
        )
    for column in spec.protected:
        if column not in treatment.inputs.columns or column not in control.inputs.columns:
            continue
        ours = group_rates(
            treatment.approved, protected_groups(treatment.inputs, spec, column), guard.min_group
        )
        theirs = group_rates(
            control.approved, protected_groups(control.inputs, spec, column), guard.min_group
        )
        shared = sorted(set(ours) & set(theirs))
        if len(shared) < 2:
            continue
        low = min(shared, key=lambda g: ours[g][0])
        high = max(shared, key=lambda g: ours[g][0])
        if ours[high][0] == 0.0 or ours[low][0] / ours[high][0] >= guard.min_fairness_ratio:
            continue
        log_t, var_t = _log_ratio(ours, low, high)
        log_c, var_c = _log_ratio(theirs, low, high)
        drop = -math.log(1.0 - guard.max_fairness_drop)
        if _beyond(log_t - log_c, var_t + var_c, drop, alpha):
            ratio_c = theirs[low][0] / theirs[high][0] if theirs[high][0] else None
            return (
                f"guardrail: the fairness ratio of {column} is "
                f"{ours[low][0] / ours[high][0]:.2f} in treatment against "
                f"{'n/a' if ratio_c is None else f'{ratio_c:.2f}'} in control",
                {"attribute": column, "groups": [low, high], "treatment": ours, "control": theirs},
            )
    return None


def evaluate(
    ctx: AppContext, sessions: sessionmaker[Session], row: DeploymentRow, now: datetime
) -> str | None:
    """One look at an experiment in progress (the worker's call); concludes or stops it when
    the time has come. Returns a message when something changed."""
    config = row.options["experiment"]
    guard = Guardrails(**config["guardrails"])
    spec = deployments.spec_of(ctx, row.model_name, row.candidate_version)
    arms = _arms(sessions, row, now, float(config["maturity_days"]))
    breach = _guardrail_breach(arms, guard, spec, float(config["alpha"]))
    if breach is not None:
        return deployments.stop_experiment(ctx, sessions, row, "worker", breach[0], breach[1])
    design = SequentialDesign(
        alpha=float(config["alpha"]),
        mde=float(config["mde"]),
        lower_is_better=LOWER_IS_BETTER.get(config["metric"], False),
    )
    stats = {
        arm: metric_stats(
            config["metric"], data, lgd=float(config["lgd"]), exposure=spec.exposure_column
        )
        for arm, data in arms.items()
    }
    results = dict(row.results or {})
    previous = results.get("last")
    prior = Look.from_dict(previous) if previous else None
    current = look(stats[ARM_STABLE], stats[ARM_CANDIDATE], design, prior)
    results["last"] = current.to_dict()
    results["arms"] = {
        "control": _describe(arms[ARM_STABLE], stats[ARM_STABLE]),
        "treatment": _describe(arms[ARM_CANDIDATE], stats[ARM_CANDIDATE]),
    }
    results["sample_size_per_arm"] = fixed_horizon_size(
        stats[ARM_STABLE], stats[ARM_CANDIDATE], design
    )
    looks = list(results.get("looks", []))
    looks.append({"at": utc_text(now), **current.to_dict()})
    results["looks"] = looks[-MAX_LOOKS_KEPT:]
    deployments.save_results(sessions, row, results)
    expired = now - (row.step_started_at or row.created_at) >= timedelta(
        hours=float(config["max_duration_h"])
    )
    if current.verdict != "keep_running" and config["auto_conclude"]:
        return conclude(ctx, sessions, row.deployment_id, "worker", current.verdict)
    if expired:
        return conclude(ctx, sessions, row.deployment_id, "worker", "no_difference")
    return None


def _describe(arm: ArmData, metric: ArmStats) -> dict[str, Any]:
    """One arm as the status shows it, with 95% intervals where outcomes exist: Wilson's
    for the default rate among approved (``scipy.stats.binomtest``), DeLong's for the AUC.
    These describe each arm; the test's confidence sequence is the one to decide on."""
    labelled = ~np.isnan(arm.defaulted)
    approved_known = arm.approved & labelled
    bad, known = int(arm.defaulted[approved_known].sum()), int(approved_known.sum())
    default_rate = None
    if known:
        interval = stats.binomtest(bad, known).proportion_ci(0.95, method="wilson")
        default_rate = {
            "rate": bad / known,
            "lower": interval.low,
            "upper": interval.high,
            "n": known,
        }
    auc = None
    y = arm.defaulted[labelled]
    if labelled.sum() >= 2 and 0 < y.sum() < len(y):
        found = delong_auc_ci(y.astype(int), arm.pd[labelled])
        auc = {
            "auc": found.auc,
            "lower": found.lower,
            "upper": found.upper,
            "n": int(labelled.sum()),
        }
    return {
        "n": arm.n,
        "approval_rate": float(arm.approved.mean()) if arm.n else None,
        "mean_pd": float(arm.pd.mean()) if arm.n else None,
        "labelled": int(labelled.sum()),
        "default_rate_approved": default_rate["rate"] if default_rate else None,
        "default_rate_approved_interval": default_rate,
        "auc": auc,
        "metric": {"n": metric.n, "value": None if math.isnan(metric.mean) else metric.mean},
    }


def conclude(
    ctx: AppContext,
    sessions: sessionmaker[Session],
    deployment_id: str,
    actor: str,
    verdict: str | None = None,
) -> str:
    """End an experiment: treatment promoted when it won (the alias moves), control kept
    otherwise. ``verdict`` defaults to the last look's."""
    with sessions() as session:
        row = DeploymentRepository(session).get(deployment_id)
        if row is None or row.strategy != "ab_test":
            raise NotFoundError(f"no A/B test {deployment_id!r}", field="id")
        session.expunge(row)
    chosen = verdict or (row.results or {}).get("last", {}).get("verdict", "keep_running")
    if chosen == "treatment_wins":
        return deployments.finish_experiment(ctx, sessions, row, actor, chosen, promote=True)
    return deployments.finish_experiment(ctx, sessions, row, actor, chosen, promote=False)


def look_all(ctx: AppContext, sessions: sessionmaker[Session]) -> list[str]:
    """The worker's pass over the experiments in progress."""
    now = datetime.now(UTC)
    with sessions() as session:
        running = [
            r
            for r in DeploymentRepository(session).active()
            if r.strategy == "ab_test" and r.state == "progressing"
        ]
        for row in running:
            session.expunge(row)
    done = []
    for row in running:
        try:
            message = evaluate(ctx, sessions, row, now)
        except (ConflictError, InvalidInputError, NotFoundError) as exc:
            log.error("experiment %s: %s", row.deployment_id, exc.message)
            continue
        if message:
            log.warning("%s", message)
            done.append(message)
    return done


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """An experiment as the API shows it: the deployment, its design and its last look."""
    results = row.get("results") or {}
    return {
        "id": row["deployment_id"],
        "model": row["model"],
        "control_version": row["stable_version"],
        "treatment_version": row["candidate_version"],
        "state": row["state"],
        "design": row["options"].get("experiment", {}),
        "arms": results.get("arms", {}),
        "last_look": results.get("last"),
        "sample_size_per_arm": results.get("sample_size_per_arm"),
        "looks": results.get("looks", []),
        "history": row["history"],
        "started_by": row["started_by"],
        "created_at": row["created_at"],
        "finished_at": row["finished_at"],
    }
