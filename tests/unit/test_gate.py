"""The validation gate: thresholds, fairness per attribute, monotonicity, champion rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from creditops.errors import ConfigError
from creditops.modeling.gate import (
    ChampionRule,
    GateProfile,
    champion_comparison,
    evaluate_gate,
    load_gate_profile,
)

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def _profile(**kw: object) -> GateProfile:
    base = {
        "name": "t",
        "metrics": {"min": {"auc": 0.75}, "max": {"brier": 0.2}},
        "fairness": {
            "default": {"disparate_impact_ratio": 0.8},
            "attributes": {"age": {"disparate_impact_ratio": 0.5}},
        },
    }
    base.update(kw)
    return GateProfile.model_validate(base)


FAIR = [
    {"attribute": "sex", "disparate_impact_ratio": 0.85},
    {"attribute": "age", "disparate_impact_ratio": 0.6},
]


@pytest.mark.parametrize(
    ("metrics", "fairness", "mono", "passed", "failed"),
    [
        ({"auc": 0.8, "brier": 0.1}, FAIR, [], True, set()),
        ({"auc": 0.74, "brier": 0.1}, FAIR, [], False, {"auc"}),
        ({"auc": 0.8, "brier": 0.25}, FAIR, [], False, {"brier"}),
        (
            {"auc": 0.8, "brier": 0.1},
            [{"attribute": "sex", "disparate_impact_ratio": 0.7}],
            [],
            False,
            {"disparate_impact_ratio"},
        ),
        (
            {"auc": 0.8, "brier": 0.1},
            FAIR,
            [{"feature": "x", "violations": 3}],
            False,
            {"monotonicity_violations"},
        ),
        ({"brier": 0.1}, FAIR, [], False, {"auc"}),
        ({"auc": float("nan"), "brier": 0.1}, FAIR, [], False, {"auc"}),
    ],
    ids=["pass", "low-auc", "high-brier", "unfair", "non-monotone", "missing-metric", "nan"],
)
def test_gate_checks(metrics, fairness, mono, passed, failed) -> None:  # type: ignore[no-untyped-def]
    result = evaluate_gate(_profile(), metrics, fairness, mono)
    assert result.passed is passed
    assert {c.metric for c in result.failed} == failed


def test_attribute_override_applies_only_to_that_attribute() -> None:
    result = evaluate_gate(_profile(), {"auc": 0.8, "brier": 0.1}, FAIR, [])
    thresholds = {(c.attribute, c.metric): c.threshold for c in result.checks}
    assert thresholds[("age", "disparate_impact_ratio")] == 0.5
    assert thresholds[("sex", "disparate_impact_ratio")] == 0.8


def test_champion_noninferiority() -> None:
    rule = ChampionRule(tolerance=0.01, alpha=0.05)
    clearly_worse = champion_comparison(0.70, 0.78, se=0.01, rule=rule)
    assert clearly_worse["passed"] is False and clearly_worse["p_value"] < 0.05
    within_tolerance = champion_comparison(0.775, 0.78, se=0.01, rule=rule)
    assert within_tolerance["passed"] is True
    identical = champion_comparison(0.78, 0.78, se=0.0, rule=rule)
    assert identical["passed"] is True
    result = evaluate_gate(_profile(), {"auc": 0.8, "brier": 0.1}, FAIR, [], clearly_worse)
    assert not result.passed and result.failed[0].category == "champion"


def test_profiles_load() -> None:
    assert load_gate_profile("seed").metrics.min["auc"] == 0.85
    assert load_gate_profile("default").name == "default"
    for name in ("taiwan", "german"):
        assert load_gate_profile(str(ROOT / "data" / "gates" / f"{name}.yaml")).name == name
    with pytest.raises(ConfigError, match="neither a file"):
        load_gate_profile("nope")


def test_bad_profile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmetrics: {min: {auc: high}}\n")
    with pytest.raises(ConfigError, match=r"metrics\.min\.auc"):
        load_gate_profile(str(bad))
