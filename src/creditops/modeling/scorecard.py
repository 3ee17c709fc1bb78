"""Logistic scorecard on weight-of-evidence (WoE) binned features: the benchmark model.

Each feature is binned with optbinning's ``OptimalBinning`` (missing values get their own
bin), the fitted binning is copied into a plain numpy representation (split points or a
code -> WoE map), and a scikit-learn ``LogisticRegression`` is fitted on the WoE matrix.
No optbinning object is kept, so scoring is vectorised numpy and the model is plain JSON.

The bins and their WoE come from :mod:`creditops.modeling.woe_binning`, which also states
the sign convention (risk-oriented: a positive WoE is riskier than average, so coefficients
come out positive and a positive contribution pushes towards default) and how values not
seen in training score (NaN: the missing bin; unknown categories: WoE 0, neutral).

Feature selection. Features with information value (IV) below :data:`MIN_IV` are kept in
``iv_`` but left out of the logistic model. If a coefficient comes out negative (a feature
whose effect reverses once correlated features are present, which would make the points
contradict the univariate evidence), the most negative one is dropped and the model is
refitted until every coefficient is non-negative. IV above :data:`LEAKAGE_IV`, or a
single-feature AUC of :data:`NEAR_PERFECT_AUC` or more, is reported as a possible target leak
with its reason (the feature is still used).

Tables. :meth:`WoeScorecard.tables` gives what optbinning users read: per characteristic the
binning table (bins, counts, default rate, WoE, IV) and the points table (points per bin,
base points and the scaling behind them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from creditops.domain.scaling import ScoreScaling
from creditops.errors import InvalidInputError, TrainingError
from creditops.modeling.calibration import Calibrator
from creditops.modeling.woe_binning import (
    WOE_SIGN,
    BinningTable,
    FeatureBinning,
    fit_feature_binning,
)

FloatArray = npt.NDArray[np.float64]

MIN_IV = 0.02
"""Features with a smaller IV are too weak to enter the logistic model."""
LEAKAGE_IV = 0.5
"""Features with a larger IV are flagged as possible target leakage."""
FORMAT = "creditops.woe_scorecard"
FORMAT_VERSION = 1
NEAR_PERFECT_AUC = 0.95
"""A single feature separating defaults this well on its own is most likely a leak."""
_TRENDS = {"increasing": "ascending", "decreasing": "descending"}
_MAX_ITER = 1000
LEAKAGE_CHECKS = (
    "Is the value known when the applicant applies, or recorded after the outcome "
    "(collections, later delinquency, a closed-account flag)?",
    "Is it an identifier, a date or a row number that happens to follow the outcome?",
    "Is it derived from the target (a status code, a default-period field)?",
)
"""What a validator checks for a leakage suspect."""


def single_feature_auc(
    column: FloatArray, y: npt.NDArray[np.int64], *, categorical: bool
) -> float | None:
    """How well one raw feature alone ranks defaults, whichever its direction: the AUC of
    the value (numeric) or of the category's default rate (categorical, in-sample, so an
    identifier-like code scores high), over the rows where it is present; >= 0.5.

    Computed on the raw values because binning hides a perfect separator: optbinning keeps
    it as a single bin, whose IV is 0.
    """
    present = ~np.isnan(column)
    values, labels = column[present], y[present]
    if labels.size == 0 or labels.min() == labels.max():
        return None
    if categorical:
        _, index = np.unique(values, return_inverse=True)
        rate = np.bincount(index, weights=labels) / np.bincount(index)
        values = rate[index]
    auc = float(roc_auc_score(labels, values))
    return max(auc, 1.0 - auc)


def leakage_reason(iv: float, auc: float | None) -> str | None:
    """Why a feature is a leakage suspect (None when it is not one)."""
    auc_text = "" if auc is None else f"; on its own it ranks defaults with AUC {auc:.3f}"
    if auc is not None and auc >= NEAR_PERFECT_AUC:
        return f"near-perfect single-feature AUC ({auc:.3f} >= {NEAR_PERFECT_AUC})"
    if iv > LEAKAGE_IV:
        return f"information value {iv:.3f} above {LEAKAGE_IV} (suspiciously strong){auc_text}"
    return None


@dataclass(frozen=True)
class PointsScale:
    """How the scorecard's log-odds become score points.

    ``points = offset + factor * ln(good:bad odds)`` (the spec's scaling), where the
    log-odds of default are ``slope * margin + intercept``: an affine calibration (Platt,
    or none with slope 1 and intercept 0) keeps the points additive and exact. Isotonic
    calibration is not affine; the points table then gives the uncalibrated scorecard's
    points (``exact`` False).
    """

    scaling: ScoreScaling
    calibration: str = "none"
    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def of(cls, scaling: ScoreScaling, calibrator: Calibrator | None) -> PointsScale:
        if calibrator is None or calibrator.method == "none":
            return cls(scaling)
        if calibrator.method == "platt":
            return cls(scaling, "platt", calibrator.slope, calibrator.intercept)
        return cls(scaling, calibrator.method)

    @property
    def exact(self) -> bool:
        return self.calibration in ("none", "platt")


@dataclass(frozen=True)
class PointsRow:
    """Points of one bin of one used characteristic (``bin`` as in its binning table)."""

    feature: str
    bin: str
    label: str
    woe: float
    coefficient: float
    points: float


@dataclass(frozen=True)
class ScorecardTables:
    """The scorecard as a validator reads it: a binning table per characteristic and the
    points table. ``role`` says whether the scorecard is the model itself or the benchmark
    baseline fitted beside a LightGBM model. A score is ``base_points`` plus one bin's
    points per used characteristic, then clipped to ``[min_score, max_score]``."""

    role: Literal["model", "baseline"]
    binning: tuple[BinningTable, ...]
    points: tuple[PointsRow, ...]
    base_points: float
    intercept: float
    scale: PointsScale

    def to_dict(self) -> dict[str, Any]:
        scaling = self.scale.scaling
        return {
            "role": self.role,
            "woe_sign": WOE_SIGN,
            "scaling": {
                "pdo": scaling.pdo,
                "base_score": scaling.base_score,
                "base_odds": scaling.base_odds,
                "factor": scaling.factor,
                "offset": scaling.offset,
                "min_score": scaling.min_score,
                "max_score": scaling.max_score,
                "calibration": self.scale.calibration,
                "calibration_slope": self.scale.slope,
                "calibration_intercept": self.scale.intercept,
                "points_are_exact": self.scale.exact,
            },
            "intercept": self.intercept,
            "base_points": self.base_points,
            "binning": [t.to_dict() for t in self.binning],
            "points": [asdict(r) for r in self.points],
        }


def _check_matrix(x: object, n_features: int | None = None) -> FloatArray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"X must be a numeric matrix: {exc}") from exc
    if arr.ndim != 2:
        raise InvalidInputError(f"X must be a 2-D matrix, got {arr.ndim} dimension(s)")
    if n_features is not None and arr.shape[1] != n_features:
        raise InvalidInputError(
            f"X has {arr.shape[1]} columns but the scorecard was fitted on {n_features}"
        )
    return arr


def _check_target(y: object, n_rows: int) -> npt.NDArray[np.int64]:
    arr = np.asarray(y)
    if arr.ndim != 1 or len(arr) != n_rows:
        raise InvalidInputError(f"y must be 1-D with {n_rows} values, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
        raise InvalidInputError("y must be binary: 0 (repaid) or 1 (default)", field="y")
    labels = arr.astype(np.int64)
    if labels.min() == labels.max():
        raise TrainingError("y holds a single class; a scorecard needs defaults and non-defaults")
    return labels


def _check_params(min_bin_share: float, max_n_bins: int, c: float) -> None:
    if not 0.0 < min_bin_share <= 0.5:
        raise InvalidInputError(f"min_bin_share must be in (0, 0.5], got {min_bin_share}")
    if max_n_bins < 2:
        raise InvalidInputError(f"max_n_bins must be at least 2, got {max_n_bins}")
    if not c > 0.0:
        raise InvalidInputError(f"C must be positive, got {c}")


def _check_features(
    x: FloatArray,
    feature_names: Sequence[str],
    categorical: Sequence[bool],
    monotone: Mapping[str, str],
) -> None:
    k = x.shape[1]
    if len(feature_names) != k or len(categorical) != k:
        raise InvalidInputError(
            f"X has {k} columns but {len(feature_names)} feature names "
            f"and {len(categorical)} categorical flags were given"
        )
    if len(set(feature_names)) != k:
        raise InvalidInputError("feature names must be unique")
    if np.isinf(x).any():
        raise InvalidInputError("X contains infinite values; use NaN for missing")
    for j, is_cat in enumerate(categorical):
        values = x[:, j][~np.isnan(x[:, j])]
        if is_cat and ((values < 0).any() or (values != np.floor(values)).any()):
            raise InvalidInputError(
                f"categorical feature {feature_names[j]!r} must hold integer codes >= 0",
                field=feature_names[j],
            )
    kinds = dict(zip(feature_names, categorical, strict=True))
    for name, direction in monotone.items():
        if name not in kinds:
            raise InvalidInputError(f"monotone names an unknown feature {name!r}", field=name)
        if direction not in _TRENDS:
            raise InvalidInputError(
                f"monotone direction of {name!r} must be 'increasing' or 'decreasing', "
                f"got {direction!r}",
                field=name,
            )
        if kinds[name]:
            raise InvalidInputError(f"monotone feature {name!r} must be numeric", field=name)


class WoeScorecard:
    """Logistic regression on WoE-binned features, scikit-learn style.

    Learned state: ``feature_names_``, ``binnings_`` (one :class:`FeatureBinning` per
    column), ``iv_`` (feature -> IV), ``used_`` (bool per column), ``coef_`` (per column,
    0 where unused) and ``base_value_`` (the intercept).
    """

    feature_names_: list[str]
    binnings_: list[FeatureBinning]
    iv_: dict[str, float]
    used_: npt.NDArray[np.bool_]
    coef_: FloatArray
    base_value_: float
    single_auc_: dict[str, float | None]

    def __init__(
        self,
        *,
        min_bin_share: float = 0.05,
        max_n_bins: int = 10,
        C: float = 1.0,  # noqa: N803 - scikit-learn's name for the inverse regularisation
        random_state: int = 0,
    ) -> None:
        self.min_bin_share = min_bin_share
        self.max_n_bins = max_n_bins
        self.C = C
        self.random_state = random_state

    # -- fitting ---------------------------------------------------------------------------
    def fit(
        self,
        X: FloatArray,  # noqa: N803 - scikit-learn convention
        y: npt.NDArray[Any],
        *,
        feature_names: Sequence[str],
        categorical: Sequence[bool],
        monotone: Mapping[str, str] | None = None,
    ) -> WoeScorecard:
        """Bin every feature, then fit the logistic regression on the WoE matrix."""
        _check_params(self.min_bin_share, self.max_n_bins, self.C)
        x = _check_matrix(X)
        labels = _check_target(y, x.shape[0])
        directions = dict(monotone or {})
        _check_features(x, feature_names, categorical, directions)
        binnings = []
        for j, (name, is_cat) in enumerate(zip(feature_names, categorical, strict=True)):
            trend = "auto" if is_cat else _TRENDS.get(directions.get(name, ""), "auto_asc_desc")
            binnings.append(
                fit_feature_binning(
                    name,
                    np.ascontiguousarray(x[:, j]),
                    labels,
                    categorical=bool(is_cat),
                    trend=trend,
                    min_bin_share=self.min_bin_share,
                    max_n_bins=self.max_n_bins,
                    random_state=self.random_state,
                )
            )
        self.feature_names_ = list(feature_names)
        self.binnings_ = binnings
        self.iv_ = {b.name: b.iv for b in binnings}
        self.single_auc_ = {
            name: single_feature_auc(x[:, j], labels, categorical=bool(categorical[j]))
            for j, name in enumerate(self.feature_names_)
        }
        woe = self._woe(x)
        self.coef_, self.base_value_ = self._fit_logistic(woe, labels)
        self.used_ = self.coef_ != 0.0
        return self

    def _fit_logistic(self, woe: FloatArray, y: npt.NDArray[np.int64]) -> tuple[FloatArray, float]:
        """Fit on the strong features, dropping the most negative coefficient until none is.

        With no usable feature the model is intercept-only: the training log-odds.
        """
        active = [j for j, b in enumerate(self.binnings_) if b.iv >= MIN_IV]
        coef = np.zeros(woe.shape[1], dtype=np.float64)
        while active:
            model = LogisticRegression(
                C=self.C, solver="lbfgs", max_iter=_MAX_ITER, random_state=self.random_state
            ).fit(woe[:, active], y)
            fitted = np.asarray(model.coef_[0], dtype=np.float64)
            worst = int(np.argmin(fitted))
            if fitted[worst] >= 0.0:
                coef[active] = fitted
                return coef, float(model.intercept_[0])
            del active[worst]
        rate = float(np.mean(y))
        return coef, float(np.log(rate / (1.0 - rate)))

    # -- scoring ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise InvalidInputError("the scorecard is not fitted yet; call fit() first")

    def _woe(self, x: FloatArray) -> FloatArray:
        out = np.empty(x.shape, dtype=np.float64)
        for j, binning in enumerate(self.binnings_):
            out[:, j] = binning.transform(x[:, j])
        return out

    def woe_transform(self, X: FloatArray) -> FloatArray:  # noqa: N803
        """Risk-oriented WoE of every cell, shape (n, k)."""
        self._check_fitted()
        return self._woe(_check_matrix(X, len(self.binnings_)))

    def contributions(self, X: FloatArray) -> FloatArray:  # noqa: N803
        """Per-feature log-odds contributions ``coef * woe`` (0 for unused features)."""
        return self.woe_transform(X) * self.coef_

    def decision_function(self, X: FloatArray) -> FloatArray:  # noqa: N803
        """Log-odds of default; exactly ``contributions(X).sum(1) + base_value_``."""
        result: FloatArray = self.contributions(X).sum(axis=1) + self.base_value_
        return result

    def predict_pd(self, X: FloatArray) -> FloatArray:  # noqa: N803
        """Probability of default (uncalibrated logistic output)."""
        return np.asarray(expit(self.decision_function(X)), dtype=np.float64)

    def min_contributions(self) -> FloatArray:
        """Per feature, the lowest contribution any input can get (its best bin)."""
        self._check_fitted()
        return np.asarray(
            [
                np.min(c * b.attainable_woe())
                for c, b in zip(self.coef_, self.binnings_, strict=True)
            ],
            dtype=np.float64,
        )

    def reason_contributions(self, X: FloatArray) -> FloatArray:  # noqa: N803
        """Points below the reference: contribution minus the feature's best attainable one.

        "Attainable" covers every value scoring can produce for the feature, the missing
        bin included, so the result is >= 0 and exactly 0 in the best bin. These are the
        scorecard points an applicant loses per feature, used for adverse-action reasons.
        """
        # Exact: the minimum is taken over the very products contributions() computes.
        result: FloatArray = self.contributions(X) - self.min_contributions()
        return result

    # -- reporting -------------------------------------------------------------------------
    def used_features(self) -> list[str]:
        self._check_fitted()
        return [n for n, u in zip(self.feature_names_, self.used_, strict=True) if u]

    def iv_table(self) -> list[dict[str, Any]]:
        """One row per feature, strongest first (ties by name). ``leakage_reason`` says why
        a feature is a ``leakage_suspect``: IV above :data:`LEAKAGE_IV`, or a single-feature
        AUC (``auc``: :func:`single_feature_auc` on the training rows) of
        :data:`NEAR_PERFECT_AUC` or more."""
        self._check_fitted()
        rows = []
        for b, used in zip(self.binnings_, self.used_, strict=True):
            auc = self.single_auc_.get(b.name)
            auc = b.table().auc if auc is None else auc
            reason = leakage_reason(b.iv, auc)
            rows.append(
                {
                    "feature": b.name,
                    "iv": b.iv,
                    "n_bins": b.n_bins,
                    "used": bool(used),
                    "auc": auc,
                    "leakage_suspect": reason is not None,
                    "leakage_reason": reason,
                }
            )
        return sorted(rows, key=lambda r: (-r["iv"], r["feature"]))

    def tables(
        self,
        scale: PointsScale,
        role: Literal["model", "baseline"],
        categories: Mapping[str, Sequence[str]] | None = None,
        value_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> ScorecardTables:
        """Binning tables (every characteristic, strongest IV first) and the points table.

        Points of a bin: ``-factor * slope * coef * woe`` (a riskier bin, positive WoE,
        loses points); ``base_points = offset - factor * (slope * intercept + shift)``.
        Their sum is the score the model gives (before clipping) when ``scale.exact``.
        """
        self._check_fitted()
        cats, labels = categories or {}, value_labels or {}
        factor = scale.scaling.factor
        binning: list[BinningTable] = []
        points: list[PointsRow] = []
        for b, coef in zip(self.binnings_, self.coef_, strict=True):
            table = b.table(cats.get(b.name), labels.get(b.name))
            binning.append(table)
            if coef == 0.0:
                continue
            points.extend(
                PointsRow(
                    b.name,
                    row.bin,
                    row.label,
                    row.woe,
                    float(coef),
                    float(-factor * scale.slope * coef * row.woe) + 0.0,
                )
                for row in table.rows
            )
        base = scale.scaling.offset - factor * (scale.slope * self.base_value_ + scale.intercept)
        binning.sort(key=lambda t: (-t.iv, t.feature))
        return ScorecardTables(
            role, tuple(binning), tuple(points), float(base), float(self.base_value_), scale
        )

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state; :meth:`from_dict` rebuilds a model scoring bit for bit alike."""
        self._check_fitted()
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "params": {
                "min_bin_share": float(self.min_bin_share),
                "max_n_bins": int(self.max_n_bins),
                "C": float(self.C),
                "random_state": int(self.random_state),
            },
            "features": [b.to_dict() for b in self.binnings_],
            "coef": [float(c) for c in self.coef_],
            "intercept": float(self.base_value_),
            "single_auc": {k: v for k, v in self.single_auc_.items() if v is not None},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WoeScorecard:
        if d.get("format") != FORMAT or d.get("format_version") != FORMAT_VERSION:
            raise InvalidInputError(
                f"not a {FORMAT} v{FORMAT_VERSION} document: "
                f"{d.get('format')!r} v{d.get('format_version')!r}"
            )
        try:
            model = cls(**d["params"])
            binnings = [FeatureBinning.from_dict(f) for f in d["features"]]
            coef = np.asarray(d["coef"], dtype=np.float64)
            intercept = float(d["intercept"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"malformed scorecard document: {exc!r}") from exc
        if coef.shape != (len(binnings),):
            raise InvalidInputError("malformed scorecard document: one coefficient per feature")
        model.feature_names_ = [b.name for b in binnings]
        model.binnings_ = binnings
        model.iv_ = {b.name: b.iv for b in binnings}
        model.single_auc_ = {str(k): float(v) for k, v in (d.get("single_auc") or {}).items()}
        model.coef_ = coef
        model.used_ = coef != 0.0
        model.base_value_ = intercept
        return model
