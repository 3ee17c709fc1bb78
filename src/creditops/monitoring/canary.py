"""The gate of a deployment step: the candidate against the stable version over the same
window of live traffic (pure).

Each arm's decisions in the window (:class:`ArmWindow`) are compared on

* the candidate's **error rate** (scoring failures over attempts, counted by the serving
  processes) and its **p99 latency** (over single-applicant requests: a batch is timed as
  a whole and may be split between the arms);
* the **PD distribution**: PSI over the stable arm's PD deciles and the two-sample
  Kolmogorov-Smirnov statistic (``scipy.stats.ks_2samp``);
* the **approval-rate difference** (candidate minus stable, in absolute points);
* the **fairness ratio** per protected attribute: the lowest group approval rate over the
  highest (the disparate impact ratio, groups of at least ``min_group`` decisions); it fails
  when the candidate's ratio is below ``min_fairness_ratio`` *and* lower than the stable
  arm's by more than ``max_fairness_drop`` (or the stable arm has no ratio to compare), so a
  candidate is not blamed for a disparity the stable version has as well.

Below ``min_decisions`` per arm the step is not judged ("insufficient_data"): it waits for
more traffic instead of passing or failing on noise. The last step, at 100%, leaves the
stable arm no traffic: it is judged on the candidate's error rate and latency alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from creditops.monitoring.drift.statistics import psi

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GateThresholds:
    max_error_rate: float = 0.10
    max_p99_latency_ms: float = 250.0
    max_pd_psi: float = 0.25
    max_pd_ks: float = 0.25
    max_approval_rate_diff: float = 0.10
    min_fairness_ratio: float = 0.8
    max_fairness_drop: float = 0.05
    min_decisions: int = 200
    min_group: int = 200  # smaller groups make the ratio too noisy to judge


@dataclass(frozen=True)
class ArmWindow:
    """One arm's decisions in the window; ``groups`` maps each protected attribute to the
    applicants' group labels (aligned with ``pd``)."""

    pd: FloatArray
    approved: npt.NDArray[np.bool_]
    latency_ms: FloatArray
    groups: Mapping[str, npt.NDArray[np.str_]] = field(default_factory=dict)
    attempts: int = 0
    errors: int = 0

    @property
    def n(self) -> int:
        return len(self.pd)


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    threshold: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "threshold": self.threshold,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class StepVerdict:
    """``passed``, ``failed`` or ``insufficient_data``, with every check."""

    outcome: str
    checks: tuple[Check, ...]
    n_stable: int
    n_candidate: int

    @property
    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "n_stable": self.n_stable,
            "n_candidate": self.n_candidate,
            "failed": self.failed_checks,
            "checks": [c.to_dict() for c in self.checks],
        }


def error_rate(attempts: int, errors: int) -> float:
    return errors / attempts if attempts else 0.0


def health_checks(candidate: ArmWindow, limits: GateThresholds) -> list[Check]:
    """The checks that roll back at once, without waiting for the step's end: the error
    rate and the p99 latency of the candidate."""
    checks = [
        Check(
            "error_rate",
            error_rate(candidate.attempts, candidate.errors),
            limits.max_error_rate,
            error_rate(candidate.attempts, candidate.errors) <= limits.max_error_rate,
        )
    ]
    if candidate.latency_ms.size:
        p99 = float(np.percentile(candidate.latency_ms, 99))
        checks.append(
            Check(
                "p99_latency_ms", p99, limits.max_p99_latency_ms, p99 <= limits.max_p99_latency_ms
            )
        )
    return checks


def pd_psi(stable: FloatArray, candidate: FloatArray, bins: int = 10) -> float:
    """PSI of the candidate's PDs over the stable arm's PD deciles."""
    edges = np.unique(np.quantile(stable, np.linspace(0, 1, bins + 1)[1:-1]))
    reference = np.bincount(np.searchsorted(edges, stable, side="right"), minlength=len(edges) + 1)
    current = np.bincount(np.searchsorted(edges, candidate, side="right"), minlength=len(edges) + 1)
    return psi(reference, current)


def group_rates(
    approved: npt.NDArray[np.bool_], groups: npt.NDArray[np.str_], min_group: int
) -> dict[str, tuple[float, int]]:
    """Approval rate and size of each group of at least ``min_group`` decisions."""
    rates = {}
    for group in np.unique(groups):
        member = groups == group
        if member.sum() >= min_group:
            rates[str(group)] = (float(approved[member].mean()), int(member.sum()))
    return rates


def fairness_ratio(
    approved: npt.NDArray[np.bool_], groups: npt.NDArray[np.str_], min_group: int
) -> float | None:
    """Lowest over highest approval rate among groups of at least ``min_group`` decisions
    (None with fewer than two such groups, or when no group is approved at all)."""
    rates = [rate for rate, _ in group_rates(approved, groups, min_group).values()]
    if len(rates) < 2 or max(rates) == 0.0:
        return None
    return min(rates) / max(rates)


def judge_step(stable: ArmWindow, candidate: ArmWindow, limits: GateThresholds) -> StepVerdict:
    """The verdict on one step (see the module docstring)."""
    checks = health_checks(candidate, limits)
    if stable.n == 0 and candidate.n >= limits.min_decisions:
        # the step at 100%: nothing left to compare with, the candidate's health decides
        outcome = "passed" if all(c.passed for c in checks) else "failed"
        return StepVerdict(outcome, tuple(checks), 0, candidate.n)
    if min(stable.n, candidate.n) < limits.min_decisions:
        outcome = "failed" if not all(c.passed for c in checks) else "insufficient_data"
        return StepVerdict(outcome, tuple(checks), stable.n, candidate.n)
    value = pd_psi(stable.pd, candidate.pd)
    checks.append(Check("pd_psi", value, limits.max_pd_psi, value <= limits.max_pd_psi))
    value = float(stats.ks_2samp(stable.pd, candidate.pd).statistic)
    checks.append(Check("pd_ks", value, limits.max_pd_ks, value <= limits.max_pd_ks))
    value = float(candidate.approved.mean() - stable.approved.mean())
    checks.append(
        Check(
            "approval_rate_diff",
            value,
            limits.max_approval_rate_diff,
            abs(value) <= limits.max_approval_rate_diff,
        )
    )
    for attribute in sorted(set(stable.groups) & set(candidate.groups)):
        ours = fairness_ratio(candidate.approved, candidate.groups[attribute], limits.min_group)
        theirs = fairness_ratio(stable.approved, stable.groups[attribute], limits.min_group)
        if ours is None:
            continue
        worse = theirs is None or ours < theirs - limits.max_fairness_drop
        passed = ours >= limits.min_fairness_ratio or not worse
        checks.append(Check(f"fairness_ratio:{attribute}", ours, limits.min_fairness_ratio, passed))
    outcome = "passed" if all(c.passed for c in checks) else "failed"
    return StepVerdict(outcome, tuple(checks), stable.n, candidate.n)


def compare_shadow(
    primary: Sequence[Mapping[str, Any]], shadow: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """How a shadow candidate's decisions compare with the answers given, pair by pair
    (each mapping has application_id, pd, decision and reasons).

    * agreement rate: the share of applicants with the same decision band;
    * PD correlation (Pearson) and the mean PD difference (shadow minus primary);
    * the swap set: applicants approved by one and not by the other, both ways, with a few
      application ids;
    * reason-code agreement, over the pairs where both gave reasons: the share with the
      same first reason and the mean overlap (Jaccard) of the reason-code sets.
    """
    n = len(primary)
    if n == 0:
        return {"n": 0}
    p_pd = np.array([float(r["pd"]) for r in primary])
    s_pd = np.array([float(r["pd"]) for r in shadow])
    p_dec = np.array([str(r["decision"]) for r in primary])
    s_dec = np.array([str(r["decision"]) for r in shadow])
    gained = (s_dec == "approve") & (p_dec != "approve")
    lost = (p_dec == "approve") & (s_dec != "approve")
    ids = [str(r["application_id"]) for r in primary]
    first_same, overlaps = [], []
    for p, s in zip(primary, shadow, strict=True):
        p_codes = [r["code"] for r in p.get("reasons") or []]
        s_codes = [r["code"] for r in s.get("reasons") or []]
        if p_codes and s_codes:
            first_same.append(p_codes[0] == s_codes[0])
            overlaps.append(len(set(p_codes) & set(s_codes)) / len(set(p_codes) | set(s_codes)))
    correlation = None
    if n > 1 and p_pd.std() > 0 and s_pd.std() > 0:
        correlation = float(np.corrcoef(p_pd, s_pd)[0, 1])
    return {
        "n": n,
        "agreement_rate": float((p_dec == s_dec).mean()),
        "pd_correlation": correlation,
        "mean_pd_difference": float((s_pd - p_pd).mean()),
        "swap_set": {
            "approved_by_shadow_only": int(gained.sum()),
            "approved_by_primary_only": int(lost.sum()),
            "examples_shadow_only": [ids[i] for i in np.flatnonzero(gained)[:10]],
            "examples_primary_only": [ids[i] for i in np.flatnonzero(lost)[:10]],
        },
        "reason_pairs": len(first_same),
        "first_reason_agreement": float(np.mean(first_same)) if first_same else None,
        "reason_overlap": float(np.mean(overlaps)) if overlaps else None,
    }
