"""The validator's statistical tests against scipy, scikit-learn, pandas and first principles.

Every expected value is derived in the test from the same inputs: binomial tails summed from
``math.comb``, Jeffreys p-values from ``scipy.stats.beta`` and from integrating the Beta
density, DeLong variances from the O(n^2) placement values, CSI from the PSI formula written
out, score shifts from simulated applicants' mean scores, AIR from a pandas groupby and
Fisher's test, SMD from numpy means and variances.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from scipy import integrate
from scipy.stats import beta, binomtest, fisher_exact, norm
from sklearn.metrics import brier_score_loss, roc_auc_score

from creditops.errors import InvalidInputError
from creditops.monitoring.validation_tests import (
    TrafficLightThresholds,
    adverse_impact_ratio,
    auc_decline_test,
    band_calibration_test,
    band_calibration_tests,
    brier_skill_score,
    characteristic_stability,
    score_shift_attribution,
    standardized_mean_difference,
)

pytestmark = pytest.mark.unit

Labels = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


def make_data(n: int, rate: float, strength: float, seed: int) -> tuple[Labels, Floats]:
    """Labels with both classes and PDs whose separation grows with ``strength``."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(np.int64)
    y[:2] = [0, 1]
    logit = math.log(rate / (1 - rate)) + strength * (y - rate) + rng.normal(size=n)
    return y, np.round(1.0 / (1.0 + np.exp(-logit)), 3)


def light_by_rule(p_value: float, green_min: float = 0.05, amber_min: float = 0.01) -> str:
    """The documented traffic-light rule, restated."""
    if p_value >= green_min:
        return "green"
    return "amber" if p_value >= amber_min else "red"


# --------------------------------------------------------------------------- Brier skill

BRIER_CASES = [(300, 0.1, 1.0, 0), (1000, 0.3, 2.0, 1), (80, 0.5, 0.0, 2), (2000, 0.05, 3.0, 3)]
BRIER_IDS = ["n300", "n1000-strong", "n80-uninformative", "n2000-rare"]


@pytest.mark.parametrize(("n", "rate", "strength", "seed"), BRIER_CASES, ids=BRIER_IDS)
def test_brier_skill_matches_sklearn_against_the_base_rate_forecast(
    n: int, rate: float, strength: float, seed: int
) -> None:
    y, p = make_data(n, rate, strength, seed)
    climatology = np.full(n, y.mean())
    expected = 1.0 - brier_score_loss(y, p) / brier_score_loss(y, climatology)
    assert brier_skill_score(y, p) == pytest.approx(expected, abs=1e-12)


def test_brier_skill_is_one_for_a_perfect_and_zero_for_the_base_rate_forecast() -> None:
    y, _ = make_data(500, 0.2, 1.0, seed=4)
    assert brier_skill_score(y, y.astype(np.float64)) == 1.0
    assert brier_skill_score(y, np.full(len(y), y.mean())) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "both defaults and non-defaults"),
        ([0, 1, 1], [0.1, 0.2], "pd has 2 values but y has 3"),
        ([0, 1, 1], [0.1, 1.2, 0.3], "pd must be probabilities"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "y must contain only 0 and 1"),
    ],
    ids=["one-class", "mismatched-lengths", "pd-above-1", "y-not-binary"],
)
def test_brier_skill_refuses_bad_input(y: list[int], p: list[float], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        brier_skill_score(y, p)


# --------------------------------------------------------------------------- band back-tests

BAND_CASES = [
    (100, 0, 0.01),
    (100, 3, 0.01),
    (250, 9, 0.02),
    (1000, 35, 0.025),
    (40, 40, 0.9),
    (60, 1, 0.2),
    (500, 5, 0.0005),
]
BAND_IDS = [
    "no-defaults",
    "above-pd",
    "near-pd",
    "large-band",
    "all-default",
    "below-pd",
    "tiny-pd",
]


def binomial_tail(n: int, d: int, p: float) -> float:
    """``P(X >= d)`` for ``X ~ Bin(n, p)``, summed term by term."""
    return math.fsum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(d, n + 1))


def jeffreys_by_integration(n: int, d: int, p: float) -> float:
    """The Jeffreys posterior's mass on [0, p], integrating the Beta density numerically."""
    a, b = d + 0.5, n - d + 0.5
    norming = math.exp(math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    mass, _ = integrate.quad(lambda x: x ** (a - 1) * (1 - x) ** (b - 1), 0.0, p, limit=200)
    return mass / norming


@pytest.mark.parametrize(("n", "d", "p"), BAND_CASES, ids=BAND_IDS)
def test_band_test_matches_binomial_tail_and_beta_posterior(n: int, d: int, p: float) -> None:
    got = band_calibration_test(n, d, p, band="B")
    assert got.binomial_p_value == pytest.approx(binomial_tail(n, d, p), rel=1e-9, abs=1e-15)
    scipy_binomial = binomtest(d, n, p, alternative="greater").pvalue
    assert got.binomial_p_value == pytest.approx(scipy_binomial, rel=1e-12)
    assert got.jeffreys_p_value == pytest.approx(beta.cdf(p, d + 0.5, n - d + 0.5), rel=1e-12)
    assert got.jeffreys_p_value == pytest.approx(jeffreys_by_integration(n, d, p), abs=1e-7)
    assert (got.band, got.n, got.defaults, got.mean_pd) == ("B", n, d, p)
    assert got.observed_rate == d / n
    assert got.light == light_by_rule(got.jeffreys_p_value)


@pytest.mark.parametrize(("n", "d", "p"), BAND_CASES, ids=BAND_IDS)
def test_band_light_can_follow_the_binomial_test(n: int, d: int, p: float) -> None:
    lights = TrafficLightThresholds(green_min=0.1, amber_min=0.02, test="binomial")
    got = band_calibration_test(n, d, p, thresholds=lights)
    assert got.light == light_by_rule(got.binomial_p_value, 0.1, 0.02)


@pytest.mark.parametrize(
    ("p_value", "light"),
    [
        (1.0, "green"),
        (0.05, "green"),
        (0.0499, "amber"),
        (0.01, "amber"),
        (0.0099, "red"),
        (0.0, "red"),
    ],
    ids=["one", "at-green", "below-green", "at-amber", "below-amber", "zero"],
)
def test_traffic_light_boundaries(p_value: float, light: str) -> None:
    assert TrafficLightThresholds().light_of(p_value) == light


def test_jeffreys_is_more_severe_than_the_exact_binomial_test() -> None:
    """The Jeffreys posterior tail lies below the exact tail (it is close to the mid-p),
    so with defaults observed it never gives a larger p-value."""
    for n, d, p in BAND_CASES:
        got = band_calibration_test(n, d, p)
        if d > 0:
            assert got.jeffreys_p_value <= got.binomial_p_value


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0, "defaults": 0, "mean_pd": 0.1}, "n must be an integer of at least 1; got 0"),
        ({"n": 10, "defaults": 11, "mean_pd": 0.1}, r"defaults must be at most n \(10\); got 11"),
        ({"n": 10, "defaults": -1, "mean_pd": 0.1}, "defaults must be an integer of at least 0"),
        ({"n": 10.0, "defaults": 1, "mean_pd": 0.1}, "n must be an integer"),
        ({"n": 10, "defaults": 1, "mean_pd": 1.5}, r"mean_pd must be a probability in \[0, 1\]"),
        ({"n": 10, "defaults": 1, "mean_pd": -0.1}, "mean_pd must be a probability"),
        ({"n": 10, "defaults": 1, "mean_pd": math.nan}, "mean_pd must be a probability"),
    ],
    ids=[
        "empty-band",
        "defaults-above-n",
        "negative-defaults",
        "float-n",
        "pd-above-1",
        "pd-negative",
        "pd-nan",
    ],
)
def test_band_test_refuses_bad_input(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        band_calibration_test(**kwargs)


@pytest.mark.parametrize(
    ("green_min", "amber_min", "test"),
    [
        (0.01, 0.05, "jeffreys"),
        (0.05, 0.0, "jeffreys"),
        (1.0, 0.01, "jeffreys"),
        (0.05, 0.01, "chi2"),
    ],
    ids=["amber-above-green", "amber-zero", "green-one", "unknown-test"],
)
def test_traffic_light_thresholds_refuse_bad_values(
    green_min: float, amber_min: float, test: Any
) -> None:
    with pytest.raises(InvalidInputError, match="TrafficLightThresholds"):
        TrafficLightThresholds(green_min=green_min, amber_min=amber_min, test=test)


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["seed0", "seed1", "seed2"])
def test_band_tests_match_a_pandas_groupby(seed: int) -> None:
    y, p = make_data(3000, 0.08, 2.0, seed)
    grades = np.asarray(pd.qcut(p, 5, labels=["1", "2", "3", "10", "20"], duplicates="drop"))
    rows = band_calibration_tests(y, p, grades)
    frame = pd.DataFrame({"band": grades, "y": y, "pd": p})
    expected = frame.groupby("band", observed=True).agg(
        n=("y", "size"), d=("y", "sum"), mean_pd=("pd", "mean")
    )
    assert [r.band for r in rows] == sorted(expected.index, key=int)  # numeric order
    for row in rows:
        n, d, mean_pd = expected.loc[row.band]
        assert (row.n, row.defaults) == (int(n), int(d))
        assert row.mean_pd == pytest.approx(mean_pd, rel=1e-12)
        exact = binomtest(int(d), int(n), row.mean_pd, alternative="greater").pvalue
        assert row.binomial_p_value == pytest.approx(exact, rel=1e-12)
        posterior = beta.cdf(row.mean_pd, d + 0.5, n - d + 0.5)
        assert row.jeffreys_p_value == pytest.approx(posterior, rel=1e-12)
        assert row.light == light_by_rule(row.jeffreys_p_value)


def test_band_tests_name_missing_band_labels() -> None:
    y = np.array([0, 1, 0, 0])
    p = np.array([0.1, 0.2, 0.1, 0.3])
    rows = band_calibration_tests(y, p, np.array(["A", None, "A", None], dtype=object))
    assert [(r.band, r.n, r.defaults) for r in rows] == [("A", 2, 0), ("missing", 2, 1)]


@pytest.mark.parametrize(
    ("y", "p", "bands", "match"),
    [
        ([0, 1, 0], [0.1, 0.2, 0.3], ["A", "B"], "bands has 2 values but y has 3"),
        ([0, 1, 0], [0.1, 1.2, 0.3], ["A", "B", "A"], r"pd must be probabilities in \[0, 1\]"),
        ([0, 1], [0.1, 0.2, 0.3], ["A", "B", "A"], "pd has 3 values but y has 2"),
        ([0, 1, 0], [0.1, 0.2, 0.3], [["A"], ["B"], ["A"]], "bands must be one-dimensional"),
    ],
    ids=["bands-length", "pd-above-1", "pd-length", "bands-2d"],
)
def test_band_tests_refuse_bad_input(
    y: list[int], p: list[float], bands: list[Any], match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        band_calibration_tests(y, p, bands)


# --------------------------------------------------------------------------- AUC decline


def placement_auc_and_variance(y: Labels, p: Floats) -> tuple[float, float]:
    """AUC and DeLong's variance from the O(n^2) placement values (ties count 1/2)."""
    x, z = p[y == 1], p[y == 0]
    kernel = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
    v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
    variance = np.var(v10, ddof=1) / len(x) + np.var(v01, ddof=1) / len(z)
    return float(kernel.mean()), float(variance)


DECLINE_CASES = [(1500, 2.5, 800, 1.0), (1000, 2.0, 1000, 2.0), (600, 1.0, 900, 2.5)]
DECLINE_IDS = ["weaker-new-sample", "same-strength", "stronger-new-sample"]


@pytest.mark.parametrize(("n_dev", "s_dev", "n_new", "s_new"), DECLINE_CASES, ids=DECLINE_IDS)
def test_auc_decline_matches_placement_variances(
    n_dev: int, s_dev: float, n_new: int, s_new: float
) -> None:
    y_dev, p_dev = make_data(n_dev, 0.15, s_dev, seed=10)
    y_new, p_new = make_data(n_new, 0.15, s_new, seed=11)
    auc_dev, var_dev = placement_auc_and_variance(y_dev, p_dev)
    auc_new, var_new = placement_auc_and_variance(y_new, p_new)
    z = (auc_dev - auc_new) / math.sqrt(var_dev + var_new)

    got = auc_decline_test(y_dev, p_dev, y_new, p_new)
    assert got.auc_dev == pytest.approx(roc_auc_score(y_dev, p_dev), abs=1e-12)
    assert got.auc_new == pytest.approx(roc_auc_score(y_new, p_new), abs=1e-12)
    assert got.auc_dev == pytest.approx(auc_dev, abs=1e-12)
    assert got.difference == pytest.approx(auc_dev - auc_new, abs=1e-12)
    assert got.se == pytest.approx(math.sqrt(var_dev + var_new), rel=1e-9)
    assert got.z == pytest.approx(z, rel=1e-9)
    assert got.p_value == pytest.approx(1.0 - norm.cdf(z), rel=1e-9, abs=1e-15)


def test_auc_decline_is_detected_when_the_new_sample_separates_worse() -> None:
    y_dev, p_dev = make_data(3000, 0.2, 3.0, seed=20)
    y_new, p_new = make_data(3000, 0.2, 0.5, seed=21)
    assert auc_decline_test(y_dev, p_dev, y_new, p_new).p_value < 0.01
    assert auc_decline_test(y_new, p_new, y_dev, p_dev).p_value > 0.99


def test_auc_decline_of_a_sample_against_itself_is_zero() -> None:
    y, p = make_data(400, 0.3, 1.0, seed=5)
    got = auc_decline_test(y, p, y, p)
    assert (got.difference, got.z, got.p_value) == (0.0, 0.0, 0.5)


def test_auc_decline_with_one_default_has_no_variance_and_serialises_as_null() -> None:
    y_dev, p_dev = make_data(200, 0.3, 1.0, seed=6)
    y_new = np.array([0, 0, 0, 1])
    got = auc_decline_test(y_dev, p_dev, y_new, np.array([0.1, 0.2, 0.3, 0.4]))
    assert got.auc_new == 1.0
    assert math.isnan(got.se) and math.isnan(got.p_value)
    assert json.loads(json.dumps(got.to_dict()))["p_value"] is None


@pytest.mark.parametrize(
    ("y_new", "p_new", "match"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "y_new must contain both defaults and non-defaults"),
        ([0, 1, 0], [0.1, 0.2], "pd_new has 2 values but y_new has 3"),
        ([0, 1, 0], [0.1, 0.2, -0.3], "pd_new must be probabilities"),
        ([], [], "y_new must not be empty"),
    ],
    ids=["one-class", "mismatched-lengths", "pd-negative", "empty"],
)
def test_auc_decline_refuses_bad_input(y_new: list[int], p_new: list[float], match: str) -> None:
    y_dev, p_dev = make_data(100, 0.3, 1.0, seed=7)
    with pytest.raises(InvalidInputError, match=match):
        auc_decline_test(y_dev, p_dev, y_new, p_new)


# --------------------------------------------------------------------------- stability


def psi_by_hand(reference: list[float], current: list[float]) -> float:
    """PSI written out: shares, an empty share read as 1e-4, sum (q - p) ln(q / p)."""
    p = np.asarray(reference, float) / sum(reference)
    q = np.asarray(current, float) / sum(current)
    p, q = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    return float(sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True)))


STABILITY_REFERENCE = {
    "income": [120, 300, 380, 200],
    "age": [250, 250, 250, 250],
    "utilisation": [400, 300, 200, 100, 0],
    "tenure": [10, 20, 30],
}
STABILITY_CURRENT = {
    "income": [150, 330, 340, 180],
    "age": [250, 250, 250, 250],
    "utilisation": [100, 200, 300, 380, 20],
    "tenure": [12, 18, 31],
}


def test_csi_is_the_psi_of_each_characteristic_sorted_largest_first() -> None:
    rows = characteristic_stability(STABILITY_REFERENCE, STABILITY_CURRENT)
    expected = {c: psi_by_hand(r, STABILITY_CURRENT[c]) for c, r in STABILITY_REFERENCE.items()}
    assert [r.characteristic for r in rows] == sorted(expected, key=lambda c: -expected[c])
    for row in rows:
        assert row.csi == pytest.approx(expected[row.characteristic], rel=1e-12, abs=1e-15)
        assert row.n_bins == len(STABILITY_REFERENCE[row.characteristic])
        by_rule = "critical" if row.csi >= 0.25 else ("warning" if row.csi >= 0.1 else "ok")
        assert row.level == by_rule
    assert {r.characteristic: r.level for r in rows}["age"] == "ok"
    assert {r.characteristic: r.level for r in rows}["utilisation"] == "critical"


def test_csi_levels_follow_the_given_thresholds() -> None:
    rows = characteristic_stability(STABILITY_REFERENCE, STABILITY_CURRENT, 0.001, 0.01)
    for row in rows:
        by_rule = "critical" if row.csi >= 0.01 else ("warning" if row.csi >= 0.001 else "ok")
        assert row.level == by_rule


@pytest.mark.parametrize(
    ("reference", "current", "match"),
    [
        ({"a": [1, 2], "b": [1, 2]}, {"a": [1, 2]}, "current_counts must have an entry for every"),
        ({"a": [1, 2]}, {"a": [1, 2], "b": [3, 4]}, "current_counts has characteristics that"),
        ({"a": [1, 2]}, {"a": [1, 2, 3]}, "must have the same number of bins"),
        ({"a": [1, -2]}, {"a": [1, 2]}, "must be non-negative bin counts"),
        ({"a": [0, 0]}, {"a": [1, 2]}, "with a positive total"),
        ({"a": []}, {"a": []}, "must not be empty"),
        ({}, {}, "reference_counts must name at least one characteristic"),
    ],
    ids=[
        "missing-key",
        "extra-key",
        "bin-count",
        "negative",
        "zero-total",
        "empty-bins",
        "no-characteristics",
    ],
)
def test_csi_refuses_bad_input(
    reference: dict[str, list[int]], current: dict[str, list[int]], match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        characteristic_stability(reference, current)


def test_csi_refuses_inverted_thresholds() -> None:
    with pytest.raises(InvalidInputError, match="need 0 < warning <= critical"):
        characteristic_stability(STABILITY_REFERENCE, STABILITY_CURRENT, 0.3, 0.2)


SCORECARD_POINTS = {
    "income": np.array([-20.0, -5.0, 10.0, 25.0]),
    "utilisation": np.array([30.0, 12.0, 0.0, -15.0, -40.0]),
    "age": np.array([-8.0, 2.0, 9.0]),
}


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["seed0", "seed1", "seed2"])
def test_score_shift_adds_up_to_the_change_of_the_simulated_mean_score(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference_bins, current_bins = {}, {}
    for name, pts in SCORECARD_POINTS.items():
        k = len(pts)
        reference_bins[name] = rng.choice(k, size=5000, p=rng.dirichlet(np.full(k, 5.0)))
        current_bins[name] = rng.choice(k, size=4000, p=rng.dirichlet(np.full(k, 5.0)))
    reference_score = sum(SCORECARD_POINTS[c][b] for c, b in reference_bins.items())
    current_score = sum(SCORECARD_POINTS[c][b] for c, b in current_bins.items())

    counts = {
        c: np.bincount(b, minlength=len(SCORECARD_POINTS[c])) for c, b in reference_bins.items()
    }
    current = {
        c: np.bincount(b, minlength=len(SCORECARD_POINTS[c])) for c, b in current_bins.items()
    }
    got = score_shift_attribution(SCORECARD_POINTS, counts, current)

    assert got.total_shift == pytest.approx(current_score.mean() - reference_score.mean(), abs=1e-9)
    expected = {
        c: SCORECARD_POINTS[c][current_bins[c]].mean()
        - SCORECARD_POINTS[c][reference_bins[c]].mean()
        for c in SCORECARD_POINTS
    }
    assert [r.characteristic for r in got.rows] == sorted(expected, key=lambda c: -abs(expected[c]))
    for row in got.rows:
        c = row.characteristic
        assert row.shift == pytest.approx(expected[c], abs=1e-9)
        assert row.reference_points == pytest.approx(SCORECARD_POINTS[c][reference_bins[c]].mean())
        assert row.current_points == pytest.approx(SCORECARD_POINTS[c][current_bins[c]].mean())


def test_score_shift_reads_shares_and_counts_alike() -> None:
    points = {"x": [10.0, -10.0]}
    from_counts = score_shift_attribution(points, {"x": [30, 70]}, {"x": [60, 140]})
    from_shares = score_shift_attribution(points, {"x": [0.3, 0.7]}, {"x": [0.3, 0.7]})
    assert from_counts.total_shift == pytest.approx(0.0, abs=1e-12)
    assert from_shares.total_shift == pytest.approx(0.0, abs=1e-12)
    moved = score_shift_attribution(points, {"x": [0.3, 0.7]}, {"x": [0.5, 0.5]})
    assert moved.total_shift == pytest.approx((0.5 - 0.3) * 10.0 + (0.5 - 0.7) * -10.0)


@pytest.mark.parametrize(
    ("points", "reference", "current", "match"),
    [
        ({"x": [1.0, 2.0]}, {"x": [1, 1]}, {"x": [1, 1, 1]}, "same number of bins"),
        (
            {"x": [1.0, 2.0]},
            {"x": [1, 1], "y": [1, 1]},
            {"x": [1, 1]},
            r"that points lacks: \['y'\]",
        ),
        (
            {"x": [1.0, 2.0], "y": [3.0]},
            {"x": [1, 1]},
            {"x": [1, 1], "y": [1]},
            "reference_shares must have an entry for every characteristic; 'y' is missing",
        ),
        ({"x": [1.0, math.inf]}, {"x": [1, 1]}, {"x": [1, 1]}, "must be finite"),
        ({"x": [1.0, 2.0]}, {"x": [1, 1]}, {"x": [-1, 1]}, "must be non-negative"),
    ],
    ids=["bin-count", "extra-key", "missing-key", "infinite-points", "negative-share"],
)
def test_score_shift_refuses_bad_input(
    points: dict[str, list[float]],
    reference: dict[str, list[float]],
    current: dict[str, list[float]],
    match: str,
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        score_shift_attribution(points, reference, current)


# --------------------------------------------------------------------------- fairness


def decisions(groups: dict[str, tuple[int, int]], seed: int) -> tuple[Any, Any]:
    """Rows with exactly the given (applicants, approvals) per group, shuffled."""
    labels = np.concatenate([[g] * n for g, (n, _) in groups.items()])
    approved = np.concatenate([[True] * a + [False] * (n - a) for n, a in groups.values()])
    order = np.random.default_rng(seed).permutation(len(labels))
    return labels[order], approved[order]


def impact_status_by_rule(
    n: int, a: int, n_ref: int, a_ref: int, air: float, min_count: int = 30
) -> str:
    cells = (a, n - a, a_ref, n_ref - a_ref)
    if min(n, n_ref) < min_count or min(cells) < 5:
        return "insufficient_data"
    return "fail" if air < 0.8 else "pass"


AIR_CASES = {
    "balanced": {"white": (400, 280), "black": (300, 200), "asian": (200, 150)},
    "four-fifths-breach": {"white": (500, 400), "black": (250, 140), "other": (100, 75)},
    "small-group": {"white": (300, 210), "native": (20, 10), "black": (150, 100)},
    "few-denials": {"white": (300, 210), "asian": (80, 77), "black": (150, 80)},
    "few-approvals": {"white": (300, 210), "black": (60, 3)},
}


@pytest.mark.parametrize("groups", list(AIR_CASES.values()), ids=list(AIR_CASES))
def test_adverse_impact_matches_a_pandas_groupby_and_fisher(
    groups: dict[str, tuple[int, int]],
) -> None:
    labels, approved = decisions(groups, seed=len(groups))
    result = adverse_impact_ratio(approved, labels, "white")
    frame = pd.DataFrame({"group": labels, "approved": approved})
    by_group = frame.groupby("group")["approved"].agg(["size", "sum", "mean"])
    n_ref, a_ref, rate_ref = by_group.loc["white"]
    assert result.reference_group == "white"
    assert sorted(r.group for r in result.rows) == sorted(by_group.index)
    for row in result.rows:
        n, a, rate = by_group.loc[row.group]
        assert (row.n, row.approvals) == (n, a)
        assert row.approval_rate == pytest.approx(rate, rel=1e-12)
        if row.group == "white":
            assert (row.status, row.adverse_impact_ratio, row.fisher_p_value) == (
                "reference",
                1.0,
                None,
            )
            continue
        air = rate / rate_ref
        table = [[a, n - a], [a_ref, n_ref - a_ref]]
        assert row.adverse_impact_ratio == pytest.approx(air, rel=1e-12)
        assert row.is_below_four_fifths is (air < 0.8)
        assert row.fisher_p_value == pytest.approx(fisher_exact(table).pvalue, rel=1e-12)
        assert row.status == impact_status_by_rule(n, a, n_ref, a_ref, air)


def test_adverse_impact_statuses_cover_every_rule() -> None:
    statuses = {}
    for groups in AIR_CASES.values():
        labels, approved = decisions(groups, seed=0)
        for row in adverse_impact_ratio(approved, labels, "white").rows:
            statuses.setdefault(row.status, row.group)
    assert set(statuses) == {"reference", "pass", "fail", "insufficient_data"}


def test_adverse_impact_min_count_is_a_parameter() -> None:
    labels, approved = decisions({"white": (300, 210), "native": (20, 10)}, seed=1)
    rows = {r.group: r for r in adverse_impact_ratio(approved, labels, "white", min_count=20).rows}
    assert rows["native"].status == impact_status_by_rule(20, 10, 300, 210, (10 / 20) / 0.7, 20)
    assert rows["native"].status == "fail"


def test_adverse_impact_with_integer_and_missing_group_labels() -> None:
    groups = np.array([1] * 50 + [2] * 50 + [None] * 40, dtype=object)
    approved = np.array([True] * 40 + [False] * 10 + [True] * 30 + [False] * 20 + [True] * 40)
    result = adverse_impact_ratio(approved, groups, "1")
    assert [r.group for r in result.rows] == ["1", "2", "missing"]
    assert result.rows[1].adverse_impact_ratio == pytest.approx((30 / 50) / (40 / 50))
    assert result.rows[2].status == "insufficient_data"  # no denials in "missing"
    assert json.loads(json.dumps(result.to_dict()))["rows"][0]["status"] == "reference"


@pytest.mark.parametrize(
    ("approved", "group", "reference", "min_count", "match"),
    [
        ([1, 0, 1], ["a", "b", "a"], "c", 30, r"reference_group must be one of the groups"),
        ([1, 0], ["a", "b", "a"], "a", 30, r"approved must be one-dimensional with one value"),
        ([1, 2, 1], ["a", "b", "a"], "a", 30, "approved must be boolean"),
        ([1, 0, 1], ["a", "b", "a"], "a", 0, "min_count must be an integer of at least 1"),
        ([], [], "a", 30, "group must not be empty"),
    ],
    ids=["reference-absent", "mismatched-lengths", "approved-not-binary", "min-count-0", "empty"],
)
def test_adverse_impact_refuses_bad_input(
    approved: list[int], group: list[str], reference: str, min_count: int, match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        adverse_impact_ratio(approved, group, reference, min_count)


def smd_by_hand(x: Floats, ref: Floats) -> float:
    n1, n2 = len(x), len(ref)
    pooled = math.sqrt(
        ((n1 - 1) * np.var(x, ddof=1) + (n2 - 1) * np.var(ref, ddof=1)) / (n1 + n2 - 2)
    )
    return float((x.mean() - ref.mean()) / pooled)


def cohen_by_rule(d: float) -> str:
    size = abs(d)
    if size >= 0.8:
        return "large"
    if size >= 0.5:
        return "medium"
    return "small" if size >= 0.2 else "negligible"


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["seed0", "seed1", "seed2"])
def test_smd_matches_numpy_by_hand(seed: int) -> None:
    rng = np.random.default_rng(seed)
    spec = {
        "ref": (400, 600.0, 50.0),
        "a": (300, 595.0, 45.0),
        "b": (250, 585.0, 60.0),
        "c": (200, 570.0, 50.0),
        "d": (150, 550.0, 40.0),
        "e": (12, 500.0, 50.0),
    }
    samples = {g: rng.normal(mu, sd, size=n) for g, (n, mu, sd) in spec.items()}
    labels = np.concatenate([[g] * len(s) for g, s in samples.items()])
    scores = np.concatenate(list(samples.values()))
    result = standardized_mean_difference(scores, labels, "ref")
    for row in result.rows:
        x = samples[row.group]
        assert row.n == len(x)
        assert row.mean == pytest.approx(x.mean(), rel=1e-12)
        assert row.sd == pytest.approx(np.std(x, ddof=1), rel=1e-9)
        assert row.smd == pytest.approx(smd_by_hand(x, samples["ref"]), rel=1e-9, abs=1e-12)
        if row.group == "ref":
            assert (row.status, row.magnitude) == ("reference", None)
        elif len(x) < 30:
            assert (row.status, row.magnitude) == ("insufficient_data", None)
        else:
            assert row.status == "assessed"
            assert row.magnitude == cohen_by_rule(smd_by_hand(x, samples["ref"]))


def test_smd_is_undefined_for_constant_scores_and_counts_follow_min_count() -> None:
    labels = np.array(["r"] * 40 + ["g"] * 40)
    result = standardized_mean_difference(np.full(80, 500.0), labels, "r", min_count=41)
    assert all(r.smd is None for r in result.rows)
    assert [r.status for r in result.rows] == ["insufficient_data", "reference"]


@pytest.mark.parametrize(
    ("scores", "group", "reference", "match"),
    [
        ([1.0, 2.0, 3.0], ["a", "b", "a"], "z", "reference_group must be one of the groups"),
        ([1.0, 2.0], ["a", "b", "a"], "a", "scores has 2 values but group has 3"),
        ([1.0, math.nan, 3.0], ["a", "b", "a"], "a", "scores must be finite"),
        ([1.0, 2.0, 3.0], [["a"], ["b"], ["a"]], "a", "group must be one-dimensional"),
    ],
    ids=["reference-absent", "mismatched-lengths", "nan-score", "group-2d"],
)
def test_smd_refuses_bad_input(
    scores: list[float], group: list[Any], reference: str, match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        standardized_mean_difference(scores, group, reference)


def test_results_serialise_to_json() -> None:
    y, p = make_data(500, 0.2, 1.0, seed=9)
    bands = np.where(p < 0.2, "low", "high")
    labels, approved = decisions(AIR_CASES["balanced"], seed=0)
    payloads = [
        *(row.to_dict() for row in band_calibration_tests(y, p, bands)),
        auc_decline_test(y, p, y, p).to_dict(),
        *(row.to_dict() for row in characteristic_stability({"x": [1, 2]}, {"x": [2, 1]})),
        score_shift_attribution({"x": [1.0, 2.0]}, {"x": [1, 2]}, {"x": [2, 1]}).to_dict(),
        adverse_impact_ratio(approved, labels, "white").to_dict(),
        standardized_mean_difference(p, bands, "low").to_dict(),
    ]
    for payload in payloads:
        assert json.loads(json.dumps(payload, allow_nan=False)) == payload
