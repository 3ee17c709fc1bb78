"""Fairness metrics against fairlearn on the same inputs, plus banding and edge cases."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equal_opportunity_ratio,
    selection_rate,
    true_positive_rate,
)

from creditops.errors import InvalidInputError
from creditops.modeling.fairness import band_numeric, compute_fairness

pytestmark = pytest.mark.unit

LABEL_SETS: dict[str, npt.NDArray[Any]] = {
    "sex-2": np.array(["female", "male"]),
    "region-3": np.array(["north", "south", "west"]),
    "age-4": np.array(["<25", "25-39", "40-59", "60+"]),
    "int-5": np.array([3, 1, 4, 15, 9]),
    "float-3": np.array([0.5, 1.5, 2.5]),
}


def make_decisions(
    labels: npt.NDArray[Any], n: int, seed: int
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Groups of unequal size with group-specific approval and default rates."""
    rng = np.random.default_rng(seed)
    k = len(labels)
    weights = rng.uniform(0.5, 2.0, k)
    codes = rng.choice(k, size=n, p=weights / weights.sum())
    defaulted = rng.random(n) < rng.uniform(0.05, 0.3, k)[codes]
    approve_p = np.where(defaulted, 0.3, rng.uniform(0.4, 0.9, k)[codes])
    return labels[codes], rng.random(n) < approve_p, defaulted


def fairlearn_reference(
    groups: npt.NDArray[Any], approved: npt.NDArray[np.bool_], defaulted: npt.NDArray[np.bool_]
) -> dict[str, Any]:
    good = ~defaulted
    kwargs = {"sensitive_features": groups}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = MetricFrame(
            metrics={"selection_rate": selection_rate, "tpr": true_positive_rate},
            y_true=good,
            y_pred=approved,
            **kwargs,
        )
        return {
            "by_group": {str(k): v for k, v in frame.by_group.to_dict("index").items()},
            "dp_ratio": demographic_parity_ratio(good, approved, **kwargs),
            "dp_difference": demographic_parity_difference(good, approved, **kwargs),
            "eo_ratio": equal_opportunity_ratio(good, approved, **kwargs),
            "eo_difference": equal_opportunity_difference(good, approved, **kwargs),
        }


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("label_set", list(LABEL_SETS), ids=list(LABEL_SETS))
def test_matches_fairlearn(label_set: str, seed: int) -> None:
    groups, approved, defaulted = make_decisions(LABEL_SETS[label_set], 3000, seed)
    got = compute_fairness("attr", groups, approved, defaulted)
    ref = fairlearn_reference(groups, approved, defaulted)
    assert got.demographic_parity_ratio == pytest.approx(ref["dp_ratio"], abs=1e-12)
    assert got.demographic_parity_difference == pytest.approx(ref["dp_difference"], abs=1e-12)
    assert got.equal_opportunity_ratio == pytest.approx(ref["eo_ratio"], abs=1e-12)
    assert got.equal_opportunity_difference == pytest.approx(ref["eo_difference"], abs=1e-12)
    assert {g.group for g in got.groups} == set(ref["by_group"])
    for row in got.groups:
        expected = ref["by_group"][row.group]
        members = groups.astype(str) == row.group
        assert row.count == int(members.sum())
        assert row.approval_rate == pytest.approx(expected["selection_rate"], abs=1e-12)
        assert row.true_positive_rate == pytest.approx(expected["tpr"], abs=1e-12)
        assert row.default_rate == pytest.approx(defaulted[members].mean(), abs=1e-12)
    assert 0.0 < got.demographic_parity_ratio < 1.0  # the data are built to be unequal


def test_disparate_impact_reference_and_score() -> None:
    groups = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    approved = np.concatenate([np.arange(50) < 40, np.arange(30) < 15, np.arange(20) < 18])
    defaulted = np.zeros(100, dtype=bool)
    defaulted[[0, 45, 60, 99]] = True
    got = compute_fairness("region", groups, approved, defaulted)
    rates = {"a": 0.8, "b": 0.5, "c": 0.9}
    assert got.reference_group == "c"  # the highest approval rate (EEOC four-fifths rule)
    assert got.disparate_impact_ratio == pytest.approx(0.5 / 0.9)
    assert got.passes_four_fifths is False
    assert {g.group: g.impact_ratio for g in got.groups} == pytest.approx(
        {k: v / 0.9 for k, v in rates.items()}
    )
    assert got.demographic_parity_ratio == pytest.approx(0.5 / 0.9)
    expected_score = (
        100 * (got.demographic_parity_ratio + got.equal_opportunity_ratio + 0.5 / 0.9) / 3
    )

    populous = compute_fairness("region", groups, approved, defaulted, reference_group="a")
    assert populous.disparate_impact_ratio == pytest.approx(0.5 / 0.8)
    assert got.fairness_score == pytest.approx(expected_score, abs=1e-12)

    explicit = compute_fairness("region", groups, approved, defaulted, reference_group="c")
    assert explicit.reference_group == "c"
    assert explicit.disparate_impact_ratio == pytest.approx(0.5 / 0.9)
    to_b = compute_fairness("region", groups, approved, defaulted, reference_group="b")
    assert to_b.disparate_impact_ratio == 1.0 and to_b.passes_four_fifths is True


def test_reference_tie_goes_to_first_label_and_numeric_reference() -> None:
    groups = np.array([2, 2, 1, 1, 3])
    approved = np.array([True, False, True, True, True])
    got = compute_fairness("grade", groups, approved)
    assert [g.group for g in got.groups] == ["1", "2", "3"]
    assert got.reference_group == "1"
    assert compute_fairness("grade", groups, approved, reference_group="2").reference_group == "2"


def test_min_group_size_excludes_small_groups_from_ratios() -> None:
    groups, approved, defaulted = make_decisions(LABEL_SETS["region-3"], 2000, seed=3)
    groups = np.concatenate([groups, ["tiny"] * 5])
    approved = np.concatenate([approved, [False] * 5])
    defaulted = np.concatenate([defaulted, [False] * 5])
    with_tiny = compute_fairness("region", groups, approved, defaulted)
    assert with_tiny.demographic_parity_ratio == 0.0 and with_tiny.disparate_impact_ratio == 0.0

    got = compute_fairness("region", groups, approved, defaulted, min_group_size=30)
    keep = groups != "tiny"
    ref = fairlearn_reference(groups[keep], approved[keep], defaulted[keep])
    assert got.demographic_parity_ratio == pytest.approx(ref["dp_ratio"], abs=1e-12)
    assert got.equal_opportunity_ratio == pytest.approx(ref["eo_ratio"], abs=1e-12)
    tiny = next(g for g in got.groups if g.group == "tiny")
    assert (tiny.count, tiny.approval_rate, tiny.included) == (5, 0.0, False)
    assert all(g.included for g in got.groups if g.group != "tiny")
    assert got.disparate_impact_ratio is not None and got.disparate_impact_ratio > 0.0
    with pytest.raises(InvalidInputError, match="min_group_size") as info:
        compute_fairness("region", groups, approved, reference_group="tiny", min_group_size=30)
    assert info.value.field == "reference_group"


def test_nobody_approved_is_equal_treatment() -> None:
    groups = np.array(["a", "a", "b", "b", "b"])
    approved = np.zeros(5, dtype=bool)
    got = compute_fairness("x", groups, approved, np.array([False, True, False, False, True]))
    assert got.demographic_parity_ratio == 1.0 and got.demographic_parity_difference == 0.0
    assert got.equal_opportunity_ratio == 1.0 and got.disparate_impact_ratio == 1.0
    assert got.fairness_score == 100.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # fairlearn leaves 0 / 0 as NaN here; we document 1.0 instead.
        assert np.isnan(demographic_parity_ratio(~approved, approved, sensitive_features=groups))


def test_one_group_never_approved_matches_fairlearn_zero() -> None:
    groups = np.array(["a"] * 4 + ["b"] * 4)
    approved = np.array([True, True, False, True, False, False, False, False])
    defaulted = np.array([False, False, False, True, False, True, False, False])
    got = compute_fairness("x", groups, approved, defaulted)
    ref = fairlearn_reference(groups, approved, defaulted)
    assert got.demographic_parity_ratio == ref["dp_ratio"] == 0.0
    assert got.equal_opportunity_ratio == ref["eo_ratio"] == 0.0
    assert got.fairness_score == 0.0
    # The reference "a" (first of the equally large groups) approves; "b" never is.
    assert got.disparate_impact_ratio == 0.0 and got.passes_four_fifths is False
    never = compute_fairness("x", groups, approved, defaulted, reference_group="b")
    assert never.disparate_impact_ratio == 1.0  # nobody is approved less often than "b"
    assert {g.group: g.impact_ratio for g in never.groups} == {"a": None, "b": 1.0}


def test_group_without_good_applicants_is_left_out_of_equal_opportunity() -> None:
    groups, approved, defaulted = make_decisions(LABEL_SETS["sex-2"], 1000, seed=4)
    groups = np.concatenate([groups, ["other"] * 3])
    approved = np.concatenate([approved, [True, False, False]])
    defaulted = np.concatenate([defaulted, [True, True, True]])
    got = compute_fairness("sex", groups, approved, defaulted)
    other = next(g for g in got.groups if g.group == "other")
    assert other.true_positive_rate is None and other.default_rate == 1.0
    keep = groups != "other"
    ref = fairlearn_reference(groups[keep], approved[keep], defaulted[keep])
    assert got.equal_opportunity_ratio == pytest.approx(ref["eo_ratio"], abs=1e-12)
    full = fairlearn_reference(groups, approved, defaulted)
    assert full["eo_ratio"] == 0.0  # fairlearn scores the empty group as TPR 0
    assert got.demographic_parity_ratio == pytest.approx(full["dp_ratio"], abs=1e-12)


def test_without_outcomes_only_selection_metrics() -> None:
    groups, approved, _ = make_decisions(LABEL_SETS["age-4"], 1500, seed=5)
    got = compute_fairness("age", groups, approved)
    assert got.equal_opportunity_ratio is None and got.equal_opportunity_difference is None
    assert all(g.true_positive_rate is None and g.default_rate is None for g in got.groups)
    dp, di = got.demographic_parity_ratio, got.disparate_impact_ratio
    assert dp is not None and di is not None
    assert got.fairness_score == pytest.approx(100 * (dp + min(di, 1.0)) / 2, abs=1e-12)


def test_single_group_and_missing_labels() -> None:
    single = compute_fairness("x", ["only"] * 4, [True, False, True, True])
    assert single.demographic_parity_ratio == 1.0 and single.fairness_score == 100.0
    mixed = np.array(["a", None, "a", float("nan"), "b"], dtype=object)
    got = compute_fairness("x", mixed, [1, 0, 1, 1, 0], [0, 0, 1, 0, 0])
    assert {g.group: g.count for g in got.groups} == {"a": 2, "b": 1, "missing": 2}
    floats = compute_fairness("x", np.array([1.0, np.nan, 1.0, np.nan]), [1, 1, 0, 1])
    assert {g.group: g.approval_rate for g in floats.groups} == {"1.0": 0.5, "missing": 1.0}


def test_to_dict_is_json_and_has_report_keys() -> None:
    groups, approved, defaulted = make_decisions(LABEL_SETS["int-5"], 500, seed=6)
    data = compute_fairness("grade", groups, approved, defaulted).to_dict()
    json.dumps(data, allow_nan=False)
    for key in (
        "attribute", "reference_group", "demographic_parity_ratio", "equal_opportunity_ratio",
        "disparate_impact_ratio", "fairness_score", "groups",
    ):  # fmt: skip
        assert key in data
    assert data["attribute"] == "grade"
    assert set(data["groups"][0]) >= {
        "group", "count", "approval_rate", "true_positive_rate", "default_rate"
    }  # fmt: skip
    assert sum(g["count"] for g in data["groups"]) == 500


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"approved": [True, False]}, "approved"),
        ({"approved": [0, 2, 1]}, "approved"),
        ({"defaulted": [True]}, "defaulted"),
        ({"reference_group": "zzz"}, "reference_group"),
        ({"min_group_size": 0}, "min_group_size"),
        ({"groups": []}, "groups"),
    ],
    ids=[
        "approved-length",
        "approved-values",
        "defaulted-length",
        "unknown-ref",
        "min-size",
        "empty",
    ],
)
def test_invalid_inputs(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"groups": ["a", "b", "a"], "approved": [True, False, True]}
    args.update(kwargs)
    with pytest.raises(InvalidInputError) as info:
        compute_fairness("x", **args)
    assert info.value.field == field


def test_band_numeric_default_labels_and_edges() -> None:
    ages = [18, 24.9, 25, 39, 39.5, 40, 59, 60, 95, np.nan, None]
    assert band_numeric(ages).tolist() == [
        "<25", "<25", "25-39", "25-39", "25-39", "40-59", "40-59", "60+", "60+", "missing",
        "missing",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("edges", "labels", "values", "expected"),
    [
        ((1000, 5000), None, [999, 1000, 4999, 5000], ["<1000", "1000-4999", "1000-4999", "5000+"]),
        ((0.5,), None, [0.1, 0.5, 0.9], ["<0.5", "0.5+", "0.5+"]),
        ((1.5, 2.25), None, [1.0, 2.0, 3.0], ["<1.5", "[1.5, 2.25)", "2.25+"]),
        ((30,), ("young", "old"), [29, 30, np.nan], ["young", "old", "missing"]),
    ],
    ids=["income", "single-edge", "float-edges", "custom-labels"],
)
def test_band_numeric_table(
    edges: tuple[float, ...],
    labels: tuple[str, ...] | None,
    values: list[float],
    expected: list[str],
) -> None:
    assert band_numeric(values, edges=edges, labels=labels).tolist() == expected


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"edges": (40, 25)}, "edges"),
        ({"edges": ()}, "edges"),
        ({"edges": (25, 40), "labels": ("a", "b")}, "labels"),
        ({"values": ["old", "young"]}, "values"),
    ],
    ids=["decreasing", "empty", "label-count", "not-numeric"],
)
def test_band_numeric_rejects_bad_arguments(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"values": [30, 50]}
    args.update(kwargs)
    with pytest.raises(InvalidInputError) as info:
        band_numeric(**args)
    assert info.value.field == field


def test_banded_groups_feed_compute_fairness() -> None:
    rng = np.random.default_rng(8)
    ages = rng.uniform(18, 80, 2000)
    ages[:20] = np.nan
    approved = rng.random(2000) < np.where(ages < 25, 0.4, 0.7)
    defaulted = rng.random(2000) < 0.1
    bands = band_numeric(ages)
    got = compute_fairness("age", bands, approved, defaulted)
    ref = fairlearn_reference(bands, approved, defaulted)
    assert {g.group for g in got.groups} == {"<25", "25-39", "40-59", "60+", "missing"}
    assert got.demographic_parity_ratio == pytest.approx(ref["dp_ratio"], abs=1e-12)
    assert got.equal_opportunity_ratio == pytest.approx(ref["eo_ratio"], abs=1e-12)
