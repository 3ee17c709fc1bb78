"""The pure rules of deployments: the traffic split, the state machine, the canary gate and
the shadow comparison, checked against scipy and by counting."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from creditops.domain.deployments import (
    DEFAULT_CANARY_STEPS,
    application_point,
    canary_steps,
    in_candidate_arm,
    next_state,
    plan_for,
)
from creditops.errors import ConflictError, InvalidInputError
from creditops.monitoring.canary import (
    ArmWindow,
    GateThresholds,
    compare_shadow,
    fairness_ratio,
    judge_step,
    pd_psi,
)
from creditops.monitoring.drift.statistics import psi

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("share", [0.05, 0.25, 0.5])
def test_the_split_matches_the_share_for_distinct_applicants(share: float) -> None:
    ids = [f"app-{i}" for i in range(20_000)]
    hits = sum(in_candidate_arm("dep-1", a, share) for a in ids)
    # binomial standard error at n=20,000 is at most 0.0036: 4 of them
    assert abs(hits / len(ids) - share) < 0.015


def test_an_applicant_keeps_its_arm_and_only_ever_moves_to_the_candidate() -> None:
    ids = [f"a{i}" for i in range(2000)]
    before = {a for a in ids if in_candidate_arm("d", a, 0.05)}
    assert before == {a for a in ids if in_candidate_arm("d", a, 0.05)}  # deterministic
    after = {a for a in ids if in_candidate_arm("d", a, 0.25)}
    assert before <= after  # a growing share never sends a candidate applicant back
    # another deployment draws another sample
    assert before != {a for a in ids if in_candidate_arm("e", a, 0.05)}
    assert all(0.0 <= application_point("d", a) < 1.0 for a in ids)
    assert not in_candidate_arm("d", "x", 0.0) and in_candidate_arm("d", "x", 1.0)


def test_the_state_machine_allows_only_its_transitions() -> None:
    assert next_state("progressing", "pause") == "paused"
    assert next_state("paused", "resume") == "progressing"
    assert next_state("pending", "abort") == "aborted"
    assert next_state("succeeded", "rollback") == "rolled_back"
    for state, action in [("succeeded", "pause"), ("aborted", "resume"), ("rolled_back", "abort")]:
        with pytest.raises(ConflictError):
            next_state(state, action)
    with pytest.raises(InvalidInputError):
        next_state("pending", "explode")


def test_plans_and_steps() -> None:
    assert canary_steps(None) == DEFAULT_CANARY_STEPS
    assert canary_steps([0.1, 0.5]) == (0.1, 0.5, 1.0)
    for bad in ([0.5, 0.2], [0.0, 1.0], [1.5]):
        with pytest.raises(InvalidInputError):
            canary_steps(bad)
    plan = plan_for("canary", [0.1, 0.5])
    assert [plan.share(i) for i in (-1, 0, 1, 2, 9)] == [0.0, 0.1, 0.5, 1.0, 1.0]
    assert plan.last_step(2) and not plan.last_step(1)
    assert plan_for("shadow").share(0) == 0.0
    assert plan_for("blue_green").steps == (1.0,)
    with pytest.raises(InvalidInputError):
        plan_for("big_bang")
    with pytest.raises(InvalidInputError):
        plan_for("immediate", [0.5])


def _arm(
    pd: np.ndarray, approved: np.ndarray, groups: np.ndarray | None = None, **kw: int
) -> ArmWindow:
    return ArmWindow(
        pd=pd,
        approved=approved,
        latency_ms=np.full(len(pd), 5.0),
        groups={"sex": groups} if groups is not None else {},
        **kw,
    )


def test_the_gate_statistics_match_scipy_and_the_psi_definition() -> None:
    rng = np.random.default_rng(1)
    stable = rng.beta(2, 8, 3000)
    candidate = rng.beta(2, 7, 3000)
    verdict = judge_step(
        _arm(stable, stable < 0.3), _arm(candidate, candidate < 0.3), GateThresholds()
    )
    checks = {c.name: c for c in verdict.checks}
    assert checks["pd_ks"].value == pytest.approx(stats.ks_2samp(stable, candidate).statistic)
    edges = np.unique(np.quantile(stable, np.linspace(0, 1, 11)[1:-1]))
    ref = np.histogram(stable, bins=[-np.inf, *edges, np.inf])[0]
    cur = np.histogram(candidate, bins=[-np.inf, *edges, np.inf])[0]
    # numpy's histogram closes bins on the left; on continuous data the counts agree
    assert checks["pd_psi"].value == pytest.approx(psi(ref, cur), rel=1e-6)
    assert pd_psi(stable, stable) == pytest.approx(0.0, abs=1e-12)
    expected_diff = (candidate < 0.3).mean() - (stable < 0.3).mean()
    assert checks["approval_rate_diff"].value == pytest.approx(expected_diff)


def test_the_gate_passes_alike_arms_and_fails_a_shifted_or_erring_candidate() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.beta(2, 8, 2000), rng.beta(2, 8, 2000)
    limits = GateThresholds()
    assert judge_step(_arm(a, a < 0.3), _arm(b, b < 0.3), limits).outcome == "passed"
    shifted = np.clip(b + 0.2, 0, 1)
    failed = judge_step(_arm(a, a < 0.3), _arm(shifted, shifted < 0.3), limits)
    assert failed.outcome == "failed"
    assert {"pd_psi", "pd_ks", "approval_rate_diff"} <= set(failed.failed_checks)
    erring = judge_step(_arm(a, a < 0.3), _arm(b, b < 0.3, attempts=100, errors=20), limits)
    assert erring.failed_checks == ["error_rate"]
    # too few decisions: no verdict on the distributions, but errors still fail
    few = judge_step(_arm(a[:50], a[:50] < 0.3), _arm(b[:50], b[:50] < 0.3), limits)
    assert few.outcome == "insufficient_data"
    assert (
        judge_step(
            _arm(a[:50], a[:50] < 0.3), _arm(b[:50], b[:50] < 0.3, attempts=50, errors=50), limits
        ).outcome
        == "failed"
    )


def test_the_fairness_ratio_and_its_gate() -> None:
    groups = np.array(["f"] * 500 + ["m"] * 500)
    fair = np.array([True] * 300 + [False] * 200 + [True] * 300 + [False] * 200)
    unfair = np.array([True] * 100 + [False] * 400 + [True] * 300 + [False] * 200)
    assert fairness_ratio(fair, groups, 30) == pytest.approx(1.0)
    assert fairness_ratio(unfair, groups, 30) == pytest.approx(100 / 300)
    assert fairness_ratio(unfair, groups, 501) is None  # no group large enough
    pd = np.linspace(0.1, 0.2, 1000)
    limits = GateThresholds(max_approval_rate_diff=1.0)
    verdict = judge_step(_arm(pd, fair, groups), _arm(pd, unfair, groups), limits)
    assert "fairness_ratio:sex" in verdict.failed_checks
    # the same disparity in the stable arm is not blamed on the candidate
    same = judge_step(_arm(pd, unfair, groups), _arm(pd, unfair, groups), limits)
    assert "fairness_ratio:sex" not in same.failed_checks


def test_the_shadow_comparison_counts_agreement_swaps_and_reasons() -> None:
    def row(i: int, pd: float, decision: str, codes: list[str]) -> dict[str, object]:
        reasons = [{"code": c} for c in codes]
        return {"application_id": f"a{i}", "pd": pd, "decision": decision, "reasons": reasons}

    primary = [
        row(0, 0.1, "approve", []),
        row(1, 0.5, "decline", ["R1", "R2"]),
        row(2, 0.3, "review", ["R3"]),
        row(3, 0.2, "approve", []),
    ]
    shadow = [
        row(0, 0.12, "approve", []),
        row(1, 0.55, "decline", ["R1", "R4"]),
        row(2, 0.2, "approve", []),
        row(3, 0.4, "review", ["R2"]),
    ]
    report = compare_shadow(primary, shadow)
    assert report["n"] == 4 and report["agreement_rate"] == 0.5
    assert report["pd_correlation"] == pytest.approx(
        float(np.corrcoef([0.1, 0.5, 0.3, 0.2], [0.12, 0.55, 0.2, 0.4])[0, 1])
    )
    assert report["swap_set"]["approved_by_shadow_only"] == 1
    assert report["swap_set"]["examples_shadow_only"] == ["a2"]
    assert report["swap_set"]["approved_by_primary_only"] == 1
    assert report["reason_pairs"] == 1 and report["first_reason_agreement"] == 1.0
    assert report["reason_overlap"] == pytest.approx(1 / 3)
    assert compare_shadow([], []) == {"n": 0}
