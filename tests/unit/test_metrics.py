"""Evaluation metrics against scikit-learn / scipy and straightforward reference code."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy.stats import chi2, ks_2samp, norm
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.metrics import log_loss as sk_log_loss

from creditops.errors import InvalidInputError
from creditops.modeling.metrics import (
    brier_score,
    calibration_in_the_large,
    calibration_table,
    classification_metrics,
    delong_auc_ci,
    delong_test,
    evaluate_binary,
    gains_table,
    gini,
    hosmer_lemeshow,
    ks_statistic,
    log_loss,
    roc_auc,
)

pytestmark = pytest.mark.unit

Labels = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

# (rows, default rate, decimals the PD is rounded to: few decimals -> many ties)
CASES = [(50, 0.3, 2), (400, 0.1, 2), (1000, 0.05, 1), (777, 0.5, 12), (2000, 0.2, 3)]
CASE_IDS = ["n50-ties", "n400", "n1000-heavy-ties", "n777-no-ties", "n2000"]


def make_data(n: int, rate: float, decimals: int, seed: int = 0) -> tuple[Labels, Floats]:
    """Informative but noisy PDs; both classes guaranteed."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(np.int64)
    y[:2] = [0, 1]
    logit = -1.5 + 1.2 * y + rng.normal(size=n)
    return y, np.round(1.0 / (1.0 + np.exp(-logit)), decimals)


def structural_components(y: Labels, p: Floats) -> tuple[Floats, Floats]:
    """DeLong's V10 / V01 the O(n^2) way: psi = 1 if a default outranks a non-default."""
    x, z = p[y == 1], p[y == 0]
    psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


def rank_bin_rows(values: Floats, k: int) -> list[list[int]]:
    """The documented binning rule, written as a plain loop over positions."""
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    bins: list[list[int]] = [[] for _ in range(k)]
    for position, row in enumerate(order):
        bins[position * k // len(values)].append(row)
    return bins


@pytest.mark.parametrize(("n", "rate", "decimals"), CASES, ids=CASE_IDS)
def test_scores_match_sklearn_and_scipy(n: int, rate: float, decimals: int) -> None:
    y, p = make_data(n, rate, decimals)
    auc = roc_auc(y, p)
    assert auc == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert gini(auc) == pytest.approx(2 * roc_auc_score(y, p) - 1, abs=1e-12)
    assert ks_statistic(y, p) == pytest.approx(ks_2samp(p[y == 1], p[y == 0]).statistic, abs=1e-12)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, y_proba=p), abs=1e-12)


def test_log_loss_clips_certain_predictions_like_sklearn() -> None:
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.5])  # two confident mistakes
    assert math.isfinite(log_loss(y, p))
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, y_proba=p), rel=1e-12)


def test_auc_all_tied_is_one_half_and_perfect_is_one() -> None:
    y = np.array([0, 1, 0, 1])
    assert roc_auc(y, np.full(4, 0.3)) == 0.5
    assert roc_auc(y, np.array([0.1, 0.9, 0.2, 0.8])) == 1.0
    assert ks_statistic(y, np.array([0.1, 0.9, 0.2, 0.8])) == 1.0


@pytest.mark.parametrize(
    "threshold", [0.0, 0.2, 0.35, 0.5, 1.1], ids=["all-bad", "t0.2", "t0.35", "t0.5", "none-bad"]
)
def test_classification_metrics_match_sklearn(threshold: float) -> None:
    y, p = make_data(600, 0.2, 3, seed=3)
    predicted_bad = p >= threshold
    got = classification_metrics(y, predicted_bad)
    kwargs = {"zero_division": 0}
    assert got.accuracy == pytest.approx(accuracy_score(y, predicted_bad), abs=1e-12)
    assert got.precision == pytest.approx(precision_score(y, predicted_bad, **kwargs), abs=1e-12)
    assert got.recall == pytest.approx(recall_score(y, predicted_bad, **kwargs), abs=1e-12)
    assert got.f1 == pytest.approx(f1_score(y, predicted_bad, **kwargs), abs=1e-12)
    assert got.tp == int(np.sum((y == 1) & predicted_bad))
    assert got.fp == int(np.sum((y == 0) & predicted_bad))
    assert got.tn == int(np.sum((y == 0) & ~predicted_bad))
    assert got.fn == int(np.sum((y == 1) & ~predicted_bad))


@pytest.mark.parametrize(("n", "rate", "decimals"), CASES, ids=CASE_IDS)
def test_delong_variance_matches_quadratic_reference(n: int, rate: float, decimals: int) -> None:
    y, p = make_data(n, rate, decimals, seed=1)
    v10, v01 = structural_components(y, p)
    se = math.sqrt(np.var(v10, ddof=1) / len(v10) + np.var(v01, ddof=1) / len(v01))
    got = delong_auc_ci(y, p, alpha=0.05)
    assert got.auc == pytest.approx(v10.mean(), abs=1e-12)
    assert got.se == pytest.approx(se, abs=1e-12)
    half = norm.ppf(0.975) * se
    assert got.lower == pytest.approx(max(got.auc - half, 0.0), abs=1e-12)
    assert got.upper == pytest.approx(min(got.auc + half, 1.0), abs=1e-12)
    assert got.lower <= got.auc <= got.upper
    wider = delong_auc_ci(y, p, alpha=0.01)
    assert wider.lower < got.lower and wider.upper > got.upper


def test_delong_interval_has_nominal_coverage() -> None:
    """Binormal scores with unit variance and mean shift d have AUC = Phi(d / sqrt 2)."""
    rng = np.random.default_rng(7)
    shift = 1.0
    true_auc = norm.cdf(shift / math.sqrt(2))
    covered = 0
    trials = 300
    for _ in range(trials):
        y = np.repeat([0, 1], [150, 100])
        p = norm.cdf((rng.normal(size=250) + shift * y) / 3)
        interval = delong_auc_ci(y, p)
        covered += interval.lower <= true_auc <= interval.upper
    assert 0.91 <= covered / trials <= 0.99


def test_delong_interval_clipped_to_unit_range() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    got = delong_auc_ci(y, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]))
    assert got.auc == 1.0 and got.upper == 1.0 and got.lower <= 1.0


def test_delong_with_single_default_has_undefined_se() -> None:
    got = delong_auc_ci([0, 0, 1], [0.1, 0.5, 0.4])
    assert got.auc == pytest.approx(0.5)
    assert math.isnan(got.se) and math.isnan(got.lower)
    assert got.to_dict()["se"] is None
    json.dumps(got.to_dict(), allow_nan=False)


@pytest.mark.parametrize(("n", "rate", "decimals"), CASES[:3], ids=CASE_IDS[:3])
def test_delong_test_matches_quadratic_reference(n: int, rate: float, decimals: int) -> None:
    y, p_a = make_data(n, rate, decimals, seed=2)
    rng = np.random.default_rng(5)
    p_b = np.clip(np.round(p_a + rng.normal(0, 0.15, n), decimals), 0, 1)
    v10_a, v01_a = structural_components(y, p_a)
    v10_b, v01_b = structural_components(y, p_b)
    s10, s01 = np.cov(v10_a, v10_b), np.cov(v01_a, v01_b)
    contrast = np.array([1.0, -1.0])
    var = contrast @ s10 @ contrast / len(v10_a) + contrast @ s01 @ contrast / len(v01_a)
    diff = v10_a.mean() - v10_b.mean()
    got = delong_test(y, p_a, p_b)
    assert got.auc_a == pytest.approx(roc_auc_score(y, p_a), abs=1e-12)
    assert got.auc_b == pytest.approx(roc_auc_score(y, p_b), abs=1e-12)
    assert got.difference == pytest.approx(diff, abs=1e-12)
    assert got.se == pytest.approx(math.sqrt(var), abs=1e-12)
    assert got.z == pytest.approx(diff / math.sqrt(var), rel=1e-9)
    assert got.p_value == pytest.approx(2 * norm.sf(abs(diff / math.sqrt(var))), rel=1e-9)
    swapped = delong_test(y, p_b, p_a)
    assert swapped.z == pytest.approx(-got.z) and swapped.p_value == pytest.approx(got.p_value)


def test_delong_test_identical_and_rank_identical_predictions() -> None:
    y, p = make_data(500, 0.2, 3)
    for other in (p, p**2):  # a monotone transform has the same ranks, hence the same AUC
        got = delong_test(y, p, other)
        assert (got.difference, got.se, got.z, got.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_delong_test_detects_a_clearly_better_model() -> None:
    y, good = make_data(2000, 0.2, 6, seed=4)
    noise = np.random.default_rng(9).random(2000)
    got = delong_test(y, good, noise)
    assert got.difference > 0.15 and got.z > 5 and got.p_value < 1e-6
    json.dumps(got.to_dict(), allow_nan=False)


def test_gains_table_invariants_and_direct_computation() -> None:
    y, p = make_data(1003, 0.15, 2, seed=6)
    score = np.round(600 - 100 * np.log(p / (1 - p)))  # higher = safer, many ties
    rows = gains_table(y, score, n_bins=10)
    assert [r.bin for r in rows] == list(range(1, 11))
    assert sum(r.count for r in rows) == 1003 and sum(r.bads for r in rows) == int(y.sum())
    assert max(r.count for r in rows) - min(r.count for r in rows) <= 1
    captures = [r.cumulative_bad_capture for r in rows]
    assert all(b >= a for a, b in itertools.pairwise(captures))
    assert captures[-1] == pytest.approx(1.0) and rows[-1].cumulative_count_share == 1.0
    assert rows[0].bad_rate > rows[-1].bad_rate  # bin 1 is the riskiest
    for row, members in zip(rows, rank_bin_rows(score, 10), strict=True):
        assert row.count == len(members) and row.bads == int(y[members].sum())
        assert row.score_min == score[members].min() and row.score_max == score[members].max()
        assert row.bad_rate == pytest.approx(y[members].mean(), abs=1e-12)
    assert all(a.score_max <= b.score_min for a, b in itertools.pairwise(rows))
    json.dumps([r.to_dict() for r in rows], allow_nan=False)


def test_gains_table_heavy_ties_and_small_inputs() -> None:
    y = np.tile([0, 0, 1, 0], 250)
    score = np.repeat([500.0, 600.0, 700.0], [400, 300, 300])
    rows = gains_table(y, score)
    assert len(rows) == 10 and all(r.count == 100 for r in rows)
    assert len(gains_table([0, 1, 0], [1.0, 2.0, 3.0])) == 3  # fewer rows than bins
    no_bads = gains_table([0, 0, 0, 0], [1.0, 2.0, 3.0, 4.0], n_bins=2)
    assert [r.cumulative_bad_capture for r in no_bads] == [0.0, 0.0]


def test_calibration_table_and_calibration_in_the_large() -> None:
    y, p = make_data(997, 0.2, 3, seed=8)
    rows = calibration_table(y, p, n_bins=10)
    assert sum(r.count for r in rows) == 997
    for row, members in zip(rows, rank_bin_rows(p, 10), strict=True):
        assert row.count == len(members)
        assert row.mean_pd == pytest.approx(p[members].mean(), abs=1e-12)
        assert row.observed_default_rate == pytest.approx(y[members].mean(), abs=1e-12)
    assert [r.mean_pd for r in rows] == sorted(r.mean_pd for r in rows)
    citl = calibration_in_the_large(y, p)
    assert citl == pytest.approx(p.mean() - y.mean(), abs=1e-12)
    assert calibration_in_the_large([0, 0, 1, 0], [0.5] * 4) == pytest.approx(0.25)  # over-predicts


def reference_hosmer_lemeshow(y: Labels, p: Floats, k: int) -> float:
    statistic = 0.0
    for members in rank_bin_rows(p, k):
        observed, expected, size = y[members].sum(), p[members].sum(), len(members)
        statistic += (observed - expected) ** 2 / (expected * (1 - expected / size))
    return float(statistic)


@pytest.mark.parametrize("groups", [10, 8, 5], ids=["g10", "g8", "g5"])
def test_hosmer_lemeshow_matches_direct_computation(groups: int) -> None:
    y, p = make_data(1234, 0.2, 4, seed=10)
    got = hosmer_lemeshow(y, p, n_groups=groups)
    expected = reference_hosmer_lemeshow(y, p, groups)
    assert got.statistic == pytest.approx(expected, rel=1e-12)
    assert got.dof == groups - 2
    assert got.p_value == pytest.approx(chi2.sf(expected, groups - 2), rel=1e-12)


def test_hosmer_lemeshow_separates_calibrated_from_miscalibrated() -> None:
    rng = np.random.default_rng(11)
    p = rng.uniform(0.01, 0.4, 5000)
    calibrated = (rng.random(5000) < p).astype(int)
    doubled = (rng.random(5000) < 2 * p).astype(int)
    assert hosmer_lemeshow(calibrated, p).p_value > 0.01
    assert hosmer_lemeshow(doubled, p).p_value < 1e-6


def test_hosmer_lemeshow_degenerate_zero_variance_group() -> None:
    y = np.array([0] * 10 + [0, 1] * 10)
    p = np.array([0.0] * 10 + [0.5] * 20)
    got = hosmer_lemeshow(y, p, n_groups=3)
    assert math.isfinite(got.statistic)
    assert hosmer_lemeshow(np.array([1] + [0] * 9 + [0, 1] * 10), p, n_groups=3).statistic == (
        math.inf
    )


def test_evaluate_binary_keys_and_values() -> None:
    y, p = make_data(800, 0.2, 3, seed=12)
    predicted_bad = p > 0.3
    got = evaluate_binary(y, p, predicted_bad)
    assert list(got) == [
        "auc", "auc_lower", "auc_upper", "gini", "ks", "brier", "log_loss", "accuracy",
        "precision", "recall", "f1", "calibration_in_the_large", "hosmer_lemeshow_stat",
        "hosmer_lemeshow_p",
    ]  # fmt: skip
    assert got["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert got["gini"] == pytest.approx(2 * got["auc"] - 1, abs=1e-12)
    assert got["auc_lower"] < got["auc"] < got["auc_upper"]
    assert got["ks"] == pytest.approx(ks_2samp(p[y == 1], p[y == 0]).statistic, abs=1e-12)
    assert got["f1"] == pytest.approx(f1_score(y, predicted_bad), abs=1e-12)
    assert got["hosmer_lemeshow_stat"] == pytest.approx(reference_hosmer_lemeshow(y, p, 10))
    assert all(isinstance(v, float) for v in got.values())


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: roc_auc([0, 1, 1], [0.1, 0.2]), "pd"),
        (lambda: roc_auc([], []), "y"),
        (lambda: roc_auc([0, 0, 0], [0.1, 0.2, 0.3]), "y"),
        (lambda: ks_statistic([1, 1], [0.1, 0.2]), "y"),
        (lambda: roc_auc([0, 2, 1], [0.1, 0.2, 0.3]), "y"),
        (lambda: roc_auc(["a", "b"], [0.1, 0.2]), "y"),
        (lambda: brier_score([0, 1], [0.1, 1.2]), "pd"),
        (lambda: log_loss([0, 1], [0.1, float("nan")]), "pd"),
        (lambda: roc_auc([[0, 1]], [[0.1, 0.2]]), "y"),
        (lambda: delong_test([0, 1], [0.1, 0.2], [0.3]), "pd_b"),
        (lambda: delong_auc_ci([0, 1], [0.1, 0.2], alpha=1.5), "alpha"),
        (lambda: gains_table([0, 1], [1.0, float("inf")]), "score"),
        (lambda: gains_table([0, 1], [1.0, 2.0], n_bins=0), "n_bins"),
        (lambda: classification_metrics([0, 1], [True]), "predicted_bad"),
        (lambda: hosmer_lemeshow([0, 1, 0], [0.1, 0.2, 0.3], n_groups=2), "n_groups"),
    ],
    ids=[
        "length", "empty", "no-defaults", "no-goods", "not-binary", "strings", "pd-range",
        "pd-nan", "2d", "pd_b-length", "alpha", "score-inf", "n-bins", "pred-length", "hl-groups",
    ],
)  # fmt: skip
def test_invalid_inputs_name_the_parameter(call: object, field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        call()  # type: ignore[operator]
    assert info.value.field == field
    assert field in str(info.value)
