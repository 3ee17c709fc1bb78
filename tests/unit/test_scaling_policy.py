"""Score scaling math and the decision policy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from creditops.domain.policy import DecisionPolicy, KnockoutRule
from creditops.domain.scaling import ScoreScaling

pytestmark = pytest.mark.unit


def test_base_points_and_doubling() -> None:
    s = ScoreScaling(min_score=None, max_score=None)
    pd_at_base = 1 / 51  # 50:1 good:bad odds
    assert s.points([pd_at_base])[0] == pytest.approx(600.0, abs=1e-9)
    pd_double = 1 / 101  # 100:1 odds: one PDO higher
    assert s.points([pd_double])[0] == pytest.approx(620.0, abs=1e-9)
    assert s.factor == pytest.approx(20 / math.log(2))
    assert s.offset == pytest.approx(600 - 20 / math.log(2) * math.log(50))


@pytest.mark.parametrize(
    ("base", "odds", "pdo"), [(600, 50, 20), (500, 20, 40), (700, 1, 15)], ids=str
)
def test_points_inverse_roundtrip(base: float, odds: float, pdo: float) -> None:
    s = ScoreScaling(base_score=base, base_odds=odds, pdo=pdo, min_score=None, max_score=None)
    pd_values = np.linspace(0.001, 0.999, 101)
    # points are published at 2 decimals: half a hundredth of a point in log-odds
    tolerance = 0.005 / s.factor
    log_odds = np.log1p(-pd_values) - np.log(pd_values)
    back = s.pd_at(s.points(pd_values))
    assert np.all(np.abs((np.log1p(-back) - np.log(back)) - log_odds) <= tolerance + 1e-12)
    scores = np.round(np.linspace(310.0, 840.0, 97), 2)
    np.testing.assert_array_equal(s.points(s.pd_at(scores)), scores)


def test_the_shown_score_is_the_decided_score() -> None:
    """Issue 15: an unrounded 539.9952 was shown as 540.00 and decided review under a 540
    approve cutoff. The published score is the one the policy decides on."""
    s = ScoreScaling()
    policy = DecisionPolicy(approve_min_score=540, decline_below_score=500)
    unrounded = 539.9952
    pd_value = float(s.pd_at([unrounded])[0])
    raw = s.offset + s.factor * (math.log1p(-pd_value) - math.log(pd_value))
    assert raw == pytest.approx(unrounded) and raw < 540  # the old value decided review
    shown = s.points([pd_value])
    assert f"{shown[0]:.2f}" == "540.00" and shown[0] == 540.0
    assert policy.decide(shown).decision.tolist() == ["approve"]
    below = s.points(s.pd_at([539.994]))  # shown as 539.99: review, as shown
    assert f"{below[0]:.2f}" == "539.99" and policy.decide(below).decision.tolist() == ["review"]


def test_higher_pd_lower_score_and_clipping() -> None:
    s = ScoreScaling()
    scores = s.points([1e-12, 0.01, 0.2, 0.9, 1.0])
    assert np.all(np.diff(scores) <= 0)
    assert scores[0] == 850.0 and scores[-1] == 300.0
    assert np.all(np.isfinite(scores))


def test_policy_bands_and_knockouts() -> None:
    policy = DecisionPolicy(
        approve_min_score=600,
        decline_below_score=550,
        knockouts=[
            KnockoutRule(
                name="age",
                feature="age",
                op="lt",
                value=18,
                reason_code="KO1",
                reason_text="under age",
            ),
            KnockoutRule(
                name="country",
                feature="country",
                op="in",
                value=["XX"],
                reason_code="KO2",
                reason_text="unsupported country",
            ),
        ],
    )
    raw = pd.DataFrame({"age": [30, 17, None, 40, 16], "country": ["DE", "DE", "XX", None, "XX"]})
    outcome = policy.decide([650, 650, 650, 575, 500], raw)
    assert outcome.decision.tolist() == ["approve", "decline", "decline", "review", "decline"]
    # the first rule that fires wins; missing values never fire
    assert outcome.knockout_index.tolist() == [-1, 0, 1, -1, 0]


def test_policy_rejects_inverted_cutoffs() -> None:
    with pytest.raises(ValueError, match="must not exceed"):
        DecisionPolicy(approve_min_score=500, decline_below_score=600)


def test_approval_rate_window_running_count() -> None:
    from collections import deque
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from creditops.api.metrics import APPROVAL_WINDOW, build_metrics

    metrics = build_metrics()
    decisions = (["approve"] * 3 + ["decline"]) * (APPROVAL_WINDOW // 2)
    for d in decisions:
        result = SimpleNamespace(
            model_name="m",
            model_version="1",
            decision=d,
            pd=0.1,
            score=600.0,
            created_at=datetime.now(UTC),
        )
        metrics.observe_decisions([result])  # type: ignore[list-item]
    window = deque((d == "approve" for d in decisions), maxlen=APPROVAL_WINDOW)
    expected = sum(window) / len(window)
    assert metrics.approval_rate.labels("m")._value.get() == pytest.approx(expected)
    assert metrics._approved["m"] == sum(window)


_VALUES: list[object] = [
    17,
    18,
    18.0,
    17.999,
    0,
    -1,
    True,
    False,
    None,
    float("nan"),
    float("inf"),
    "17",
    " 18 ",
    "1e1",
    "abc",
    "",
    "1_000",
    "x",
    "y",
    np.int64(17),
    np.float64(18.5),
    pd.NA,
]


@pytest.mark.parametrize(
    ("op", "value"),
    [
        ("lt", 18),
        ("le", 18),
        ("gt", 18),
        ("ge", 18.0),
        ("eq", 18),
        ("ne", 18),
        ("eq", "x"),
        ("ne", "x"),
        ("in", ["x", 17, "18"]),
        ("not_in", ["x", 17, "18"]),
        ("in", "y"),
    ],
    ids=lambda v: str(v),
)
def test_knockout_scalar_path_matches_the_vectorised_one(op: str, value: object) -> None:
    """The API's per-value path (no pandas) decides exactly like the frame path."""
    rule = KnockoutRule(name="r", feature="f", op=op, value=value, reason_code="K", reason_text="t")
    vectorised = rule.fires(pd.Series(_VALUES, dtype=object))
    scalar = rule.fires_on(_VALUES)
    assert vectorised.tolist() == scalar.tolist()
    policy = DecisionPolicy(approve_min_score=600, decline_below_score=500, knockouts=[rule])
    scores = np.full(len(_VALUES), 700.0)
    from_mapping = policy.decide(scores, {"f": _VALUES})
    from_frame = policy.decide(scores, pd.DataFrame({"f": pd.Series(_VALUES, dtype=object)}))
    assert from_mapping.decision.tolist() == from_frame.decision.tolist()
    assert (from_mapping.decision == "decline").sum() == int(vectorised.sum())
