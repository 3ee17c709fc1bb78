"""Data and prediction drift: statistics against scipy on the same raw samples, frozen bins,
Benjamini-Hochberg, effect floors, known synthetic shifts, binned mode and hysteresis."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from creditops.errors import ConfigError, DataError, InvalidInputError
from creditops.features.dataset import normalise_categorical
from creditops.features.profile import build_reference_profile, decile_edges
from creditops.monitoring.conditions import Hysteresis, level_of, worst
from creditops.monitoring.drift import statistics as st
from creditops.monitoring.drift.binned import (
    BinnedAccumulator,
    data_drift_binned,
    drift_from_profile,
    numeric_grid,
)
from creditops.monitoring.drift.data import DriftConfig, FeatureOverride
from creditops.monitoring.drift.exact import data_drift_exact, prepare_reference
from creditops.monitoring.drift.prediction import (
    ApprovalCounts,
    PredictionDriftConfig,
    prediction_drift,
)
from creditops.monitoring.drift.statistics import CategoricalCounts, NumericCounts, count_numeric

pytestmark = pytest.mark.unit

TOL = 1e-9
PLAIN = DriftConfig(correction="none", ks_effect_floor=0.0, chi2_effect_floor=0.0)


def _close(a: float | None, b: float, rel: float = TOL) -> bool:
    return a is not None and abs(a - b) <= max(TOL, rel * abs(b))


def make_frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Continuous, integer-valued and categorical features (with a few missing values)."""
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(8.0, 1.0, n), -2)
    grade = rng.choice(np.array(["A", "B", "C", "D"], dtype=object), n, p=[0.4, 0.3, 0.2, 0.1])
    return pd.DataFrame(
        {
            "x0": rng.normal(shift, 1.0, n),
            "x1": rng.normal(0.0, 1.0, n),
            "amount": np.where(rng.random(n) < 0.02, np.nan, amount),
            "delay": rng.choice([-2, -1, 0, 1, 2, 3], n, p=[0.1, 0.2, 0.5, 0.1, 0.07, 0.03]),
            "grade": np.where(rng.random(n) < 0.01, np.array(None, dtype=object), grade),
        }
    )


TYPES = {"x0": "numeric", "x1": "numeric", "amount": "numeric", "delay": "numeric"}
TYPES_ALL = {**TYPES, "grade": "categorical"}


def profile_of(frame: pd.DataFrame, types: dict[str, str] = TYPES_ALL) -> dict[str, Any]:
    zeros = np.zeros(len(frame))
    return build_reference_profile(frame, types, zeros, zeros)


# --------------------------------------------------------------------------- samples


SAMPLES: dict[str, npt.NDArray[np.floating[Any]]] = {
    "continuous-small": np.random.default_rng(1).normal(size=800),
    "ties-small": np.random.default_rng(2).integers(0, 7, 900).astype(float),
    "integers-large": np.random.default_rng(3).integers(-500, 3000, 80_000).astype(float),
    "few-floats-large": np.random.default_rng(4).integers(0, 40, 60_000) * 0.37,
    "continuous-large": np.random.default_rng(5).standard_t(3, 60_000),
    "with-nan-inf": np.concatenate(
        [np.random.default_rng(6).normal(size=70_000), [np.nan, np.inf, -np.inf]]
    ),
}


@pytest.mark.parametrize("values", SAMPLES.values(), ids=SAMPLES.keys())
def test_sample_representation_matches_numpy(values: npt.NDArray[np.floating[Any]]) -> None:
    sample, missing = st.Sample.from_array(values)
    finite = values[np.isfinite(values)]
    assert missing == values.size - finite.size
    distinct, counts = np.unique(finite, return_counts=True)
    np.testing.assert_array_equal(sample.expand(), np.sort(finite))
    np.testing.assert_array_equal(np.unique(sample.values), distinct)
    np.testing.assert_array_equal(sample.count_le(distinct), np.cumsum(counts))
    levels = np.linspace(0, 1, 101)
    np.testing.assert_array_equal(sample.quantiles(levels), np.quantile(finite, levels))
    mean, std = sample.mean_std()
    assert _close(mean, float(finite.mean()), 1e-12) and _close(
        std, float(finite.std(ddof=1)), 1e-9
    )


PAIRS = [
    ("exact-equal-n", 600, 600, 0.0, False),
    ("exact-unequal", 500, 1300, 0.1, False),
    ("exact-ties", 2000, 3000, 0.2, True),
    ("asymp", 30_000, 12_000, 0.03, False),
    ("asymp-ties", 60_000, 70_000, 0.02, True),
]


@pytest.mark.parametrize(
    ("n1", "n2", "shift", "ties"), [p[1:] for p in PAIRS], ids=[p[0] for p in PAIRS]
)
def test_ks_and_wasserstein_match_scipy(n1: int, n2: int, shift: float, ties: bool) -> None:
    rng = np.random.default_rng(n1 + n2)
    a, b = rng.normal(0, 2, n1), rng.normal(shift, 2, n2)
    if ties:
        a, b = np.round(a * 3), np.round(b * 3)
    result = st.compare_samples(st.Sample.from_array(a)[0], st.Sample.from_array(b)[0])
    reference = stats.ks_2samp(a, b)
    assert _close(result.ks_statistic, float(reference.statistic))
    assert _close(result.ks_p_value, float(reference.pvalue))
    assert _close(result.wasserstein, float(stats.wasserstein_distance(a, b)))


def test_asymptotic_ks_pvalue_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=700), rng.normal(0.1, size=400)
    reference = stats.ks_2samp(a, b, method="asymp")
    assert _close(st.ks_pvalue_asymptotic(float(reference.statistic), 700, 400), reference.pvalue)


# --------------------------------------------------------------------------- count statistics


def test_count_statistics_match_scipy_and_definitions() -> None:
    ref = np.array([120, 80, 0, 40, 10])
    cur = np.array([100, 95, 7, 30, 0])
    chi2, p, _, _ = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert _close(st.chi2_homogeneity(ref, cur)[0], chi2) and _close(
        st.chi2_homogeneity(ref, cur)[1], p
    )
    assert _close(
        st.jensen_shannon(ref, cur), float(jensenshannon(ref / ref.sum(), cur / cur.sum()))
    )
    p_ref = np.where(ref == 0, 1e-4, ref / ref.sum())
    p_cur = np.where(cur == 0, 1e-4, cur / cur.sum())
    expected_psi = sum((c - r) * np.log(c / r) for r, c in zip(p_ref, p_cur, strict=True))
    assert _close(st.psi(ref, cur), float(expected_psi))
    assert _close(
        st.total_variation(ref, cur), 0.5 * float(np.abs(ref / ref.sum() - cur / cur.sum()).sum())
    )
    assert st.chi2_homogeneity([5, 0], [7, 0]) == (0.0, 1.0)  # one category: nothing differs


def test_benjamini_hochberg_matches_scipy() -> None:
    p = np.random.default_rng(8).uniform(0, 0.2, 40) ** 2
    np.testing.assert_allclose(
        st.benjamini_hochberg(p), stats.false_discovery_control(p), rtol=1e-12
    )


def test_two_proportion_z_matches_chi_square_of_the_table() -> None:
    z, p = st.two_proportion_z(600, 1000, 1150, 2000)
    table = np.array([[600, 400], [1150, 850]])
    chi2, p_chi2, _, _ = stats.chi2_contingency(table, correction=False)
    assert _close(z**2, chi2) and _close(p, p_chi2) and z < 0


# --------------------------------------------------------------------------- exact mode


def test_exact_mode_reports_scipy_statistics_per_feature() -> None:
    ref, cur = make_frame(3000, 10), make_frame(2500, 11, shift=0.15)
    result = data_drift_exact(ref, cur, TYPES_ALL, DriftConfig())
    raw_p = []
    for name in TYPES:
        a, b = ref[name].dropna().to_numpy(), cur[name].dropna().to_numpy()
        f = result.feature(name)
        assert _close(f.p_value, float(stats.ks_2samp(a, b).pvalue))
        assert _close(f.statistic, float(stats.ks_2samp(a, b).statistic))
        assert _close(f.wasserstein, float(stats.wasserstein_distance(a, b)))
        assert (f.n_reference, f.n_current) == (a.size, b.size)
        raw_p.append(float(stats.ks_2samp(a, b).pvalue))
    table = pd.crosstab(
        np.r_[np.zeros(len(ref)), np.ones(len(cur))],
        pd.concat([ref["grade"], cur["grade"]]).fillna("missing").to_numpy(),
    ).to_numpy()
    chi2, p_chi2, _, _ = stats.chi2_contingency(table, correction=False)
    grade = result.feature("grade")
    assert _close(grade.statistic, chi2) and _close(grade.p_value, p_chi2)
    assert _close(
        grade.js, float(jensenshannon(table[0] / table[0].sum(), table[1] / table[1].sum()))
    )
    raw_p.append(p_chi2)
    adjusted = stats.false_discovery_control(raw_p)
    got = [result.feature(n).p_value_adjusted for n in TYPES_ALL]
    np.testing.assert_allclose(np.asarray(got, dtype=float), adjusted, rtol=1e-9)
    plain = data_drift_exact(ref, cur, TYPES_ALL, DriftConfig(correction="none"))
    assert all(f.p_value_adjusted == f.p_value for f in plain.features)
    amount = result.feature("amount")
    assert _close(amount.missing_share_reference, float(ref["amount"].isna().mean()))
    assert amount.bins[-1].bin == "missing"
    assert _close(amount.bins[-1].current, float(cur["amount"].isna().mean()))


def test_psi_bins_are_frozen_reference_deciles() -> None:
    ref, cur = make_frame(4000, 12), make_frame(3000, 13, shift=0.5)
    profile = profile_of(ref)
    prepared = prepare_reference(ref, TYPES_ALL)
    for name in TYPES:
        held = prepared.features[name]
        assert list(held.edges) == profile["features"][name]["edges"]  # type: ignore[union-attr]
        assert held.bins.tolist() == profile["features"][name]["counts"]  # type: ignore[union-attr]
        # Bins are right-closed: (e[i-1], e[i]]; pandas' cut is the reference here.
        edges = [-np.inf, *decile_edges(ref[name].to_numpy(float)), np.inf]
        ref_bins = pd.cut(ref[name], edges, right=True).value_counts(sort=False).to_numpy()
        cur_bins = pd.cut(cur[name], edges, right=True).value_counts(sort=False).to_numpy()
        p_ref = np.append(ref_bins, ref[name].isna().sum())
        p_cur = np.append(cur_bins, cur[name].isna().sum())
        result = data_drift_exact(prepared, cur, TYPES_ALL).feature(name)
        assert _close(result.psi, st.psi(p_ref, p_cur))
        # The bins come from the reference only: the current data never moves them.
        assert _close(data_drift_exact(prepared, cur * 1, TYPES_ALL).feature(name).psi, result.psi)


def test_shift_of_a_tenth_of_a_standard_deviation_is_detected() -> None:
    ref, cur = make_frame(10_000, 20), make_frame(10_000, 21, shift=0.1)
    result = data_drift_exact(ref, cur, TYPES_ALL)  # defaults: BH and effect floors
    assert "x0" in result.drifted_features  # (unshifted ones can alarm at about alpha)
    x0 = result.feature("x0")
    assert x0.p_value_adjusted is not None and x0.p_value_adjusted < 0.05
    assert x0.effect_size is not None and x0.effect_size >= DriftConfig().ks_effect_floor


def test_false_alarm_rate_without_shift_is_near_alpha() -> None:
    """100 independent reference / current pairs from one population: the share of raw
    p < 0.05 per feature (under the null a continuous feature's p is uniform)."""
    alarms = {name: 0 for name in TYPES_ALL}
    drifted = 0
    for i in range(100):
        result = data_drift_exact(make_frame(1000, 1000 + i), make_frame(800, 2000 + i), TYPES_ALL)
        for f in result.features:
            alarms[f.feature] += f.p_value is not None and f.p_value < 0.05
        drifted += result.n_drifted
    rates = {name: count / 100 for name, count in alarms.items()}
    print(f"false-alarm rates per feature (raw p < 0.05): {rates}")
    # Binomial(100, 0.05) stays within 0..12 with probability > 0.999.
    assert all(0.0 <= r <= 0.12 for r in rates.values()), rates
    continuous = (rates["x0"] + rates["x1"]) / 2
    assert 0.015 <= continuous <= 0.09, rates
    # Discrete features (ties) make KS conservative; BH and the floors only lower the rate.
    assert rates["delay"] <= 0.05
    assert drifted <= sum(alarms.values())


def test_effect_floor_silences_trivial_shifts_in_large_windows() -> None:
    rng = np.random.default_rng(40)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 300_000)})
    cur = pd.DataFrame({"x": rng.normal(0.02, 1, 300_000)})
    f = data_drift_exact(ref, cur, {"x": "numeric"}).feature("x")
    assert f.p_value is not None and f.p_value < 1e-6  # significant...
    assert f.effect_size is not None and f.effect_size < 0.02 and not f.drifted  # ...but trivial
    assert data_drift_exact(ref, cur, {"x": "numeric"}, PLAIN).feature("x").drifted


@pytest.mark.parametrize(
    ("method", "statistic"),
    [("ks", "ks_statistic"), ("wasserstein", "wasserstein"), ("psi", "psi")],
    ids=["ks", "wasserstein", "psi"],
)
def test_numeric_methods_and_overrides(method: str, statistic: str) -> None:
    ref, cur = make_frame(3000, 50), make_frame(3000, 51, shift=0.6)
    config = DriftConfig(overrides={"x0": FeatureOverride(method=method)})
    f = data_drift_exact(ref, cur, TYPES_ALL, config).feature("x0")
    assert f.method == method and f.drifted
    expected = getattr(f, statistic)
    if method == "wasserstein":
        expected /= ref["x0"].std(ddof=1)
    assert _close(f.statistic, expected, 1e-9)
    assert data_drift_exact(ref, cur, TYPES_ALL, config).feature("x1").method == "ks"


@pytest.mark.parametrize("method", ["chi2", "psi", "jensenshannon"])
def test_categorical_methods_and_unseen_categories(method: str) -> None:
    ref = pd.DataFrame({"c": ["A"] * 500 + ["B"] * 300 + [None] * 20})
    cur = pd.DataFrame({"c": ["A"] * 200 + ["B"] * 300 + ["Z"] * 250 + ["Y"] * 5 + [1.0] * 3})
    config = DriftConfig(categorical_method=method)
    f = data_drift_exact(ref, cur, {"c": "categorical"}, config).feature("c")
    assert f.method == method and f.drifted
    assert f.unseen_count == 258 and f.unseen_examples == ("Z", "Y", "1")
    assert _close(f.missing_share_reference, 20 / 820) and f.missing_share_current == 0.0


def test_categories_are_normalised_like_training() -> None:
    ref = pd.DataFrame({"c": ["1", "2", "2", "3"] * 100})
    cur = pd.DataFrame({"c": [1.0, 2.0, 2.0, 3.0] * 100})  # the same categories, as numbers
    f = data_drift_exact(ref, cur, {"c": "categorical"}).feature("c")
    assert f.unseen_count == 0 and _close(f.statistic, 0.0) and f.psi == 0.0


@pytest.mark.parametrize(
    "keys",
    [
        [1, 2, np.int64(3), 2.0, 2.5, "2", " 2 ", "02", "1e3", "1_000", "x", " y ", ""],
        [True, False, "inf", "NaN", "٣", "A1", "-0", -0.0, np.float32(4.0), "Ä"],
    ],
    ids=["numbers-and-text", "edge-cases"],
)
def test_canonical_categories_match_training_normalisation(keys: list[object]) -> None:
    expected = normalise_categorical(pd.Series(keys, dtype=object)).tolist()
    assert st.canonical_categories(keys) == expected


# --------------------------------------------------------------------------- dataset level


def test_score_share_weights_and_level() -> None:
    ref, cur = make_frame(3000, 60), make_frame(3000, 61, shift=1.0)
    result = data_drift_exact(ref, cur, TYPES_ALL)
    terms = [min(1.0, f.psi / 0.25) for f in result.features]
    assert _close(result.drift_score, sum(terms) / len(terms))
    assert result.drifted_features == ["x0"] and _close(result.drifted_share, 0.2)
    assert result.level_by_share == "warning" and result.level_by_score == "ok"
    # x0 moved by one standard deviation: critical on its own, so the dataset is too.
    assert result.feature("x0").level == "critical" and result.level_by_features == "critical"
    assert result.level == "critical"
    weighted = data_drift_exact(ref, cur, TYPES_ALL, DriftConfig(weights={"x0": 3.0, "x1": 1.0}))
    assert _close(weighted.drifted_share, 0.75)  # features without a weight count 0
    assert weighted.level == "critical"
    x0 = next(t for t, f in zip(terms, result.features, strict=True) if f.feature == "x0")
    assert _close(weighted.drift_score, (3.0 * x0 + terms[1]) / 4.0)
    assert json.loads(json.dumps(result.to_dict(), allow_nan=False))["level"] == "critical"
    ignored = data_drift_exact(ref, cur, TYPES_ALL, DriftConfig(weights={"x0": 0.0, "x1": 1.0}))
    assert ignored.level_by_features == "ok" and ignored.level == "ok"  # weight 0: not weighed


def test_a_critical_feature_keeps_the_dataset_from_reading_ok() -> None:
    """Two features of 23 critical: the share (2/23) and the score rules say ok, the
    summary may not (issue 15: a dataset level of OK with critical features)."""
    rng = np.random.default_rng(5)
    names = [f"f{i}" for i in range(23)]
    ref = pd.DataFrame({n: rng.normal(size=4000) for n in names})
    cur = pd.DataFrame({n: rng.normal(size=4000) for n in names})
    cur["f0"] += 1.5
    cur["f1"] += 0.8
    result = data_drift_exact(ref, cur, dict.fromkeys(names, "numeric"))
    assert [f.feature for f in result.features if f.level == "critical"] == ["f0", "f1"]
    assert result.level_by_share == "ok" and result.level_by_score == "ok"
    assert result.level == "critical"


def test_one_verdict_per_feature_names_its_test_and_threshold() -> None:
    """A small window: PSI far above 0.25 by chance, the KS test not significant. The
    feature is ok (the PSI has no notion of sample size), and the sentence says why."""
    ref = pd.DataFrame({"x": np.linspace(0.0, 1.0, 2000)})
    cur = pd.DataFrame({"x": [0.05, 0.5, 0.93]})
    f = data_drift_exact(ref, cur, {"x": "numeric"}).feature("x")
    assert f.psi > 0.25 and f.p_value_adjusted is not None and f.p_value_adjusted >= 0.05
    assert f.level == "ok" and not f.drifted
    assert f.verdict.startswith("ok: adjusted p ") and "PSI not judged" in f.verdict
    shifted = data_drift_exact(
        ref, pd.DataFrame({"x": np.linspace(0.6, 1.6, 2000)}), {"x": "numeric"}
    )
    g = shifted.feature("x")
    assert g.drifted and g.level == "critical"
    assert g.verdict.startswith("critical: adjusted p ") and ">= floor 0.02" in g.verdict
    assert f"PSI {g.psi:.3f} >= 0.25" in g.verdict
    assert "severity" not in g.to_dict()


@pytest.mark.parametrize(
    ("score", "share", "level"),
    [
        (0.49, 0.19, "ok"),
        (0.5, 0.0, "warning"),
        (0.7, 0.0, "warning"),
        (0.71, 0.0, "critical"),
        (0.0, 0.2, "warning"),
        (0.0, 0.3, "warning"),
        (0.0, 0.31, "critical"),
        (0.6, 0.31, "critical"),
    ],
)
def test_dataset_level_bands(score: float, share: float, level: str) -> None:
    config = DriftConfig()
    by_score = level_of(score, config.warning_score, config.critical_score)
    by_share = level_of(share, config.warning_share, config.critical_share)
    assert worst(by_score, by_share) == level


# --------------------------------------------------------------------------- binned mode


def test_count_numeric_uses_right_closed_bins() -> None:
    values = np.array([-5.0, 0.0, 0.5, 1.0, 1.0, 2.5, 3.0, 9.0, np.nan, np.inf])
    grid = np.array([0.0, 1.0, 3.0])
    expected = pd.cut(values[np.isfinite(values)], [-np.inf, *grid, np.inf], right=True)
    counts = pd.Series(expected).value_counts(sort=False).to_numpy()
    held = count_numeric(values, grid)
    np.testing.assert_array_equal(held.counts, counts)
    assert held.missing == 2 and held.sums.tolist() == [-5.0, 2.5, 5.5, 9.0]


def test_accumulator_chunks_equal_one_pass_and_memory_is_bounded() -> None:
    ref, cur = make_frame(5000, 70), make_frame(40_000, 71, shift=0.2)
    profile = profile_of(ref)
    whole = BinnedAccumulator(profile)
    whole.update(cur)
    chunked = BinnedAccumulator(profile)
    sizes = []
    for chunk in np.array_split(np.arange(len(cur)), 16):
        chunked.update(cur.iloc[chunk])
        sizes.append(
            {
                k: v.counts.size if isinstance(v, NumericCounts) else len(v.counts)
                for k, v in chunked.counts().items()
            }
        )
    assert all(s == sizes[0] for s in sizes)  # state does not grow with rows
    assert chunked.n_rows == len(cur)
    for name, held in whole.counts().items():
        other = chunked.counts()[name]
        assert held.missing == other.missing
        if isinstance(held, NumericCounts) and isinstance(other, NumericCounts):
            np.testing.assert_array_equal(held.counts, other.counts)
            np.testing.assert_allclose(held.sums, other.sums, rtol=1e-12)
            assert (
                NumericCounts.from_dict(json.loads(json.dumps(held.to_dict()))).counts.tolist()
                == held.counts.tolist()
            )
        else:
            assert held == other and CategoricalCounts.from_dict(held.to_dict()) == held
    a, b = chunked.result(), whole.result()
    assert (a.drifted_features, a.level) == (b.drifted_features, b.level)
    for x, y in zip(a.features, b.features, strict=True):
        assert (x.p_value, x.psi, x.ks_statistic) == (y.p_value, y.psi, y.ks_statistic)
        assert x.wasserstein == y.wasserstein or _close(x.wasserstein, y.wasserstein or 0.0)


def test_binned_mode_agrees_with_exact_mode() -> None:
    ref, cur = make_frame(20_000, 80), make_frame(20_000, 81, shift=0.3)
    cur["amount"] *= 1.1
    exact = data_drift_exact(ref, cur, TYPES_ALL, PLAIN)
    binned = drift_from_profile(profile_of(ref), cur, PLAIN)
    assert binned.mode == "binned" and binned.n_current == len(cur)
    for e in exact.features:
        b = binned.feature(e.feature)
        assert _close(b.psi, e.psi)  # identical frozen bins
        assert (b.n_reference, b.n_current) == (e.n_reference, e.n_current)
        if e.type == "categorical":
            assert _close(b.statistic, e.statistic) and _close(b.p_value, e.p_value)  # type: ignore[arg-type]
            continue
        assert b.ks_statistic is not None and e.ks_statistic is not None
        assert abs(b.ks_statistic - e.ks_statistic) <= 0.01, e.feature
        assert b.wasserstein is not None and e.wasserstein is not None
        # The reference CDF is known to about 1/200 per grid point (see reference_cdf).
        slack = 0.1 * e.wasserstein + 0.02 * float(ref[e.feature].std())
        assert abs(b.wasserstein - e.wasserstein) <= slack, e.feature
        assert _close(
            b.p_value, st.ks_pvalue_asymptotic(b.ks_statistic, b.n_reference, b.n_current)
        )
    assert binned.drifted_features == exact.drifted_features
    assert {"x0", "amount"} <= set(exact.drifted_features)


def test_binned_truncated_profile_pools_other_categories() -> None:
    ref = pd.DataFrame({"c": [f"k{i % 60}" for i in range(6000)]})
    profile = profile_of(ref, {"c": "categorical"})
    assert profile["features"]["c"]["other"] > 0
    cur = pd.DataFrame({"c": ["k1"] * 100 + ["new"] * 50})
    f = drift_from_profile(profile, cur).feature("c")
    assert f.unseen_count == 0 and any(b.bin == "(other)" for b in f.bins)


def test_binned_input_errors() -> None:
    profile = profile_of(make_frame(500, 90))
    with pytest.raises(InvalidInputError):
        data_drift_binned(profile, {"nope": CategoricalCounts({})})
    with pytest.raises(InvalidInputError):
        data_drift_binned(profile, {"x0": NumericCounts.empty(3)})
    with pytest.raises(InvalidInputError):
        data_drift_binned(
            profile, {"grade": NumericCounts.empty(numeric_grid(profile["features"]["x0"]).size)}
        )
    with pytest.raises(DataError):
        BinnedAccumulator(profile).update(pd.DataFrame({"x0": [1.0]}))


def test_text_columns_are_parsed_like_training_data() -> None:
    """A CSV read as text (as ``read_table`` does) gives the same result as numbers."""
    ref, cur = make_frame(1500, 92), make_frame(1200, 93, shift=0.3)
    as_text = {
        name: frame.astype({k: "str" for k in TYPES}) for name, frame in (("r", ref), ("c", cur))
    }
    as_text["c"]["amount"] = as_text["c"]["amount"].fillna("")  # empty cells are missing
    assert (as_text["c"]["amount"] == "").sum() > 0
    expected = data_drift_exact(ref, cur, TYPES_ALL).to_dict()
    assert data_drift_exact(as_text["r"], as_text["c"], TYPES_ALL).to_dict() == expected
    with pytest.raises(DataError, match="not numbers"):
        data_drift_exact(ref, as_text["c"].assign(x1="abc"), TYPES_ALL)


def test_exact_input_errors() -> None:
    ref = make_frame(200, 91)
    with pytest.raises(DataError):
        data_drift_exact(ref, ref.drop(columns=["x1"]), TYPES_ALL)
    with pytest.raises(DataError):
        data_drift_exact(ref, ref.assign(x0="text"), TYPES_ALL)
    with pytest.raises(InvalidInputError):
        data_drift_exact(ref, ref, {"x0": "ordinal"})
    with pytest.raises(ConfigError):
        data_drift_exact(
            ref, ref, TYPES_ALL, DriftConfig(overrides={"grade": FeatureOverride(method="ks")})
        )


# --------------------------------------------------------------------------- configuration


def test_config_round_trip_fingerprint_and_validation() -> None:
    config = DriftConfig(
        numeric_method="wasserstein",
        overrides={"x0": FeatureOverride(method="psi", psi_threshold=0.2)},
        weights={"x0": 2.0},
    )
    again = DriftConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.fingerprint() == config.fingerprint()
    assert DriftConfig(alpha=0.01).fingerprint() != DriftConfig().fingerprint()
    assert DriftConfig().rule("x", "numeric").effect_floor == 0.02
    assert config.rule("x0", "numeric").psi_threshold == 0.2
    for bad in (
        {"alpha": 1.5},
        {"numeric_method": "chi2"},
        {"unknown": 1},
        {"psi_warning": 0.3},
        {"weights": {"x": -1.0}},
        {"overrides": {"x": {"methd": "ks"}}},
        {"warning_share": 0.5, "critical_share": 0.4},
        {"ks_effect_floor": -0.1},
        {"overrides": {"x": {"effect_floor": -1}}},
        {"overrides": ["x"]},
        {"alpha": "high"},
    ):
        with pytest.raises(ConfigError):
            DriftConfig.from_dict(bad)


# --------------------------------------------------------------------------- prediction drift


def test_prediction_drift_psi_and_approval_rate() -> None:
    rng = np.random.default_rng(100)
    scores = rng.normal(600, 50, 20_000)
    reference = profile_of(pd.DataFrame({"s": scores}), {"s": "numeric"})["features"]["s"]
    current = rng.normal(630, 50, 5000)
    approval = ApprovalCounts(12_000, 20_000, 3300, 5000)
    result = prediction_drift(reference, current, approval)
    edges = [-np.inf, *reference["edges"], np.inf]
    cur_bins = pd.Series(pd.cut(current, edges, right=True)).value_counts(sort=False).to_numpy()
    assert _close(result.psi, st.psi(np.append(reference["counts"], 0), np.append(cur_bins, 0)))
    assert result.psi_level == "critical"
    table = np.array([[12_000, 8000], [3300, 1700]])
    assert _close(result.p_value, stats.chi2_contingency(table, correction=False)[1])
    assert _close(result.approval_rate_change, 0.06) and result.approval_level == "critical"
    held = count_numeric(current, numeric_grid(reference))
    assert _close(prediction_drift(reference, held).psi, result.psi)
    quiet = prediction_drift(reference, scores[:3000], ApprovalCounts(12_000, 20_000, 1810, 3000))
    assert quiet.level == "ok" and quiet.approval_level == "ok"
    assert (
        PredictionDriftConfig.from_dict(PredictionDriftConfig().to_dict())
        == PredictionDriftConfig()
    )
    json.dumps(result.to_dict(), allow_nan=False)


# --------------------------------------------------------------------------- hysteresis


@pytest.mark.parametrize(
    ("observed", "levels"),
    [
        (["warning", "ok", "warning", "ok"], ["ok", "ok", "warning", "warning"]),
        (
            ["critical", "critical", "ok", "ok", "ok"],
            ["ok", "critical", "critical", "critical", "ok"],
        ),
        (
            ["critical", "critical", "warning", "warning", "warning"],
            ["ok", "critical", "critical", "critical", "warning"],
        ),
        (["critical", "warning", "ok", "ok", "ok"], ["ok", "warning", "warning", "warning", "ok"]),
        (
            ["warning"] * 3 + ["critical", "ok", "critical"],
            ["ok", "warning", "warning", "warning", "warning", "critical"],
        ),
    ],
    ids=[
        "flapping-warning",
        "critical-then-clear",
        "critical-to-warning",
        "raise-warning",
        "escalate",
    ],
)
def test_hysteresis_raises_and_clears_with_n_of_m(observed: list[str], levels: list[str]) -> None:
    state = Hysteresis()
    seen = []
    for level in observed:
        state = state.update(level)  # type: ignore[arg-type]
        seen.append(state.level)
        state = Hysteresis.from_dict(json.loads(json.dumps(state.to_dict())))
    assert seen == levels


def test_hysteresis_validation() -> None:
    with pytest.raises(ConfigError):
        Hysteresis(raise_after=4, raise_window=3)
    with pytest.raises(ConfigError):
        Hysteresis.from_dict({"level": "bad"})
    with pytest.raises(InvalidInputError):
        Hysteresis().update("alarm")  # type: ignore[arg-type]
