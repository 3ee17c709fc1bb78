"""Evaluation metrics for probability-of-default (PD) models.

Conventions: ``y`` holds 1 for a default ("bad") and 0 otherwise; ``pd`` is the predicted
probability of default, so a higher PD is riskier. A *score* (gains table) runs the other
way: higher is safer. Everything here is vectorised numpy / scipy and O(n log n) at worst.

Binning rule used by the gains table, the calibration table and Hosmer-Lemeshow: rows are
put in ascending order of the value with a *stable* sort (rows with equal values keep their
input order) and the row at 0-based position ``r`` goes to bin ``floor(r * k / n)``. The
bins are therefore quantile bins of the ordinal rank: their sizes differ by at most one and
none is empty, however many ties there are (``k`` is lowered to ``n`` when ``n < k``). The
price is that a run of tied values may straddle a bin boundary, so the upper edge of one
bin can equal the lower edge of the next.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2, norm, rankdata

from creditops.errors import InvalidInputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def finite_or_none(value: float) -> float | None:
    """A float for JSON: NaN and infinities become None (JSON has neither)."""
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class AucInterval:
    """AUC with its DeLong standard error and a two-sided normal confidence interval."""

    auc: float
    se: float
    lower: float
    upper: float

    def to_dict(self) -> dict[str, float | None]:
        return {k: finite_or_none(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class AucComparison:
    """Paired DeLong comparison of two AUCs on the same labels; ``difference = a - b``."""

    auc_a: float
    auc_b: float
    difference: float
    se: float
    z: float
    p_value: float

    def to_dict(self) -> dict[str, float | None]:
        return {k: finite_or_none(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ClassificationMetrics:
    """Confusion-matrix metrics with default ("bad", not approved) as the positive class."""

    accuracy: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    tn: int
    fn: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class GainsRow:
    bin: int
    score_min: float
    score_max: float
    count: int
    bads: int
    bad_rate: float
    cumulative_bad_capture: float
    cumulative_count_share: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class CalibrationRow:
    bin: int
    count: int
    mean_pd: float
    observed_default_rate: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class HosmerLemeshow:
    statistic: float
    dof: int
    p_value: float

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "statistic": finite_or_none(self.statistic),
            "dof": self.dof,
            "p_value": finite_or_none(self.p_value),
        }


# --------------------------------------------------------------------------- validation


def _vector(values: npt.ArrayLike, name: str) -> npt.NDArray[np.generic]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidInputError(
            f"{name} must be one-dimensional; got shape {arr.shape}", field=name
        )
    if arr.size == 0:
        raise InvalidInputError(f"{name} must not be empty", field=name)
    return arr


def _labels(values: npt.ArrayLike, name: str = "y") -> npt.NDArray[np.int8]:
    """0/1 (or bool) labels as int8; anything else is rejected."""
    arr = _vector(values, name)
    if arr.dtype == np.bool_:
        return arr.astype(np.int8)
    if arr.dtype.kind not in "iuf":
        raise InvalidInputError(f"{name} must be 0/1 or boolean; got dtype {arr.dtype}", field=name)
    bad = ~((arr == 0) | (arr == 1))
    if bad.any():
        raise InvalidInputError(
            f"{name} must contain only 0 and 1; found {int(bad.sum())} other values "
            f"(e.g. {arr[bad][0]!r})",
            field=name,
        )
    return arr.astype(np.int8)


def _reals(values: npt.ArrayLike, name: str, *, probability: bool) -> FloatArray:
    arr = _vector(values, name)
    if arr.dtype.kind not in "biuf":
        raise InvalidInputError(f"{name} must be numeric; got dtype {arr.dtype}", field=name)
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise InvalidInputError(f"{name} must be finite (no NaN or infinity)", field=name)
    if probability and (out.min() < 0.0 or out.max() > 1.0):
        raise InvalidInputError(f"{name} must be probabilities in [0, 1]", field=name)
    return out


def _same_length(y: npt.NDArray[np.generic], other: npt.NDArray[np.generic], name: str) -> None:
    if len(y) != len(other):
        raise InvalidInputError(
            f"{name} has {len(other)} values but y has {len(y)}; they must have the same length",
            field=name,
        )


def _both_classes(y: npt.NDArray[np.int8]) -> tuple[int, int]:
    n_bad = int(y.sum())
    n_good = len(y) - n_bad
    if n_bad == 0 or n_good == 0:
        raise InvalidInputError(
            "y must contain both classes (defaults and non-defaults) for AUC / KS; "
            f"got {n_bad} defaults and {n_good} non-defaults",
            field="y",
        )
    return n_bad, n_good


def _checked(y: npt.ArrayLike, pd: npt.ArrayLike) -> tuple[npt.NDArray[np.int8], FloatArray]:
    labels = _labels(y)
    probs = _reals(pd, "pd", probability=True)
    _same_length(labels, probs, "pd")
    return labels, probs


# --------------------------------------------------------------------------- ranking metrics


def _delong_components(
    y: npt.NDArray[np.int8], pd: FloatArray
) -> tuple[float, FloatArray, FloatArray]:
    """AUC and DeLong's structural components via midranks (Sun & Xu 2014, Algorithm 1).

    ``v10[i]`` is the share of negatives that positive ``i`` outranks (ties count 1/2) and
    ``v01[j]`` the share of positives that outrank negative ``j``; the AUC is the mean of
    either. Midranks over all rows, positives only and negatives only give both in O(n log n).
    """
    positive = y == 1
    x, z = pd[positive], pd[~positive]
    m, n = len(x), len(z)
    t_all = rankdata(pd)
    v10 = (t_all[positive] - rankdata(x)) / n
    v01 = 1.0 - (t_all[~positive] - rankdata(z)) / m
    auc = float((t_all[positive].sum() - m * (m + 1) / 2.0) / (m * n))
    return auc, v10, v01


def _sample_var(values: FloatArray) -> float:
    """Unbiased variance; NaN when there are fewer than two values (undefined)."""
    return float(np.var(values, ddof=1)) if len(values) > 1 else math.nan


def roc_auc(y: npt.ArrayLike, pd: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U / (m n) with mid-ranks for ties)."""
    labels, probs = _checked(y, pd)
    n_bad, n_good = _both_classes(labels)
    ranks = rankdata(probs)
    return float((ranks[labels == 1].sum() - n_bad * (n_bad + 1) / 2.0) / (n_bad * n_good))


def delong_auc_ci(y: npt.ArrayLike, pd: npt.ArrayLike, alpha: float = 0.05) -> AucInterval:
    """AUC with the DeLong et al. (1988) standard error and a ``1 - alpha`` normal interval.

    The bounds are clipped to [0, 1]. With a single default or a single non-default the
    variance is undefined and ``se``, ``lower`` and ``upper`` are NaN.
    """
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError(f"alpha must be in (0, 1); got {alpha}", field="alpha")
    labels, probs = _checked(y, pd)
    _both_classes(labels)
    auc, v10, v01 = _delong_components(labels, probs)
    se = math.sqrt(_sample_var(v10) / len(v10) + _sample_var(v01) / len(v01))
    if math.isnan(se):
        return AucInterval(auc, se, math.nan, math.nan)
    half = float(norm.ppf(1.0 - alpha / 2.0)) * se
    return AucInterval(auc, se, min(max(auc - half, 0.0), 1.0), min(max(auc + half, 0.0), 1.0))


def delong_test(y: npt.ArrayLike, pd_a: npt.ArrayLike, pd_b: npt.ArrayLike) -> AucComparison:
    """Two-sided DeLong test of ``AUC(pd_a) == AUC(pd_b)`` for two models on the same ``y``.

    The variance of the difference is that of the paired differences of the structural
    components, which equals ``[1, -1] S [1, -1]'`` of DeLong's covariance matrix ``S``.
    When it is zero (e.g. identical or rank-identical predictions) and the AUCs are equal,
    ``z = 0`` and ``p_value = 1``.
    """
    labels = _labels(y)
    a = _reals(pd_a, "pd_a", probability=True)
    b = _reals(pd_b, "pd_b", probability=True)
    _same_length(labels, a, "pd_a")
    _same_length(labels, b, "pd_b")
    _both_classes(labels)
    auc_a, v10_a, v01_a = _delong_components(labels, a)
    auc_b, v10_b, v01_b = _delong_components(labels, b)
    diff = auc_a - auc_b
    var = _sample_var(v10_a - v10_b) / len(v10_a) + _sample_var(v01_a - v01_b) / len(v01_a)
    se = math.sqrt(max(var, 0.0)) if math.isfinite(var) else math.nan
    z = diff / se if se != 0.0 else (0.0 if diff == 0.0 else math.copysign(math.inf, diff))
    p_value = float(2.0 * norm.sf(abs(z))) if not math.isnan(z) else math.nan
    return AucComparison(auc_a, auc_b, diff, se, z, min(p_value, 1.0))


def gini(auc: float) -> float:
    """Gini coefficient (accuracy ratio) ``2 AUC - 1``."""
    return 2.0 * auc - 1.0


def ks_statistic(y: npt.ArrayLike, pd: npt.ArrayLike) -> float:
    """Kolmogorov-Smirnov separation: max over thresholds of |F_bad(t) - F_good(t)|.

    Equal to ``scipy.stats.ks_2samp(pd[y == 1], pd[y == 0]).statistic``.
    """
    labels, probs = _checked(y, pd)
    n_bad, n_good = _both_classes(labels)
    order = np.argsort(probs, kind="stable")
    sorted_pd = probs[order]
    cum_bad = np.cumsum(labels[order], dtype=np.int64)
    cum_good = np.arange(1, len(probs) + 1, dtype=np.int64) - cum_bad
    # The empirical CDFs are only evaluated after the last row of each run of ties.
    last = np.append(sorted_pd[1:] != sorted_pd[:-1], True)
    gap = np.abs(cum_bad[last] / n_bad - cum_good[last] / n_good)
    return float(gap.max())


# --------------------------------------------------------------------------- probability scores


def brier_score(y: npt.ArrayLike, pd: npt.ArrayLike) -> float:
    """Mean squared error of the PD against the 0/1 outcome."""
    labels, probs = _checked(y, pd)
    return float(np.mean((probs - labels) ** 2))


def log_loss(y: npt.ArrayLike, pd: npt.ArrayLike) -> float:
    """Mean negative log-likelihood (natural log).

    PDs are clipped to ``[eps, 1 - eps]`` with ``eps`` the float64 machine epsilon
    (about 2.2e-16) so that a confident wrong prediction gives a large finite loss; this is
    what scikit-learn >= 1.5 does, and it reproduces ``sklearn.metrics.log_loss``.
    """
    labels, probs = _checked(y, pd)
    eps = float(np.finfo(np.float64).eps)
    p_outcome = np.where(labels == 1, probs, 1.0 - probs)
    return float(-np.mean(np.log(np.clip(p_outcome, eps, 1.0 - eps))))


def classification_metrics(y: npt.ArrayLike, predicted_bad: npt.ArrayLike) -> ClassificationMetrics:
    """Accuracy, precision, recall and F1 with default as the positive class.

    ``predicted_bad`` is True for applicants the decision does *not* approve. A ratio whose
    denominator is zero is reported as 0.0 (scikit-learn's ``zero_division=0``).
    """
    labels = _labels(y).astype(bool)
    pred = _labels(predicted_bad, "predicted_bad").astype(bool)
    _same_length(labels, pred, "predicted_bad")
    tp = int(np.count_nonzero(labels & pred))
    fp = int(np.count_nonzero(~labels & pred))
    fn = int(np.count_nonzero(labels & ~pred))
    tn = len(labels) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return ClassificationMetrics((tp + tn) / len(labels), precision, recall, f1, tp, fp, tn, fn)


# --------------------------------------------------------------------------- binned tables


def _rank_bins(values: FloatArray, n_bins: int) -> tuple[IntArray, IntArray, int]:
    """Stable ascending order, bin of each position in that order, and the bin count.

    See the module docstring for the rule: position ``r`` goes to ``floor(r * k / n)``.
    """
    if n_bins < 1:
        raise InvalidInputError(f"n_bins must be at least 1; got {n_bins}", field="n_bins")
    n = len(values)
    k = min(n_bins, n)
    order = np.argsort(values, kind="stable").astype(np.int64)
    position_bin = (np.arange(n, dtype=np.int64) * k) // n
    return order, position_bin, k


def gains_table(y: npt.ArrayLike, score: npt.ArrayLike, n_bins: int = 10) -> list[GainsRow]:
    """Gains table by score quantile; bin 1 holds the lowest (riskiest) scores.

    ``cumulative_bad_capture`` is the share of all defaults in this and the riskier bins
    (0.0 throughout when there are no defaults); ``cumulative_count_share`` the share of rows.
    """
    labels = _labels(y)
    scores = _reals(score, "score", probability=False)
    _same_length(labels, scores, "score")
    order, position_bin, k = _rank_bins(scores, n_bins)
    sorted_scores, sorted_y = scores[order], labels[order]
    counts = np.bincount(position_bin, minlength=k)
    bads = np.bincount(position_bin, weights=sorted_y, minlength=k).astype(np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    total_bads = int(labels.sum())
    capture = np.cumsum(bads) / total_bads if total_bads else np.zeros(k)
    share = ends / len(labels)
    return [
        GainsRow(
            bin=i + 1,
            score_min=float(sorted_scores[starts[i]]),
            score_max=float(sorted_scores[ends[i] - 1]),
            count=int(counts[i]),
            bads=int(bads[i]),
            bad_rate=float(bads[i] / counts[i]),
            cumulative_bad_capture=float(capture[i]),
            cumulative_count_share=float(share[i]),
        )
        for i in range(k)
    ]


def _pd_bins(
    labels: npt.NDArray[np.int8], probs: FloatArray, n_bins: int
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Per PD-quantile bin: row count, sum of PD (expected defaults), observed defaults."""
    order, position_bin, k = _rank_bins(probs, n_bins)
    counts = np.bincount(position_bin, minlength=k).astype(np.int64)
    expected = np.bincount(position_bin, weights=probs[order], minlength=k).astype(np.float64)
    observed = np.bincount(position_bin, weights=labels[order], minlength=k).astype(np.float64)
    return counts, expected, observed


def calibration_table(
    y: npt.ArrayLike, pd: npt.ArrayLike, n_bins: int = 10
) -> list[CalibrationRow]:
    """Mean PD against the observed default rate per PD quantile (bin 1 = lowest PD)."""
    labels, probs = _checked(y, pd)
    counts, expected, observed = _pd_bins(labels, probs, n_bins)
    return [
        CalibrationRow(
            bin=i + 1,
            count=int(counts[i]),
            mean_pd=float(expected[i] / counts[i]),
            observed_default_rate=float(observed[i] / counts[i]),
        )
        for i in range(len(counts))
    ]


def calibration_in_the_large(y: npt.ArrayLike, pd: npt.ArrayLike) -> float:
    """``mean(pd) - mean(y)``: positive means the model over-predicts defaults (conservative),
    negative that it under-predicts them."""
    labels, probs = _checked(y, pd)
    return float(np.mean(probs) - np.mean(labels))


def hosmer_lemeshow(y: npt.ArrayLike, pd: npt.ArrayLike, n_groups: int = 10) -> HosmerLemeshow:
    """Hosmer-Lemeshow goodness-of-fit test over PD-quantile groups.

    ``H = sum_g (O_g - E_g)^2 / (E_g (1 - E_g / n_g))`` with ``O_g`` the observed and ``E_g``
    the expected (sum of PD) defaults of group ``g``, compared with a chi-square on
    ``groups - 2`` degrees of freedom (Hosmer & Lemeshow 1980). A group whose expected
    variance is zero (every PD exactly 0 or 1) adds 0 if ``O_g == E_g`` and infinity otherwise.
    """
    if n_groups < 3:
        raise InvalidInputError(f"n_groups must be at least 3; got {n_groups}", field="n_groups")
    labels, probs = _checked(y, pd)
    if len(labels) < 3:
        raise InvalidInputError("hosmer_lemeshow needs at least 3 rows", field="y")
    counts, expected, observed = _pd_bins(labels, probs, n_groups)
    denominator = expected * (1.0 - expected / counts)
    squared = (observed - expected) ** 2
    safe = denominator > 0
    terms = np.divide(squared, denominator, out=np.zeros_like(squared), where=safe)
    terms[~safe & (squared > 0)] = math.inf
    statistic = float(terms.sum())
    dof = len(counts) - 2
    return HosmerLemeshow(statistic, dof, float(chi2.sf(statistic, dof)))


# --------------------------------------------------------------------------- summary


def evaluate_binary(
    y: npt.ArrayLike, pd: npt.ArrayLike, predicted_bad: npt.ArrayLike
) -> dict[str, float]:
    """The headline metrics of a PD model, as the flat dict the registry and the gate use.

    Values may be NaN when undefined (e.g. the AUC interval with a single default).
    """
    labels, probs = _checked(y, pd)
    interval = delong_auc_ci(labels, probs)
    classes = classification_metrics(labels, predicted_bad)
    hl = hosmer_lemeshow(labels, probs)
    return {
        "auc": interval.auc,
        "auc_lower": interval.lower,
        "auc_upper": interval.upper,
        "gini": gini(interval.auc),
        "ks": ks_statistic(labels, probs),
        "brier": brier_score(labels, probs),
        "log_loss": log_loss(labels, probs),
        "accuracy": classes.accuracy,
        "precision": classes.precision,
        "recall": classes.recall,
        "f1": classes.f1,
        "calibration_in_the_large": calibration_in_the_large(labels, probs),
        "hosmer_lemeshow_stat": hl.statistic,
        "hosmer_lemeshow_p": hl.p_value,
    }
