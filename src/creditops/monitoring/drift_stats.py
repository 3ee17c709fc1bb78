"""Drift statistics: pure numpy / scipy functions used by :mod:`creditops.monitoring.drift`.

Two representations of one numeric feature are compared here:

* **Exact mode** works on a :class:`Sample`: the sorted values of a raw sample (NaN and
  ±inf removed), stored compactly as the distinct values and the number of observations at
  or below each. Every statistic that depends on the empirical CDFs (Kolmogorov-Smirnov,
  Wasserstein) is computed on the merged distinct values of both samples in O(n) after the
  one sort (or hash count) that builds each :class:`Sample`; nothing is re-sorted per test.
* **Binned mode** works on counts over a fixed grid (the reference profile's percentiles
  and decile edges, see :func:`profile_grid`). Bin ``i`` of a grid ``g`` holds
  ``(g[i-1], g[i]]``; the first bin is open below and the last open above, the convention
  of :mod:`creditops.modeling.profile`. These statistics are approximate (documented per
  function); counts can be accumulated over any number of chunks in bounded memory.

Categorical features are compared on aligned count vectors (chi-square test of
homogeneity, PSI, Jensen-Shannon distance, total variation distance).

Definitions (p and q are the reference and current shares):

* PSI = sum((q - p) * ln(q / p)), a zero share replaced by ``PSI_EPSILON`` (1e-4, the usual
  convention, also Evidently's), so a bin that is empty on one side adds a large finite term.
* Jensen-Shannon distance = sqrt((KL(p || m) + KL(q || m)) / 2), m = (p + q) / 2, natural
  logarithm: ``scipy.spatial.distance.jensenshannon`` (in [0, sqrt(ln 2)]).
* Total variation distance = sum(|p - q|) / 2: the share of the population that would have
  to change category; for two categories it equals the KS statistic.
* Benjamini-Hochberg adjusted p-values (Benjamini & Hochberg 1995), as
  ``scipy.stats.false_discovery_control(method="bh")``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special, stats

from creditops.errors import InvalidInputError
from creditops.features.dataset import normalise_categorical

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PSI_EPSILON = 1e-4
# scipy's ks_2samp uses the exact null distribution up to this sample size ("auto").
EXACT_KS_MAX_N = 10_000
# Above this size a sample is checked for ties first: hashing the distinct values
# (O(n)) beats sorting when most values repeat, which is the rule for credit data.
_HASH_MIN_N = 50_000
_TIE_PROBE = 20_000
_TIE_SHARE = 0.5


@dataclass(frozen=True, eq=False)
class Sample:
    """A sorted numeric sample without missing values.

    ``values`` is sorted ascending. ``below`` has ``len(values) + 1`` entries and
    ``below[i]`` is the number of observations at or below ``values[i - 1]`` (so
    ``below[0] == 0`` and ``below[-1] == n``). ``below is None`` means ``values`` holds every
    observation and they are all distinct (``below[i] == i``), which saves the index array
    for continuous data.
    """

    values: FloatArray
    below: IntArray | None = None

    @property
    def n(self) -> int:
        return int(self.values.size) if self.below is None else int(self.below[-1])

    def count_le(self, points: npt.ArrayLike) -> IntArray:
        """Number of observations ``<= point`` for each point (the unnormalised CDF)."""
        idx = np.searchsorted(self.values, points, side="right")
        if self.below is None:
            return idx.astype(np.int64, copy=False)
        return self.below[idx]

    def weights(self) -> IntArray:
        if self.below is None:
            return np.ones(self.values.size, dtype=np.int64)
        return np.diff(self.below)

    def expand(self) -> FloatArray:
        """Every observation, sorted (materialises ``n`` floats)."""
        if self.below is None:
            return self.values
        return np.repeat(self.values, self.weights())

    def mean_std(self) -> tuple[float, float]:
        """Mean and sample standard deviation (ddof=1; 0 for fewer than two values)."""
        n = self.n
        if n == 0:
            return math.nan, 0.0
        if self.below is None:
            mean = float(self.values.mean())
            return mean, float(self.values.std(ddof=1)) if n > 1 else 0.0
        w = self.weights()
        mean = float(np.dot(w, self.values) / n)
        if n < 2:
            return mean, 0.0
        return mean, math.sqrt(float(np.dot(w, (self.values - mean) ** 2)) / (n - 1))

    @classmethod
    def from_array(cls, values: npt.ArrayLike) -> tuple[Sample, int]:
        """Build a sample from raw values; return it and the number of NaN / ±inf dropped."""
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1:
            raise InvalidInputError(f"values must be one-dimensional; got shape {arr.shape}")
        finite = np.isfinite(arr)
        n_missing = int(arr.size - np.count_nonzero(finite))
        if n_missing:
            arr = arr[finite]
        if arr.size >= _HASH_MIN_N and _mostly_ties(arr):
            return cls._from_hash(arr), n_missing
        ordered = np.sort(arr)
        ties = ordered[1:] == ordered[:-1]
        if not ties.any():
            return cls(ordered), n_missing
        last = np.flatnonzero(~ties)  # index of the last element of each run but the final one
        distinct = np.append(ordered[last], ordered[-1]) if ordered.size else ordered
        below = np.concatenate(([0], last + 1, [ordered.size])).astype(np.int64)
        return cls(distinct, below), n_missing

    @classmethod
    def _from_hash(cls, arr: FloatArray) -> Sample:
        counts = pd.Series(arr, copy=False).value_counts(sort=False)
        keys = counts.index.to_numpy(dtype=np.float64)
        order = np.argsort(keys, kind="stable")
        below = np.concatenate(([0], np.cumsum(counts.to_numpy(dtype=np.int64)[order])))
        return cls(keys[order], below.astype(np.int64))


def _mostly_ties(arr: FloatArray) -> bool:
    probe = arr[:: max(1, arr.size // _TIE_PROBE)]
    return bool(np.unique(probe).size < _TIE_SHARE * probe.size)


# --------------------------------------------------------------------------- exact numeric


@dataclass(frozen=True)
class NumericComparison:
    """KS statistic and p-value and the Wasserstein-1 distance of two samples."""

    ks_statistic: float
    ks_p_value: float
    wasserstein: float


def ks_pvalue_asymptotic(d: float, n1: int, n2: int) -> float:
    """Two-sided p-value of the two-sample KS statistic from its asymptotic distribution.

    The same formula as ``scipy.stats.ks_2samp(method="asymp")``: the one-sample
    distribution ``kstwo`` at the effective size ``round(n1 * n2 / (n1 + n2))``.
    """
    if n1 <= 0 or n2 <= 0:
        return math.nan
    m, n = max(n1, n2), min(n1, n2)
    en = max(1.0, float(np.round(m * n / (m + n))))
    return float(np.clip(stats.kstwo.sf(d, en), 0.0, 1.0))


def compare_samples(reference: Sample, current: Sample) -> NumericComparison:
    """KS (statistic and p-value, as ``scipy.stats.ks_2samp``) and Wasserstein distance.

    The CDFs are evaluated at every distinct value of either sample: their union, merged
    by a stable sort (timsort merges two sorted runs in linear time). The KS p-value is
    scipy's exact one when both samples have at most 10,000 values (what ``ks_2samp``'s
    "auto" mode does; scipy computes it on the expanded samples, cheap at that size) and
    the asymptotic one otherwise. The Wasserstein distance is the integral of
    ``|F_ref - F_cur|`` (``scipy.stats.wasserstein_distance``).
    """
    n1, n2 = reference.n, current.n
    if n1 == 0 or n2 == 0:
        raise InvalidInputError("cannot compare an empty sample")
    grid = np.concatenate((reference.values, current.values))
    grid.sort(kind="stable")
    diff = reference.count_le(grid) / n1 - current.count_le(grid) / n2
    np.abs(diff, out=diff)
    d = float(diff.max())
    wasserstein = float(np.dot(diff[:-1], np.diff(grid)))
    if max(n1, n2) <= EXACT_KS_MAX_N:
        exact = stats.ks_2samp(reference.expand(), current.expand())
        return NumericComparison(float(exact.statistic), float(exact.pvalue), wasserstein)
    return NumericComparison(d, ks_pvalue_asymptotic(d, n1, n2), wasserstein)


# --------------------------------------------------------------------------- counts


def shares(counts: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(counts, dtype=np.float64)
    total = arr.sum()
    return arr / total if total > 0 else np.zeros_like(arr)


def psi(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """Population stability index over aligned bins (see the module docstring)."""
    p, q = shares(reference_counts), shares(current_counts)
    p = np.where(p == 0.0, PSI_EPSILON, p)
    q = np.where(q == 0.0, PSI_EPSILON, q)
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (natural log), as ``scipy.spatial.distance.jensenshannon``."""
    p, q = shares(reference_counts), shares(current_counts)
    m = (p + q) / 2.0
    divergence = float(np.sum(special.rel_entr(p, m)) + np.sum(special.rel_entr(q, m)))
    return math.sqrt(max(divergence, 0.0) / 2.0)


def total_variation(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    return float(np.abs(shares(reference_counts) - shares(current_counts)).sum() / 2.0)


def chi2_homogeneity(
    reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike
) -> tuple[float, float]:
    """Chi-square test that two count vectors come from one distribution.

    Pearson's statistic on the 2 x k contingency table without continuity correction
    (``scipy.stats.chi2_contingency(table, correction=False)``); categories empty on both
    sides are dropped. One category left means nothing can differ: statistic 0, p 1.
    """
    table = np.vstack(
        (np.asarray(reference_counts, np.float64), np.asarray(current_counts, np.float64))
    )
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if table.shape[1] < 2 or (rows == 0).any():
        return 0.0, 1.0
    expected = np.outer(rows, table.sum(axis=0)) / rows.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(stats.chi2.sf(statistic, table.shape[1] - 1))


def benjamini_hochberg(p_values: Sequence[float]) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values (step-up, capped at 1), in input order."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (m / np.arange(1, m + 1))
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m, dtype=np.float64)
    out[order] = np.clip(adjusted, 0.0, 1.0)
    return out


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of ``x2 / n2`` against ``x1 / n1``; (z, two-sided p).

    z > 0 when the second (current) proportion is higher. Its square is the Pearson
    chi-square of the 2 x 2 table, so p equals ``chi2_contingency(correction=False)``'s.
    """
    if n1 <= 0 or n2 <= 0:
        raise InvalidInputError("both groups need at least one observation")
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    if se == 0.0:
        return 0.0, 1.0
    z = (x2 / n2 - x1 / n1) / se
    return z, float(2.0 * stats.norm.sf(abs(z)))


# --------------------------------------------------------------------------- binned numeric


def profile_grid(quantiles: Sequence[float], edges: Sequence[float]) -> FloatArray:
    """The binned-mode grid of a numeric profile: its percentiles and decile edges, sorted.

    The decile edges are added so that the frozen PSI bins are unions of grid bins.
    """
    points = np.asarray([*quantiles, *edges], dtype=np.float64)
    return np.unique(points[np.isfinite(points)])


def aggregate_numeric(values: npt.ArrayLike, grid: npt.ArrayLike) -> IntArray:
    """Counts of the finite values per grid bin (``len(grid) + 1`` bins, right-closed)."""
    arr = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        arr = arr[finite]
    edges = np.asarray(grid, dtype=np.float64)
    idx = np.searchsorted(edges, arr, side="left")
    return np.bincount(idx, minlength=edges.size + 1).astype(np.int64)


def regroup(grid: FloatArray, grid_counts: npt.ArrayLike, edges: Sequence[float]) -> IntArray:
    """Sum grid-bin counts into the coarser bins of ``edges`` (each edge a grid point)."""
    target = np.searchsorted(np.asarray(edges, np.float64), grid, side="left")
    target = np.append(target, len(edges))  # the open top grid bin
    summed = np.bincount(target, weights=np.asarray(grid_counts, np.float64), minlength=len(edges) + 1)
    return np.rint(summed).astype(np.int64)


def reference_cdf(
    grid: FloatArray, quantiles: Sequence[float], edges: Sequence[float], edge_counts: Sequence[int]
) -> FloatArray:
    """Approximate reference CDF at each grid point, from a profile.

    At a decile edge it is exact (the profile's bin counts). Elsewhere it is ``k / 100`` for
    the highest percentile ``k`` at or below the point, which is within about 1/100 of the
    true CDF (exact to 1/n for continuous data; ties can hide up to one percentile step).
    """
    q = np.asarray(quantiles, dtype=np.float64)
    levels = np.searchsorted(q, grid, side="right") - 1
    cdf = np.clip(levels, 0, None) / max(q.size - 1, 1)
    counts = np.asarray(edge_counts, dtype=np.float64)
    if len(edges) and counts.sum() > 0:
        exact = np.cumsum(counts)[:-1] / counts.sum()
        cdf[np.searchsorted(grid, np.asarray(edges, np.float64))] = exact
    return np.clip(np.maximum.accumulate(cdf), 0.0, 1.0)


@dataclass(frozen=True)
class Tails:
    """What binned Wasserstein needs beyond the grid: current values outside the
    reference range, as the count strictly below ``grid[0]`` with their sum and the sum
    of the values above ``grid[-1]`` (their count is the top bin's)."""

    below_count: int
    below_sum: float
    above_sum: float


def binned_compare(
    grid: FloatArray, ref_cdf: FloatArray, n_reference: int, counts: IntArray, tails: Tails
) -> NumericComparison:
    """KS and Wasserstein from grid counts (binned mode; approximate).

    KS: the largest CDF gap at the grid points (and just below ``grid[0]``) with the
    reference CDF of :func:`reference_cdf`, so within about 0.01 of the exact statistic;
    the p-value comes from the asymptotic distribution (:func:`ks_pvalue_asymptotic`) and is
    approximate for the same reason. Wasserstein: both CDFs are taken as constant between
    grid points (exact when the values sit on grid points, an O(bin width) approximation
    otherwise); the parts below ``grid[0]`` and above ``grid[-1]``, where the reference CDF
    is 0 or 1, are exact from ``tails``.
    """
    n_current = int(counts.sum())
    if n_current == 0 or n_reference == 0 or grid.size == 0:
        raise InvalidInputError("cannot compare an empty sample")
    cur_cdf = np.cumsum(counts[:-1]) / n_current
    gap = np.abs(ref_cdf - cur_cdf)
    d = max(float(gap.max()), tails.below_count / n_current)
    inner = float(np.dot(gap[:-1], np.diff(grid)))
    lower = (tails.below_count * grid[0] - tails.below_sum) / n_current
    upper = (tails.above_sum - float(counts[-1]) * grid[-1]) / n_current
    wasserstein = inner + max(float(lower), 0.0) + max(float(upper), 0.0)
    return NumericComparison(d, ks_pvalue_asymptotic(d, n_reference, n_current), wasserstein)


# --------------------------------------------------------------------------- categorical


def category_counts(values: pd.Series) -> tuple[dict[str, int], int]:
    """Counts per category (canonical strings, as in training) and the number missing.

    Values are counted first and only the distinct ones are normalised (``1``, ``1.0`` and
    ``"1"`` are one category, see :func:`creditops.features.dataset.normalise_categorical`).
    """
    raw = values.value_counts(dropna=True, sort=False)
    missing = len(values) - int(raw.sum())
    names = normalise_categorical(pd.Series(raw.index, dtype=object))
    counts: dict[str, int] = {}
    for name, count in zip(names.tolist(), raw.tolist(), strict=True):
        if name is None:
            missing += int(count)
        else:
            counts[str(name)] = counts.get(str(name), 0) + int(count)
    return counts, missing
