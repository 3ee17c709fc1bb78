"""WoeScorecard: binning checked against optbinning, the logistic fit against scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from optbinning import OptimalBinning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from creditops.errors import InvalidInputError, TrainingError
from creditops.modeling.scorecard import LEAKAGE_IV, MIN_IV, WoeScorecard

pytestmark = pytest.mark.unit

NAMES = ["utilisation", "income", "region", "noise"]
CATEGORICAL = [False, False, True, False]
MONOTONE = {"utilisation": "increasing", "income": "decreasing"}
REGION_RISK = np.array([0.0, 0.2, -0.3, 1.0])  # code 3 is the risky region
TAIWAN = Path(__file__).resolve().parents[2] / "data" / "taiwan_credit_card.csv"


def make_data(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Risk rises with utilisation, falls with income, is highest in region 3; noise is noise.

    Every column except ``noise`` has missing values; region code 4 never occurs.
    """
    rng = np.random.default_rng(seed)
    utilisation = rng.beta(2, 3, n)
    income = rng.lognormal(10, 0.5, n)
    region = rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1]).astype(float)
    noise = rng.integers(0, 3, n).astype(float)  # few levels, so its binned IV stays tiny
    logit = -1.5 + 3.0 * utilisation - 0.8 * (np.log(income) - 10) + REGION_RISK[region.astype(int)]
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    x = np.column_stack([utilisation, income, region, noise])
    for j, share in ((0, 0.05), (1, 0.03), (2, 0.04)):
        x[rng.random(n) < share, j] = np.nan
    return x, y


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_data()


@pytest.fixture(scope="module")
def fitted(data: tuple[np.ndarray, np.ndarray]) -> WoeScorecard:
    x, y = data
    return WoeScorecard(random_state=7).fit(
        x, y, feature_names=NAMES, categorical=CATEGORICAL, monotone=MONOTONE
    )


def reference_binning(x: np.ndarray, y: np.ndarray, j: int, **params: Any) -> OptimalBinning:
    """optbinning fitted directly with the settings the scorecard documents."""
    trend = {"increasing": "ascending", "decreasing": "descending"}.get(
        MONOTONE.get(NAMES[j], ""), "auto" if CATEGORICAL[j] else "auto_asc_desc"
    )
    binning = OptimalBinning(
        name=NAMES[j],
        dtype="categorical" if CATEGORICAL[j] else "numerical",
        monotonic_trend=trend,
        min_bin_size=params.get("min_bin_share", 0.05),
        max_n_bins=params.get("max_n_bins", 10),
        random_state=params.get("random_state", 7),
    )
    return binning.fit(x[:, j], y)


def probe_rows(data: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Training rows plus NaNs, extremes and unseen / invalid category codes."""
    x, _ = data
    extra = np.array(
        [
            [np.nan, np.nan, np.nan, np.nan],
            [-5.0, 1e9, 4.0, 100.0],
            [5.0, -1.0, 99.0, -100.0],
            [0.5, 20000.0, 1.5, 0.0],
            [0.5, 20000.0, -1.0, 0.0],
        ]
    )
    return np.vstack([x, extra])


@pytest.mark.parametrize("j", range(len(NAMES)), ids=NAMES)
def test_woe_matches_optbinning_transform(
    fitted: WoeScorecard, data: tuple[np.ndarray, np.ndarray], j: int
) -> None:
    x, y = data
    binning = reference_binning(x, y, j)
    probe = probe_rows(data)
    column = probe[:, j]
    if CATEGORICAL[j]:
        # optbinning would reject invalid codes; it maps unknown ones to WoE 0 as we do.
        column = np.where(column == np.floor(column), column, 99.0)
        column = np.where(column < 0, 99.0, column)
        probe = probe.copy()
        probe[:, j] = column
    else:  # values exactly on a split point belong to the bin above it
        at_splits = np.zeros((len(binning.splits), len(NAMES)))
        at_splits[:, j] = binning.splits
        probe = np.vstack([probe, at_splits])
        column = probe[:, j]
    expected = binning.transform(column, metric="woe", metric_missing="empirical")
    # optbinning's WoE is ln(non-event share / event share): ours is its negative.
    np.testing.assert_allclose(fitted.woe_transform(probe)[:, j], -expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("j", range(len(NAMES)), ids=NAMES)
def test_iv_and_bins_match_optbinning_table(
    fitted: WoeScorecard, data: tuple[np.ndarray, np.ndarray], j: int
) -> None:
    x, y = data
    table = reference_binning(x, y, j).binning_table
    table.build()
    assert fitted.iv_[NAMES[j]] == pytest.approx(table.iv, rel=1e-12)
    n_regular = len(table.n_event) - 2  # minus the special and missing rows
    row = next(r for r in fitted.iv_table() if r["feature"] == NAMES[j])
    assert row["n_bins"] == n_regular
    assert row["iv"] == fitted.iv_[NAMES[j]]


def test_categorical_unseen_codes_are_neutral_and_nan_gets_missing_bin(
    fitted: WoeScorecard,
) -> None:
    j = NAMES.index("region")
    binning = fitted.binnings_[j]
    probe = np.zeros((5, len(NAMES)))
    probe[:, j] = [4.0, 99.0, -1.0, 2.5, np.nan]
    woe = fitted.woe_transform(probe)[:, j]
    np.testing.assert_array_equal(woe, [0.0, 0.0, 0.0, 0.0, binning.missing_woe])
    assert binning.missing_woe != 0.0  # training had missing regions
    assert np.isfinite(fitted.predict_pd(probe)).all()


def test_numeric_nan_scores_missing_bin(fitted: WoeScorecard) -> None:
    probe = np.full((1, len(NAMES)), np.nan)
    expected = [b.missing_woe for b in fitted.binnings_]
    np.testing.assert_array_equal(fitted.woe_transform(probe)[0], expected)


@pytest.mark.parametrize(
    ("direction", "step_sign"),
    [("increasing", 1.0), ("decreasing", -1.0)],
    ids=["increasing", "decreasing"],
)
def test_declared_monotone_direction_gives_monotone_woe(direction: str, step_sign: float) -> None:
    # A V-shaped risk: either declared direction is feasible with several bins.
    rng = np.random.default_rng(3)
    n = 4000
    u = rng.uniform(-2.0, 2.0, n)
    logit = -1.0 + np.where(u > 0, 1.2 * u, -0.8 * u)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    sc = WoeScorecard().fit(
        u[:, None], y, feature_names=["u"], categorical=[False], monotone={"u": direction}
    )
    woe = sc.binnings_[0].woe
    assert len(woe) >= 2
    assert (step_sign * np.diff(woe) > 0).all()


def test_risk_direction_and_coefficient_signs(fitted: WoeScorecard) -> None:
    assert set(fitted.used_features()) == {"utilisation", "income", "region"}
    assert (fitted.coef_ >= 0).all()
    woe_u = fitted.binnings_[0].woe
    woe_i = fitted.binnings_[1].woe
    assert woe_u[-1] > woe_u[0]  # high utilisation is risky: positive WoE
    assert woe_i[-1] < woe_i[0]  # high income is safe
    low, high = np.array([[0.1, 60000.0, 0.0, 0.0], [0.9, 8000.0, 3.0, 0.0]])
    pd_low, pd_high = fitted.predict_pd(np.vstack([low, high]))
    assert pd_high > pd_low


def test_logistic_matches_sklearn_on_the_woe_matrix(
    fitted: WoeScorecard, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    woe = fitted.woe_transform(x)
    used = fitted.used_
    reference = LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000).fit(woe[:, used], y)
    np.testing.assert_allclose(fitted.coef_[used], reference.coef_[0], rtol=1e-6)
    np.testing.assert_allclose(
        fitted.predict_pd(x), reference.predict_proba(woe[:, used])[:, 1], rtol=1e-6, atol=1e-9
    )


def test_negative_coefficient_feature_is_dropped() -> None:
    # b rises with risk on its own, but given a its effect is negative (logit = 2a - 0.5b).
    rng = np.random.default_rng(0)
    n = 4000
    a = rng.normal(size=n)
    b = a + rng.normal(size=n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(-1.0 + 2.0 * a - 0.5 * b)))).astype(int)
    x = np.column_stack([a, b])
    sc = WoeScorecard().fit(x, y, feature_names=["a", "b"], categorical=[False, False])
    unconstrained = LogisticRegression(max_iter=1000).fit(sc.woe_transform(x), y)
    assert unconstrained.coef_[0][1] < 0  # the scenario really produces a reversed sign
    assert sc.iv_["b"] >= MIN_IV
    assert sc.used_features() == ["a"]
    assert sc.coef_[1] == 0.0 and sc.coef_[0] > 0
    assert {r["feature"]: r["used"] for r in sc.iv_table()} == {"a": True, "b": False}


def test_contributions_sum_to_decision_function(
    fitted: WoeScorecard, data: tuple[np.ndarray, np.ndarray]
) -> None:
    probe = probe_rows(data)
    contrib = fitted.contributions(probe)
    assert contrib.shape == probe.shape
    np.testing.assert_allclose(
        contrib.sum(axis=1) + fitted.base_value_,
        fitted.decision_function(probe),
        rtol=0,
        atol=1e-12,
    )
    np.testing.assert_array_equal(contrib[:, ~fitted.used_], 0.0)
    np.testing.assert_allclose(
        fitted.predict_pd(probe), 1.0 / (1.0 + np.exp(-fitted.decision_function(probe)))
    )


def candidate_rows(sc: WoeScorecard) -> np.ndarray:
    """One row per attainable value of every feature (independently of the scorecard's own
    notion of "attainable"): a value in every bin, NaN, and an unknown category code."""
    columns: list[list[float]] = []
    for b in sc.binnings_:
        if b.categorical:
            columns.append([*b.codes.astype(float), np.nan, 1000.0])
        else:
            columns.append([b.splits[0] - 1.0, *b.splits, np.nan] if len(b.splits) else [0.0])
    width = max(len(c) for c in columns)
    rows = np.empty((width, len(columns)))
    for j, values in enumerate(columns):
        rows[:, j] = np.resize(values, width)
    return rows


def test_reason_contributions_are_points_below_the_best_bin(
    fitted: WoeScorecard, data: tuple[np.ndarray, np.ndarray]
) -> None:
    probe = probe_rows(data)
    reasons = fitted.reason_contributions(probe)
    best = fitted.contributions(candidate_rows(fitted)).min(axis=0)
    np.testing.assert_array_equal(reasons, fitted.contributions(probe) - best)
    assert (reasons >= 0).all()
    np.testing.assert_array_equal(reasons[:, ~fitted.used_], 0.0)
    for j in np.flatnonzero(fitted.used_):
        assert reasons[:, j].min() == 0.0  # someone in training sits in the best bin
        assert reasons[:, j].max() > 0.0


def test_reason_contributions_zero_for_an_applicant_in_every_best_bin(
    fitted: WoeScorecard,
) -> None:
    candidates = candidate_rows(fitted)
    contrib = fitted.contributions(candidates)
    best_row = candidates[np.argmin(contrib, axis=0), np.arange(len(NAMES))]
    np.testing.assert_array_equal(fitted.reason_contributions(best_row[None, :]), 0.0)


def test_holdout_auc_clearly_above_chance() -> None:
    x, y = make_data(n=6000, seed=11)
    sc = WoeScorecard().fit(
        x[:4000], y[:4000], feature_names=NAMES, categorical=CATEGORICAL, monotone=MONOTONE
    )
    auc = roc_auc_score(y[4000:], sc.predict_pd(x[4000:]))
    assert auc > 0.65


def test_taiwan_slice_auc_and_leakage_flag() -> None:
    frame = pd.read_csv(TAIWAN, nrows=3000)
    names = ["limit_bal", "education", "pay_0", "pay_2", "bill_amt1", "pay_amt1"]
    categorical = [name == "education" for name in names]
    x = frame[names].to_numpy(dtype=np.float64)
    y = frame["target"].to_numpy(dtype=np.int64)
    train = ~frame["_is_test"].to_numpy(dtype=bool)
    sc = WoeScorecard().fit(
        x[train], y[train], feature_names=names, categorical=categorical, monotone={}
    )
    assert roc_auc_score(y[~train], sc.predict_pd(x[~train])) > 0.7
    table = sc.iv_table()
    assert [r["iv"] for r in table] == sorted((r["iv"] for r in table), reverse=True)
    assert all(r["leakage_suspect"] == (r["iv"] > LEAKAGE_IV) for r in table)
    assert table[0]["feature"] == "pay_0"  # the recent repayment status dominates


def test_iv_table_flags_weak_and_leaky_features(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    leak = y + np.random.default_rng(5).normal(0.0, 0.3, len(y))
    sc = WoeScorecard().fit(
        np.column_stack([x, leak]),
        y,
        feature_names=[*NAMES, "leak"],
        categorical=[*CATEGORICAL, False],
    )
    table = sc.iv_table()
    assert table[0]["feature"] == "leak"
    assert set(table[0]) == {
        "feature",
        "iv",
        "n_bins",
        "used",
        "auc",
        "leakage_suspect",
        "leakage_reason",
    }
    by_name = {r["feature"]: r for r in table}
    assert by_name["leak"]["leakage_suspect"] and by_name["leak"]["iv"] > LEAKAGE_IV
    assert by_name["noise"]["iv"] < MIN_IV and not by_name["noise"]["used"]
    assert "noise" in sc.iv_ and "noise" not in sc.used_features()
    assert not by_name["utilisation"]["leakage_suspect"]


def test_json_round_trip_is_bit_for_bit(
    fitted: WoeScorecard, data: tuple[np.ndarray, np.ndarray]
) -> None:
    document = fitted.to_dict()
    restored = WoeScorecard.from_dict(json.loads(json.dumps(document, allow_nan=False)))
    probe = probe_rows(data)
    for method in ("woe_transform", "contributions", "reason_contributions"):
        assert (
            getattr(restored, method)(probe).tobytes() == getattr(fitted, method)(probe).tobytes()
        )
    assert restored.predict_pd(probe).tobytes() == fitted.predict_pd(probe).tobytes()
    assert restored.base_value_ == fitted.base_value_
    assert restored.iv_table() == fitted.iv_table()
    assert restored.to_dict() == document


def test_fitting_twice_is_deterministic(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    kwargs: dict[str, Any] = {
        "feature_names": NAMES,
        "categorical": CATEGORICAL,
        "monotone": MONOTONE,
    }
    first = WoeScorecard(random_state=1).fit(x, y, **kwargs).to_dict()
    second = WoeScorecard(random_state=1).fit(x.copy(), y.copy(), **kwargs).to_dict()
    assert json.dumps(first) == json.dumps(second)


def test_hyperparameters_are_honoured(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    sc = WoeScorecard(max_n_bins=3, min_bin_share=0.2).fit(
        x, y, feature_names=NAMES, categorical=CATEGORICAL, monotone=MONOTONE
    )
    assert all(b.n_bins <= 3 for b in sc.binnings_)
    j = NAMES.index("utilisation")
    table = reference_binning(x, y, j, max_n_bins=3, min_bin_share=0.2, random_state=0)
    assert table.splits.tolist() == sc.binnings_[j].splits.tolist()
    shrunk = WoeScorecard(C=1e-4).fit(x, y, feature_names=NAMES, categorical=CATEGORICAL)
    assert shrunk.coef_.max() < 0.5 * sc.coef_.max()


def test_no_informative_feature_gives_intercept_only_model() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 3, (2000, 2)).astype(float)
    x[:, 1] = np.nan  # a column never observed
    y = (rng.random(2000) < 0.2).astype(int)
    sc = WoeScorecard().fit(x, y, feature_names=["n", "empty"], categorical=[False, True])
    assert sc.used_features() == []
    rate = y.mean()
    np.testing.assert_allclose(sc.predict_pd(x), rate, rtol=1e-12)
    assert sc.iv_["empty"] == 0.0
    np.testing.assert_array_equal(sc.woe_transform(np.array([[0.0, 3.0]]))[0, 1], 0.0)


def _fit(x: Any, y: Any, **kwargs: Any) -> WoeScorecard:
    options: dict[str, Any] = {"feature_names": ["a", "b"], "categorical": [False, True]}
    options.update(kwargs)
    return WoeScorecard().fit(x, y, **options)


def _broken_document() -> dict[str, Any]:
    document = _fit(GOOD_X, GOOD_Y).to_dict()
    document["features"][0]["woe"].append(0.0)  # one WoE more than there are bins
    return document


GOOD_X = np.column_stack([np.linspace(0, 1, 40), np.tile([0.0, 1.0], 20)])
GOOD_Y = np.tile([0, 1, 1, 0], 10)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: _fit(GOOD_X[:, 0], GOOD_Y), InvalidInputError),
        (lambda: _fit(GOOD_X, GOOD_Y[:-1]), InvalidInputError),
        (lambda: _fit(GOOD_X, GOOD_Y * 2), InvalidInputError),
        (lambda: _fit(GOOD_X, np.where(GOOD_Y == 1, "bad", "good")), InvalidInputError),
        (lambda: _fit(GOOD_X, np.zeros(40, dtype=int)), TrainingError),
        (lambda: _fit(GOOD_X, GOOD_Y, feature_names=["a"]), InvalidInputError),
        (lambda: _fit(GOOD_X, GOOD_Y, feature_names=["a", "a"]), InvalidInputError),
        (lambda: _fit(GOOD_X, GOOD_Y, categorical=[False]), InvalidInputError),
        (lambda: _fit(np.add(GOOD_X, [0.0, 0.5]), GOOD_Y), InvalidInputError),
        (lambda: _fit(np.subtract(GOOD_X, [0.0, 1.0]), GOOD_Y), InvalidInputError),
        (lambda: _fit(np.where(GOOD_X == 0.0, np.inf, GOOD_X), GOOD_Y), InvalidInputError),
        (lambda: _fit(GOOD_X, GOOD_Y, monotone={"zz": "increasing"}), InvalidInputError),
        (lambda: _fit(GOOD_X, GOOD_Y, monotone={"a": "up"}), InvalidInputError),
        (lambda: _fit(GOOD_X, GOOD_Y, monotone={"b": "increasing"}), InvalidInputError),
        (
            lambda: WoeScorecard(min_bin_share=0.0).fit(
                GOOD_X, GOOD_Y, feature_names=["a", "b"], categorical=[False, True]
            ),
            InvalidInputError,
        ),
        (
            lambda: WoeScorecard(C=-1.0).fit(
                GOOD_X, GOOD_Y, feature_names=["a", "b"], categorical=[False, True]
            ),
            InvalidInputError,
        ),
        (lambda: _fit(GOOD_X, GOOD_Y).predict_pd(GOOD_X[:, :1]), InvalidInputError),
        (lambda: _fit(GOOD_X, GOOD_Y).contributions(GOOD_X[0]), InvalidInputError),
        (lambda: WoeScorecard().predict_pd(GOOD_X), InvalidInputError),
        (lambda: WoeScorecard.from_dict({"format": "other"}), InvalidInputError),
        (lambda: WoeScorecard.from_dict(_broken_document()), InvalidInputError),
        (
            lambda: WoeScorecard.from_dict({**_fit(GOOD_X, GOOD_Y).to_dict(), "coef": [1.0]}),
            InvalidInputError,
        ),
    ],
    ids=[
        "x-1d",
        "y-length",
        "y-not-binary",
        "y-strings",
        "y-single-class",
        "names-length",
        "names-duplicate",
        "categorical-length",
        "category-non-integer",
        "category-negative",
        "x-infinite",
        "monotone-unknown-feature",
        "monotone-bad-direction",
        "monotone-categorical",
        "min-bin-share",
        "negative-C",
        "predict-wrong-width",
        "predict-1d",
        "not-fitted",
        "from-dict-format",
        "from-dict-bin-count",
        "from-dict-coef-length",
    ],
)
def test_invalid_input_raises_clear_errors(call: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        call()
