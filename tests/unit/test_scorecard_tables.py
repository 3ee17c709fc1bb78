"""The scorecard's binning and points tables, recomputed independently from the raw data.

Counts come from applying the fitted splits / category groups to the training rows with
numpy; WoE and IV from those counts; points from the scaling formula; the single-feature
AUC from scikit-learn on the WoE-transformed rows.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from creditops.domain.scaling import ScoreScaling
from creditops.modeling.calibration import Calibrator
from creditops.modeling.scorecard import (
    NEAR_PERFECT_AUC,
    PointsScale,
    ScorecardTables,
    WoeScorecard,
    leakage_reason,
)
from creditops.modeling.woe_binning import FeatureBinning
from creditops.reporting.scorecard_files import (
    BASE_POINTS,
    binning_csv,
    points_csv,
    write_scorecard_files,
)
from tests.unit.test_scorecard import CATEGORICAL, MONOTONE, NAMES, make_data

pytestmark = pytest.mark.unit

CATEGORIES = {"region": ["north", "south", "east", "west"]}
LABELS = {"region": {"west": "coastal west"}}
UNCLIPPED = ScoreScaling(min_score=None, max_score=None)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_data()


@pytest.fixture(scope="module")
def fitted(data: tuple[np.ndarray, np.ndarray]) -> WoeScorecard:
    x, y = data
    return WoeScorecard(random_state=7).fit(
        x, y, feature_names=NAMES, categorical=CATEGORICAL, monotone=MONOTONE
    )


@pytest.fixture(scope="module")
def tables(fitted: WoeScorecard) -> ScorecardTables:
    return fitted.tables(PointsScale(UNCLIPPED), "model", CATEGORIES, LABELS)


def raw_bin_index(binning: FeatureBinning, column: np.ndarray) -> np.ndarray:
    """Each row's bin, from the raw values: n_bins for missing (the last table row)."""
    out = np.full(len(column), binning.n_bins, dtype=np.int64)
    present = ~np.isnan(column)
    if binning.categorical:
        assert binning.counts is not None and binning.counts.code_bin is not None
        group = dict(zip(binning.codes.tolist(), binning.counts.code_bin.tolist(), strict=True))
        out[present] = [group[int(v)] for v in column[present]]
    else:
        # bin i holds splits[i-1] <= x < splits[i]
        out[present] = [int(np.sum(binning.splits <= v)) for v in column[present]]
    return out


@pytest.mark.parametrize("j", range(len(NAMES)), ids=NAMES)
def test_binning_table_counts_woe_and_iv_recomputed_from_the_rows(
    data: tuple[np.ndarray, np.ndarray], fitted: WoeScorecard, tables: ScorecardTables, j: int
) -> None:
    x, y = data
    binning = fitted.binnings_[j]
    table = next(t for t in tables.binning if t.feature == NAMES[j])
    index = raw_bin_index(binning, x[:, j])
    k = binning.n_bins + 1
    events = np.bincount(index, weights=y, minlength=k)
    counts = np.bincount(index, minlength=k).astype(float)
    nonevents = counts - events
    assert [r.count for r in table.rows] == counts.astype(int).tolist()
    assert [r.n_event for r in table.rows] == events.astype(int).tolist()
    assert [r.n_nonevent for r in table.rows] == nonevents.astype(int).tolist()
    shares = np.array([r.share for r in table.rows], dtype=float)
    np.testing.assert_allclose(shares, counts / len(y))
    rates = [r.event_rate for r in table.rows]
    for rate, e, n in zip(rates, events, counts, strict=True):
        assert (rate is None) if n == 0 else rate == pytest.approx(e / n)
    # WoE and IV from the counts alone (risk-oriented sign; one-class bins get 0)
    both = (events > 0) & (nonevents > 0)
    share_e, share_ne = events / events.sum(), nonevents / nonevents.sum()
    woe = np.zeros(k)
    woe[both] = np.log(share_e[both] / share_ne[both])
    contribution = np.where(both, (share_e - share_ne) * woe, 0.0)
    np.testing.assert_allclose([r.woe for r in table.rows], woe, atol=1e-12)
    parts = np.array([r.iv_contribution for r in table.rows], dtype=float)
    np.testing.assert_allclose(parts, contribution, atol=1e-12)
    assert table.iv == pytest.approx(contribution.sum())
    assert table.rows[-1].bin == "missing"
    # the table's WoE is what scoring uses
    scored = binning.transform(x[:, j])
    np.testing.assert_allclose(scored, woe[index], atol=1e-12)


def test_single_feature_auc_is_sklearns_on_the_bin_default_rates(
    data: tuple[np.ndarray, np.ndarray], fitted: WoeScorecard, tables: ScorecardTables
) -> None:
    x, y = data
    woe = fitted.woe_transform(x)
    for j, name in enumerate(NAMES):
        binning = fitted.binnings_[j]
        index = raw_bin_index(binning, x[:, j])
        counts = np.bincount(index, minlength=binning.n_bins + 1)
        rate = np.bincount(index, weights=y, minlength=binning.n_bins + 1) / np.maximum(counts, 1)
        table = next(t for t in tables.binning if t.feature == name)
        assert table.auc == pytest.approx(roc_auc_score(y, rate[index]))
        if name == "utilisation":  # no one-class bin: the WoE ranks the rows alike
            assert table.auc == pytest.approx(roc_auc_score(y, woe[:, j]))


def test_binning_tables_strongest_first_and_labels_readable(tables: ScorecardTables) -> None:
    ivs = [t.iv for t in tables.binning]
    assert ivs == sorted(ivs, reverse=True)
    utilisation = next(t for t in tables.binning if t.feature == "utilisation")
    labels = [r.label for r in utilisation.rows]
    assert labels[0].startswith("< ") and labels[-2].startswith(">= ")
    assert all(lab.startswith("[") and lab.endswith(")") for lab in labels[1:-2])
    region = next(t for t in tables.binning if t.feature == "region")
    text = " | ".join(r.label for r in region.rows)
    assert "west (coastal west)" in text and "north" in text and "code " not in text
    # every category appears in exactly one bin
    for category in CATEGORIES["region"]:
        assert sum(category in r.label for r in region.rows[:-1]) == 1


def test_points_sum_to_the_score_without_calibration(
    data: tuple[np.ndarray, np.ndarray], fitted: WoeScorecard, tables: ScorecardTables
) -> None:
    x, _ = data
    rows = x[:300]
    score = tables.base_points + _points_of(fitted, tables, rows)
    factor = 20.0 / math.log(2.0)
    offset = 600.0 - factor * math.log(50.0)
    log_odds_default = fitted.decision_function(rows)
    expected = offset - factor * log_odds_default  # points = offset + factor * ln(good:bad)
    np.testing.assert_allclose(score, expected, atol=1e-8)
    assert tables.scale.exact


def test_points_sum_to_the_score_after_platt_calibration(
    data: tuple[np.ndarray, np.ndarray], fitted: WoeScorecard
) -> None:
    x, _ = data
    platt = Calibrator(method="platt", slope=0.8, intercept=-0.3)
    scale = PointsScale.of(UNCLIPPED, platt)
    tables = fitted.tables(scale, "model")
    rows = x[:300]
    score = tables.base_points + _points_of(fitted, tables, rows)
    expected = UNCLIPPED.points(platt.predict(fitted.decision_function(rows)))
    np.testing.assert_allclose(score, expected, atol=0.006)  # scores may be published rounded


def test_isotonic_points_are_marked_inexact(fitted: WoeScorecard) -> None:
    iso = Calibrator(method="isotonic", x_thresholds=[-3.0, 3.0], y_thresholds=[0.01, 0.9])
    tables = fitted.tables(PointsScale.of(UNCLIPPED, iso), "model")
    assert not tables.scale.exact and tables.scale.slope == 1.0
    assert tables.to_dict()["scaling"]["points_are_exact"] is False


def test_riskier_bins_lose_points_and_unused_features_have_none(
    fitted: WoeScorecard, tables: ScorecardTables
) -> None:
    used = set(fitted.used_features())
    assert {r.feature for r in tables.points} == used
    assert "noise" not in used  # too weak to enter the model
    for row in tables.points:
        assert row.coefficient > 0
        assert np.sign(row.points) == -np.sign(row.woe)


def test_round_trip_keeps_counts_and_old_documents_still_load(fitted: WoeScorecard) -> None:
    document = json.loads(json.dumps(fitted.to_dict()))
    again = WoeScorecard.from_dict(document)
    assert (
        again.tables(PointsScale(UNCLIPPED), "model").to_dict()
        == fitted.tables(PointsScale(UNCLIPPED), "model").to_dict()
    )
    for feature in document["features"]:
        del feature["counts"]  # a bundle written before counts were kept
    old = WoeScorecard.from_dict(document).tables(PointsScale(UNCLIPPED), "baseline")
    assert all(r.count is None and r.iv_contribution is None for t in old.binning for r in t.rows)
    assert old.base_points == pytest.approx(
        fitted.tables(PointsScale(UNCLIPPED), "model").base_points
    )


def test_inconsistent_counts_are_refused(fitted: WoeScorecard) -> None:
    document = fitted.binnings_[0].to_dict()
    document["counts"]["event"] = document["counts"]["event"][:-1]
    with pytest.raises(Exception, match="inconsistent binning"):
        FeatureBinning.from_dict(document)


def test_leakage_reason_names_the_trigger(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    leak = y + np.random.default_rng(3).normal(0.0, 0.05, len(y))  # near-perfect
    sc = WoeScorecard().fit(
        np.column_stack([x, leak]),
        y,
        feature_names=[*NAMES, "leak"],
        categorical=[*CATEGORICAL, False],
    )
    rows = {r["feature"]: r for r in sc.iv_table()}
    assert rows["leak"]["leakage_suspect"]
    assert rows["leak"]["auc"] >= NEAR_PERFECT_AUC
    assert "near-perfect single-feature AUC" in rows["leak"]["leakage_reason"]
    assert rows["utilisation"]["leakage_reason"] is None
    assert leakage_reason(0.7, 0.71) == (
        "information value 0.700 above 0.5 (suspiciously strong); "
        "on its own it ranks defaults with AUC 0.710"
    )
    assert leakage_reason(0.3, 0.7) is None


def test_csv_files_recompute_to_the_same_woe(tmp_path: Path, tables: ScorecardTables) -> None:
    paths = write_scorecard_files(tables, tmp_path / "reports")
    assert sorted(p.name for p in paths) == [
        "scorecard.json",
        "scorecard_binning.csv",
        "scorecard_points.csv",
    ]
    rows = list(csv.DictReader(io.StringIO(binning_csv(tables))))
    for feature in {r["feature"] for r in rows}:
        part = [r for r in rows if r["feature"] == feature]
        events = np.array([float(r["n_event"]) for r in part])
        nonevents = np.array([float(r["n_nonevent"]) for r in part])
        both = (events > 0) & (nonevents > 0)
        woe = np.zeros(len(part))
        woe[both] = np.log((events[both] / events.sum()) / (nonevents[both] / nonevents.sum()))
        np.testing.assert_allclose([float(r["woe"]) for r in part], woe, atol=1e-9)
        iv = np.sum(np.where(both, (events / events.sum() - nonevents / nonevents.sum()) * woe, 0))
        assert float(part[0]["feature_iv"]) == pytest.approx(iv)
    points = list(csv.DictReader(io.StringIO(points_csv(tables))))
    assert points[0]["feature"] == BASE_POINTS
    assert float(points[0]["points"]) == pytest.approx(tables.base_points)
    assert len(points) == 1 + len(tables.points)
    document = json.loads((tmp_path / "reports" / "scorecard.json").read_text())
    assert document["woe_sign"].startswith("WoE = ln(share of defaults")
    assert document["scaling"]["pdo"] == 20.0 and document["base_points"] == tables.base_points
    again = write_scorecard_files(tables, tmp_path / "again")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]


def _points_of(fitted: WoeScorecard, tables: ScorecardTables, rows: np.ndarray) -> np.ndarray:
    """Each row's summed bin points, looked up by the bin the raw value falls in."""
    total = np.zeros(len(rows))
    for j, binning in enumerate(fitted.binnings_):
        by_bin = {r.bin: r.points for r in tables.points if r.feature == binning.name}
        if not by_bin:
            continue
        index = raw_bin_index(binning, rows[:, j])
        keys = [("missing" if i == binning.n_bins else str(i)) for i in index]
        total += np.array([by_bin[key] for key in keys])
    return total
