"""The pure parts of retraining: triggers, the assembly of the training data and its
checks, and the champion rule's improve mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from creditops.errors import ConfigError
from creditops.features.assembly import (
    DECIDED_AT,
    AssemblyConfig,
    DataLimits,
    assemble,
    check_training_data,
    failed,
)
from creditops.features.dataset import TrainingData
from creditops.features.spec import parse_spec
from creditops.modeling.gate import ChampionRule, GateProfile, champion_comparison, evaluate_gate
from creditops.monitoring.triggers import (
    DriftObservation,
    DriftRule,
    drift_trigger,
    new_data_trigger,
    performance_trigger,
    schedule_trigger,
)
from tests.factories import synthetic_spec

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)
RULE = DriftRule(timedelta(hours=24), 0.7, 0.3)


def seen(
    hours_ago: float, level: str = "ok", score: float = 0.1, share: float = 0.0
) -> DriftObservation:
    return DriftObservation(NOW - timedelta(hours=hours_ago), level, score, share, f"r{hours_ago}")


DRIFT_CASES = {
    "sustained 26 h": (
        [seen(0, "critical", 0.9), seen(12, "critical", 0.8), seen(26, "warning", 0.75)],
        True,
    ),
    "too short": ([seen(0, "critical", 0.9), seen(12, "critical", 0.8)], False),
    "broken by a calm check": (
        [seen(0, "critical", 0.9), seen(12, score=0.2), seen(30, "critical", 0.9)],
        False,
    ),
    "share alone": ([seen(0, share=0.4), seen(25, share=0.35)], True),
    "score at the threshold": ([seen(0, score=0.7), seen(25, score=0.7)], False),
    "insufficient checks skipped": (
        [seen(0, "critical", 0.9), seen(5, "insufficient_data", None), seen(25, "critical", 0.9)],
        True,
    ),
    "only insufficient": (
        [seen(0, "insufficient_data", None), seen(30, "insufficient_data", None)],
        False,
    ),
    "nothing": ([], False),
}


@pytest.mark.parametrize(("history", "fires"), DRIFT_CASES.values(), ids=DRIFT_CASES)
def test_drift_triggers_only_when_sustained(history: list[DriftObservation], fires: bool) -> None:
    trigger = drift_trigger(history, NOW, RULE)
    assert (trigger is not None) == fires
    if trigger:
        assert trigger.kind == "drift" and trigger.evidence["reports"][0] == history[0].report_id


def test_a_zero_period_means_the_latest_check_alone() -> None:
    rule = DriftRule(timedelta(0), 0.7, 0.3)
    assert drift_trigger([seen(0, "critical", 0.9)], NOW, rule) is not None
    assert drift_trigger([seen(0, score=0.2), seen(1, "critical", 0.9)], NOW, rule) is None


PERF = {
    "6% below validation": ({"auc": 0.06, "accuracy": 0.01, "f1": None}, "performance"),
    "4% below: a warning only": ({"auc": 0.04, "accuracy": 0.045, "f1": 0.03}, None),
    "better": ({"auc": -0.02, "accuracy": 0.0, "f1": 0.0}, None),
}


@pytest.mark.parametrize(("drops", "kind"), PERF.values(), ids=PERF)
def test_performance_triggers_beyond_five_percent(
    drops: dict[str, float | None], kind: str | None
) -> None:
    trigger = performance_trigger({"level": "critical", "drop_vs_validation": drops}, 0.05)
    assert (trigger.kind if trigger else None) == kind
    assert (
        performance_trigger({"level": "insufficient_data", "drop_vs_validation": drops}, 0.05)
        is None
    )


def test_new_data_and_schedule() -> None:
    assert new_data_trigger(4999, 5000, NOW) is None
    assert new_data_trigger(5000, 5000, NOW).evidence["matured_outcomes"] == 5000  # type: ignore[union-attr]
    weekly = "0 2 * * 0"  # Sundays 02:00 UTC; 2026-12-03 is a Thursday
    assert schedule_trigger(weekly, NOW - timedelta(days=2), NOW) is None
    due = schedule_trigger(weekly, NOW - timedelta(days=5), NOW)  # Saturday before: Sunday due
    assert due is not None and due.evidence["due_at"] == "2026-11-29T02:00:00Z"
    with pytest.raises(ConfigError):
        schedule_trigger("every sunday", NOW, NOW)


# -- assembly ---------------------------------------------------------------------------
SPEC = parse_spec(synthetic_spec(split_column="_is_test"))


def original(n: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": [str(i) for i in range(n)],
            "income": [str(v) for v in rng.integers(1000, 9000, n)],
            "utilisation": [f"{v:.3f}" for v in rng.random(n)],
            "delay": [str(v) for v in rng.integers(0, 4, n)],
            "region": rng.choice(["north", "south"], n).astype(str),
            "age": [str(v) for v in rng.integers(20, 70, n)],
            "sex": rng.choice(["F", "M"], n).astype(str),
            "target": rng.choice(["bad", "good"], n).astype(str),
            "_is_test": np.where(np.arange(n) % 4 == 0, "True", "False"),
        }
    ).astype("string")


def production(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "income": rng.integers(1000, 9000, n),
            "utilisation": rng.random(n),
            "delay": rng.integers(0, 4, n),
            "region": rng.choice(["north", "south", None], n),
            "age": rng.integers(20, 70, n),
            "sex": rng.choice(["F", "M"], n),
            "target": rng.choice(["bad", "good"], n),
            DECIDED_AT: [NOW - timedelta(minutes=n - i) for i in range(n)],
        }
    )


def test_assembly_holds_out_the_latest_caps_and_weights() -> None:
    base, prod = original(1000), production(600)
    config = AssemblyConfig(max_production_share=0.2, production_weight=2, oot_share=0.25)
    out = assemble(base, prod, SPEC, config)
    # 150 most recent rows out of time; of the other 450 at most 125 (0.2 * 1000 / (0.8 * 2))
    assert out.counts["production_out_of_time"] == 150 and len(out.out_of_time) == 150
    assert out.counts["production_training"] == 125 and out.counts["production_capped_out"] == 325
    assert out.counts["production_training_weighted"] == 250 and len(out.frame) == 1250
    weighted_share = 250 / 1250
    assert weighted_share <= 0.2 + 1e-12
    # the held-out rows are the most recent ones, and never trained on
    assert out.out_of_time["income"].tolist() == prod["income"].iloc[-150:].tolist()
    added = out.frame.iloc[1000:]
    assert set(added["_is_test"]) == {"False"}  # production rows train; the test split is kept
    pd.testing.assert_frame_equal(out.frame.iloc[:1000], base, check_dtype=False)
    assert added["income"].tolist()[:125] == [str(v) for v in prod["income"].iloc[325:450]]


def test_no_production_rows_leave_the_original_alone() -> None:
    base = original(200)
    out = assemble(base, production(0), SPEC, AssemblyConfig())
    assert out.frame is base and not out.has_production and len(out.out_of_time) == 0


def test_data_checks_name_what_is_wrong() -> None:
    frame = pd.DataFrame({f: [1.0] * 100 for f in SPEC.features})
    frame["region"] = [None] * 30 + ["north"] * 70
    y = np.array([1] * 10 + [0] * 90, dtype=np.int8)
    data = TrainingData(frame, y, None, "", 100)
    checks = check_training_data(
        data, SPEC, DataLimits(min_rows=50, min_class_rows=20, max_missing_share=0.2)
    )
    assert failed(checks) == ["defaults 10 (at least 20)", "missing_share:region 0.3 (at most 0.2)"]


# -- champion rule: improve ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("difference", "se", "significant", "passed"),
    [
        (0.02, 0.005, True, True),
        (0.005, 0.005, True, False),
        (0.005, 0.005, False, True),
        (-0.01, 0.005, False, False),
    ],
    ids=["significant gain", "gain not significant", "point estimate", "worse"],
)
def test_improve_mode(difference: float, se: float, significant: bool, passed: bool) -> None:
    rule = ChampionRule(mode="improve", min_gain=0.0, significant=significant, alpha=0.05)
    result = champion_comparison(0.78 + difference, 0.78, se, rule)
    assert result["p_value"] == pytest.approx(norm.sf(difference / se), rel=1e-12)
    assert result["passed"] is passed
    gate = evaluate_gate(GateProfile(name="g", champion=rule), {}, [], [], result)
    assert gate.passed is passed
    assert {c.metric for c in gate.checks} >= {"champion_auc_gain"}


def test_drift_rule_of_the_gate() -> None:
    profile = GateProfile.model_validate({"name": "g", "drift": {"max_psi": 0.1}})
    gate = evaluate_gate(profile, {}, [], [], None, {"income": 0.05, "delay": 0.3})
    assert [(c.attribute, c.passed) for c in gate.checks] == [("delay", False), ("income", True)]
