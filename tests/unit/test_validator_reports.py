"""Reports a validator reads without a glossary: names, labels, order, cutoff, reasons.

Covers the spec's ``value_labels``, the band order of fairness groups, gate thresholds with
reasons, and what the HTML report shows from them (gate table first, the cutoff behind the
confusion-matrix metrics, labelled groups, leakage suspects, the scorecard tables).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from creditops.domain.scaling import ScoreScaling
from creditops.errors import ConfigError, SpecError
from creditops.features.spec import load_spec, parse_spec
from creditops.modeling.fairness import band_numeric, compute_fairness
from creditops.modeling.gate import GateProfile, evaluate_gate, load_gate_profile
from creditops.modeling.scorecard import PointsScale, WoeScorecard
from creditops.reporting.model_report import render_model_report_html
from creditops.reporting.names import METRIC_NAMES, metric_name
from tests.factories import synthetic_spec
from tests.unit.test_model_report import MINIMAL, make_data
from tests.unit.test_scorecard import CATEGORICAL, MONOTONE, NAMES
from tests.unit.test_scorecard import make_data as scorecard_data

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- spec


def test_value_labels_keys_are_canonical_and_labels_looked_up() -> None:
    spec = parse_spec(synthetic_spec(value_labels={"sex": {"F": "female", 1.0: "one"}}))
    assert spec.value_labels == {"sex": {"F": "female", "1": "one"}}
    assert spec.label_of("sex", "F") == "female"
    assert spec.label_of("sex", 1) == spec.label_of("sex", " 1 ") == "one"
    assert spec.label_of("sex", "M") is None and spec.label_of("region", "x") is None


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"age": {1: "x"}}, "value_labels names 'age', which is numeric"),
        ({"nope": {1: "x"}}, "value_labels names 'nope', which is not a feature"),
        ({"sex": {1: ""}}, "value_labels.sex.1: the label is empty"),
        ({"sex": {1: "a", "1.0": "b"}}, "value_labels.sex gives value '1' twice"),
        ({"sex": ["male", "female"]}, "value_labels.sex must map values to labels"),
        ({"sex": {1: None}}, "a label must be text"),
    ],
    ids=["numeric", "unknown", "empty", "duplicate", "list", "none"],
)
def test_bad_value_labels_are_refused_naming_the_key(labels: Any, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(synthetic_spec(value_labels=labels))


def test_spec_hash_ignores_an_empty_value_labels_key() -> None:
    plain = parse_spec(synthetic_spec())
    assert plain.sha256() == parse_spec(synthetic_spec(value_labels={})).sha256()
    labelled = parse_spec(synthetic_spec(value_labels={"sex": {"F": "female"}}))
    assert labelled.sha256() != plain.sha256()
    assert '"value_labels"' not in plain.canonical_json()


def test_taiwan_spec_labels_its_coded_attributes() -> None:
    spec = load_spec(ROOT / "data/specs/taiwan.yaml")
    assert spec.label_of("sex", 1) == "male" and spec.label_of("sex", 2) == "female"
    assert spec.label_of("education", 1) == "graduate school"
    assert spec.label_of("marriage", 1) == "married" and spec.label_of("marriage", 2) == "single"


# ----------------------------------------------------------------------------- fairness order


def test_age_bands_come_in_numeric_order_not_lexical() -> None:
    ages = np.array([70.0, 30.0, 20.0, np.nan, 45.0, 22.0, 61.0])
    groups = band_numeric(ages)
    result = compute_fairness("age", groups, np.array([1, 1, 0, 1, 1, 0, 1]))
    assert [g.group for g in result.groups] == ["<25", "25-39", "40-59", "60+", "missing"]
    assert sorted(g.group for g in result.groups) != [g.group for g in result.groups]
    by_group = {g.group: g for g in result.groups}
    assert by_group["<25"].count == 2 and by_group["<25"].approval_rate == 0.0
    assert by_group["60+"].count == 2


def test_numeric_codes_sort_as_numbers_text_after_missing_last() -> None:
    groups = np.array(["10", "2", "x", "1", "10", None], dtype=object)
    result = compute_fairness("code", groups, np.array([1, 0, 1, 1, 0, 1]))
    assert [g.group for g in result.groups] == ["1", "2", "10", "x", "missing"]


# ----------------------------------------------------------------------------- gate reasons


def _profile() -> GateProfile:
    return GateProfile.model_validate(
        {
            "name": "p",
            "metrics": {
                "min": {"auc": 0.7, "precision": {"value": 0.3, "reason": "low  by\n design"}},
                "max": {"brier": {"value": 0.2}},
            },
            "fairness": {
                "default": {"disparate_impact_ratio": 0.8, "fairness_score": 80},
                "attributes": {
                    "age": {"reason": "bands differ", "disparate_impact_ratio": 0.45},
                    "sex": {"fairness_score": {"value": 70, "reason": "own reason"}},
                    "region": {"disparate_impact_ratio": 0.5},
                },
            },
        }
    )


def test_reasons_reach_the_checks_with_the_default_they_replace() -> None:
    fairness = [
        {"attribute": a, "disparate_impact_ratio": 0.9, "fairness_score": 90}
        for a in ("age", "sex", "region", "other")
    ]
    result = evaluate_gate(_profile(), {"auc": 0.8, "precision": 0.4, "brier": 0.1}, fairness, [])
    checks = {(c.attribute, c.metric): c for c in result.checks}
    assert checks[(None, "precision")].reason == "low by design"
    assert checks[(None, "auc")].reason is None and checks[(None, "brier")].reason is None
    age = checks[("age", "disparate_impact_ratio")]
    assert (age.threshold, age.default_threshold, age.reason) == (0.45, 0.8, "bands differ")
    assert age.is_relaxed
    assert checks[("age", "fairness_score")].default_threshold is None  # not overridden
    sex = checks[("sex", "fairness_score")]
    assert (sex.threshold, sex.reason, sex.is_relaxed) == (70.0, "own reason", True)
    region = checks[("region", "disparate_impact_ratio")]
    assert region.is_relaxed and region.reason is None
    assert checks[("other", "disparate_impact_ratio")].default_threshold is None


@pytest.mark.parametrize(
    "metrics",
    [{"min": {"auc": {"threshold": 0.7}}}, {"min": {"auc": {"value": 0.7, "reason": ""}}}],
    ids=["wrong-key", "empty-reason"],
)
def test_malformed_threshold_entries_are_refused(tmp_path: Path, metrics: Any) -> None:
    import yaml

    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "metrics": metrics}))
    with pytest.raises(ConfigError, match="metrics"):
        load_gate_profile(str(path))


@pytest.mark.parametrize("profile", ["taiwan", "german"])
def test_bundled_profiles_explain_every_relaxed_threshold(profile: str) -> None:
    gate = load_gate_profile(str(ROOT / f"data/gates/{profile}.yaml"))
    attributes = ["age", "marriage", "sex"]
    fairness = [{"attribute": a, **dict.fromkeys(gate.fairness.default, 1.0)} for a in attributes]
    result = evaluate_gate(gate, {}, fairness, [])
    relaxed = [c for c in result.checks if c.is_relaxed]
    if profile == "taiwan":
        assert {c.attribute for c in relaxed} == {"age", "marriage"}
    assert all(c.reason for c in relaxed)
    fairness_reasons = [c.reason for c in result.checks if c.category == "fairness"]
    assert profile == "taiwan" or all(fairness_reasons)  # german lowers every default


# ----------------------------------------------------------------------------- the report


def _fairness_unordered() -> list[dict[str, Any]]:
    def group(name: str, count: int, rate: float) -> dict[str, Any]:
        return {
            "group": name,
            "count": count,
            "approval_rate": rate,
            "true_positive_rate": rate,
            "default_rate": 0.2,
        }

    return [
        {
            "attribute": "sex",
            "reference_group": "2",
            "demographic_parity_ratio": 0.9,
            "demographic_parity_difference": 0.05,
            "groups": [group("2", 400, 0.5), group("1", 300, 0.45)],
        },
        {
            "attribute": "age",
            "reference_group": "25-39",
            "demographic_parity_difference": 0.2,
            "groups": [
                group("60+", 40, 0.5),
                group("25-39", 400, 0.55),
                group("<25", 100, 0.3),
                group("40-59", 200, 0.5),
            ],
        },
    ]


GATE = {
    "passed": True,
    "profile": "demo",
    "checks": [
        {
            "metric": "auc",
            "value": 0.8,
            "threshold": 0.7,
            "kind": "min",
            "passed": True,
            "category": "performance",
        },
        {
            "metric": "disparate_impact_ratio",
            "value": 0.6,
            "threshold": 0.45,
            "kind": "min",
            "passed": True,
            "category": "fairness",
            "attribute": "age",
            "reason": "Approval rates differ by age band; reviewed 2026-11.",
            "default_threshold": 0.8,
        },
        {
            "metric": "disparate_impact_ratio",
            "value": 0.6,
            "threshold": 0.5,
            "kind": "min",
            "passed": True,
            "category": "fairness",
            "attribute": "marriage",
            "default_threshold": 0.8,
        },
    ],
}


@pytest.fixture(scope="module")
def tables_data() -> Any:
    x, y = scorecard_data()
    scorecard = WoeScorecard(random_state=7).fit(
        x, y, feature_names=NAMES, categorical=CATEGORICAL, monotone=MONOTONE
    )
    return scorecard.tables(
        PointsScale(ScoreScaling()),
        "baseline",
        {"region": ["north", "south", "east", "west"]},
        {"region": {"west": "coastal west"}},
    )


@pytest.fixture(scope="module")
def html(tables_data: Any) -> str:
    data = make_data(
        **{
            **MINIMAL,
            "gate": GATE,
            "fairness": _fairness_unordered(),
            "value_labels": {"sex": {"1": "male", "2": "female"}},
            "classification_cutoff": {"approve_min_score": 540.0, "pd": 0.1379},
            "scorecard": tables_data,
            "iv_table": [
                {
                    "feature": "pay_0",
                    "iv": 0.86,
                    "n_bins": 4,
                    "used": True,
                    "auc": 0.70,
                    "leakage_suspect": True,
                    "leakage_reason": "information value 0.860 above 0.5 (suspiciously strong)",
                },
                {"feature": "limit_bal", "iv": 0.17, "n_bins": 9, "used": True, "auc": 0.61},
            ],
        }
    )
    return render_model_report_html(data)


def test_gate_table_comes_before_the_metrics(html: str) -> None:
    assert html.index('id="gate-checks"') < html.index('id="metrics"')
    assert html.index("Validation gate checks") < html.index("Headline metrics")


def test_threshold_reasons_and_lowered_thresholds_are_explained(html: str) -> None:
    assert "Why this threshold" in html
    assert "Lowered from ≥ 0.8000." in html
    assert "Approval rates differ by age band; reviewed 2026-11." in html
    row = html[html.index("<td>marriage</td>") :]
    assert "No reason given in the profile." in row[: row.index("</tr>")]


def test_cutoff_behind_accuracy_is_stated(html: str) -> None:
    scaling = ScoreScaling()
    pd_at = 1.0 / (1.0 + math.exp((540.0 - scaling.offset) / scaling.factor))
    sentence = html[html.index('id="cutoff"') :]
    sentence = sentence[: sentence.index("</p>")]
    assert "approve cutoff of 540 points" in sentence
    assert f"a PD above {100 * pd_at:.1f}%" in sentence
    assert "Accuracy, precision, recall and F1" in sentence


def test_no_cutoff_sentence_without_a_cutoff() -> None:
    data = make_data(**{**MINIMAL, "classification_cutoff": None})
    assert 'id="cutoff"' not in render_model_report_html(data)


def test_groups_are_labelled_and_bands_ordered(html: str) -> None:
    assert "1 (male)" in html and "2 (female) (reference)" in html
    assert "reference group: 2 (female)" in html
    fairness = html[html.index('id="fairness"') :]
    positions = [fairness.index(f"<td>{band}") for band in ("&lt;25", "25-39", "40-59", "60+")]
    assert positions == sorted(positions)


def test_metric_names_are_human_everywhere(html: str) -> None:
    for key in ("auc", "ks", "brier", "demographic_parity_difference"):
        assert metric_name(key) in html
    assert metric_name("auc") == "AUC (area under ROC)"
    assert metric_name("demographic_parity_difference").endswith("(approval rate gap)")
    assert metric_name("unknown_key") == "unknown_key"
    assert len(set(METRIC_NAMES.values())) == len(METRIC_NAMES)
    assert "<td>auc</td>" not in html and "<td>ks</td>" not in html


def test_leakage_suspect_names_feature_reason_and_checks(html: str) -> None:
    box = html[html.index('id="leakage"') :]
    box = box[: box.index("</div>")]
    assert "<code>pay_0</code>: information value 0.860 above 0.5" in box
    assert "recorded after the outcome" in box and "identifier" in box
    assert "limit_bal" not in box


def test_scorecard_tables_in_the_report_match_the_counts(html: str, tables_data: Any) -> None:
    section = html[html.index('id="scorecard"') :]
    assert "the logistic WoE baseline" in section
    assert "WoE = ln(share of defaults / share of non-defaults)" in section
    assert f"{tables_data.base_points:.2f}" in section
    assert "points to\n        double the odds (PDO)" in section
    for table in tables_data.binning:
        events = sum(r.n_event for r in table.rows)
        total = sum(r.count for r in table.rows)
        heading = section.index(f"<h4>{table.feature}: IV {table.iv:.4f}")
        block = section[heading : section.index("</table>", heading)]
        assert f"{total:,}" in block and f"{events:,}" in block
        assert f"{100 * events / total:.2f}%" in block
        for row in table.rows:
            assert f"{row.woe:+.4f}" in block
    assert "coastal west" in section
    for row in tables_data.points:
        assert f"{row.points:+.2f}" in section
