"""The statistics of drift checks (pure numpy / scipy): numeric two-sample tests and
distances, the statistics on count vectors, and the count containers of binned mode.

**Numeric features** are compared in one of two representations:

* **Exact mode** works on a :class:`Sample`: the sorted values of a raw sample (NaN and
  ±inf removed), stored compactly as the distinct values and the number of observations at
  or below each. Every statistic that depends on the empirical CDFs (Kolmogorov-Smirnov,
  Wasserstein) comes from one pass over the merged distinct values of both samples, after
  the one sort (or count) that builds each :class:`Sample`; nothing is re-sorted per test.
* **Binned mode** works on counts over a fixed grid (the reference profile's percentiles
  and decile edges, see :func:`profile_grid`) held in :class:`NumericCounts`. Bin ``i`` of
  a grid ``g`` holds ``(g[i-1], g[i]]``; the first bin is open below and the last open
  above, the convention of :mod:`creditops.features.profile`. These statistics are
  approximate (documented per function); counts can be accumulated over any number of
  chunks in bounded memory.

**Count vectors** (categorical features, PSI bins, approval counts); p and q are the
reference and current shares:

* PSI = sum((q - p) * ln(q / p)), a zero share replaced by ``PSI_EPSILON`` (1e-4, the usual
  convention, also Evidently's), so a bin that is empty on one side adds a large finite term.
* Jensen-Shannon distance = sqrt((KL(p || m) + KL(q || m)) / 2), m = (p + q) / 2, natural
  logarithm: ``scipy.spatial.distance.jensenshannon`` (in [0, sqrt(ln 2)]).
* Total variation distance = sum(|p - q|) / 2: the share of the population that would have
  to change category; for two categories it equals the KS statistic.
* Benjamini-Hochberg adjusted p-values (Benjamini & Hochberg 1995), as
  ``scipy.stats.false_discovery_control(method="bh")``.
* The pooled two-proportion z-test (:func:`two_proportion_z`), used for approval rates.

Categorical values are counted as training reads them (:func:`category_counts`) into
:class:`CategoricalCounts`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
# From this size on, a probe of the sample decides whether counting (integers in a modest
# range: np.bincount; few distinct values: hashing) beats sorting; credit data mostly
# holds integers (amounts, days past due, counts) with many ties.
_FAST_MIN_N = 50_000
_PROBE = 20_000
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

    def quantiles(self, levels: npt.ArrayLike) -> FloatArray:
        """``np.quantile(self.expand(), levels)`` (linear method) without expanding.

        numpy's own steps are repeated (virtual index ``(n - 1) * q``, its neighbours, and
        numpy's ``_lerp``), so the result is bitwise the same; a test holds it to that.
        """
        q = np.asarray(levels, dtype=np.float64)
        n = self.n
        virtual = (n - 1) * q
        previous = np.floor(virtual)
        following = previous + 1
        last = virtual >= n - 1
        previous[last] = following[last] = n - 1
        gamma = virtual - previous
        a, b = self._order_statistics(previous), self._order_statistics(following)
        diff = b - a
        out = a + diff * gamma
        np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
        return out

    def _order_statistics(self, positions: FloatArray) -> FloatArray:
        k = positions.astype(np.int64)
        if self.below is None:
            return self.values[k]
        return self.values[np.searchsorted(self.below, k, side="right") - 1]

    @classmethod
    def from_array(cls, values: npt.ArrayLike) -> tuple[Sample, int]:
        """Build a sample from raw values; return it and the number of NaN / ±inf dropped.

        Large samples of integers in a modest range are counted with ``np.bincount`` and
        other large samples with many ties by hashing (both O(n)); the rest are sorted.
        """
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1:
            raise InvalidInputError(f"values must be one-dimensional; got shape {arr.shape}")
        finite = np.isfinite(arr)
        n_missing = int(arr.size - np.count_nonzero(finite))
        if n_missing:
            arr = arr[finite]
        if arr.size >= _FAST_MIN_N:
            probe = arr[:: max(1, arr.size // _PROBE)]
            counted = _from_integers(arr, probe)
            if counted is not None:
                return counted, n_missing
            if np.unique(probe).size < _TIE_SHARE * probe.size:
                return _from_hash(arr), n_missing
        ordered = np.sort(arr)
        ties = ordered[1:] == ordered[:-1]
        if not ties.any():
            return cls(ordered), n_missing
        last = np.flatnonzero(~ties)  # index of the last element of each run but the final one
        distinct = np.append(ordered[last], ordered[-1])
        below = np.concatenate(([0], last + 1, [ordered.size])).astype(np.int64)
        return cls(distinct, below), n_missing


def _from_integers(arr: FloatArray, probe: FloatArray) -> Sample | None:
    if not np.array_equal(probe, np.rint(probe)):
        return None
    low, high = float(arr.min()), float(arr.max())
    if high - low > 2 * arr.size + 1024 or max(abs(low), abs(high)) > 2**52:
        return None
    if not np.array_equal(arr, np.rint(arr)):
        return None
    counts = np.bincount((arr - low).astype(np.int64))
    present = np.flatnonzero(counts)
    below = np.concatenate(([0], np.cumsum(counts[present]))).astype(np.int64)
    return Sample(present.astype(np.float64) + low, below)


def _from_hash(arr: FloatArray) -> Sample:
    counts = pd.Series(arr, copy=False).value_counts(sort=False)
    keys = counts.index.to_numpy(dtype=np.float64)
    order = np.argsort(keys, kind="stable")
    below = np.concatenate(([0], np.cumsum(counts.to_numpy(dtype=np.int64)[order])))
    return Sample(keys[order], below.astype(np.int64))


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


# --------------------------------------------------------------------------- binned numeric


def profile_grid(quantiles: Sequence[float], edges: Sequence[float]) -> FloatArray:
    """The binned-mode grid of a numeric profile: its percentiles and decile edges, sorted.

    The decile edges are added so that the frozen PSI bins are unions of grid bins.
    """
    points = np.asarray([*quantiles, *edges], dtype=np.float64)
    return np.unique(points[np.isfinite(points)])


def regroup(grid: FloatArray, grid_counts: npt.ArrayLike, edges: Sequence[float]) -> IntArray:
    """Sum grid-bin counts into the coarser bins of ``edges`` (each edge a grid point)."""
    target = np.searchsorted(np.asarray(edges, np.float64), grid, side="left")
    target = np.append(target, len(edges))  # the open top grid bin
    summed = np.bincount(
        target, weights=np.asarray(grid_counts, np.float64), minlength=len(edges) + 1
    )
    return np.rint(summed).astype(np.int64)


def reference_cdf(
    grid: FloatArray, quantiles: Sequence[float], edges: Sequence[float], edge_counts: Sequence[int]
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Approximate reference CDF at each grid point, from a profile, and point-mass flags.

    At a decile edge it is exact (the profile's bin counts). Elsewhere, with ``b`` the
    highest percentile at or below the point: ``b / 100`` when the point is a single
    percentile (exact to 1/n for continuous data, within 1/100 otherwise), and
    ``(b + 0.5) / 100`` when several percentiles equal it (a value with probability mass,
    whose CDF lies between ``b / 100`` and ``(b + 1) / 100``), within 1/200. The flags mark
    those points of mass.
    """
    q = np.asarray(quantiles, dtype=np.float64)
    top = max(q.size - 1, 1)
    last = np.searchsorted(q, grid, side="right") - 1
    mass = (last - np.searchsorted(q, grid, side="left")) >= 1
    cdf = (np.clip(last, 0, None) + np.where(mass, 0.5, 0.0)) / top
    counts = np.asarray(edge_counts, dtype=np.float64)
    if len(edges) and counts.sum() > 0:
        exact = np.cumsum(counts)[:-1] / counts.sum()
        cdf[np.searchsorted(grid, np.asarray(edges, np.float64))] = exact
    return np.clip(np.maximum.accumulate(cdf), 0.0, 1.0), mass


@dataclass(frozen=True, eq=False)
class NumericCounts:
    """A numeric window aggregated on a grid (bin ``i`` is ``(grid[i-1], grid[i]]``).

    Per bin the number and the sum of the values: the sums make the binned Wasserstein
    distance exact outside the reference range and close inside it. ``missing`` counts
    NaN and ±inf. Counts of chunks add up (:meth:`merge`).
    """

    counts: IntArray
    sums: FloatArray
    missing: int = 0

    @classmethod
    def empty(cls, grid_size: int) -> NumericCounts:
        return cls(np.zeros(grid_size + 1, np.int64), np.zeros(grid_size + 1, np.float64))

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def merge(self, other: NumericCounts) -> NumericCounts:
        if other.counts.shape != self.counts.shape:
            raise InvalidInputError("cannot merge counts made on different grids")
        return NumericCounts(
            self.counts + other.counts, self.sums + other.sums, self.missing + other.missing
        )

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts.tolist(), "sums": self.sums.tolist(), "missing": self.missing}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericCounts:
        counts = np.asarray(data["counts"], np.int64)
        sums = np.asarray(data["sums"], np.float64)
        if counts.shape != sums.shape or counts.ndim != 1:
            raise InvalidInputError("numeric counts need 'counts' and 'sums' of equal length")
        return cls(counts, sums, int(data.get("missing", 0)))


def count_numeric(values: npt.ArrayLike, grid: FloatArray) -> NumericCounts:
    """Aggregate raw values on a grid (see :class:`NumericCounts`)."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(arr)
    missing = int(arr.size - np.count_nonzero(finite))
    if missing:
        arr = arr[finite]
    idx = np.searchsorted(grid, arr, side="left")
    size = grid.size + 1
    counts = np.bincount(idx, minlength=size).astype(np.int64)
    sums = np.bincount(idx, weights=arr, minlength=size).astype(np.float64)
    return NumericCounts(counts, sums, missing)


def binned_compare(
    grid: FloatArray,
    reference: tuple[FloatArray, npt.NDArray[np.bool_]],
    n_reference: int,
    current: NumericCounts,
) -> NumericComparison:
    """KS and Wasserstein of grid counts against a profile's CDF (binned mode; approximate).

    ``reference`` is :func:`reference_cdf`'s (cdf, point-mass flags). KS: the largest CDF
    gap at the grid points, within about 0.005 - 0.01 of the exact statistic (the reference
    CDF is approximate and the gap is only looked at on the grid); its p-value comes from
    the asymptotic distribution (:func:`ks_pvalue_asymptotic`) and is approximate likewise.
    Wasserstein: ``sum over grid bins of |integral of (F_ref - F_cur)|``. The current
    integral is exact per bin (from the bin's count and sum); for the reference one its mass
    in a bin is placed at the bin's right end when that is a point of mass, else at the
    mean of the current values there (where it would be under no drift), else in the middle.
    Outside the reference range (F_ref is 0 or 1) the distance is exact; inside it is close
    when the bins are narrow (within a few per cent on skewed credit data).
    """
    n = current.n
    if n == 0 or n_reference == 0 or grid.size == 0:
        raise InvalidInputError("cannot compare an empty sample")
    ref_cdf, mass = reference
    counts, sums = current.counts, current.sums
    cur_cdf = np.cumsum(counts[:-1]) / n
    d = float(np.abs(ref_cdf - cur_cdf).max())
    width = np.diff(grid)
    cur_integral = cur_cdf[:-1] * width + (counts[1:-1] * grid[1:] - sums[1:-1]) / n
    # Where the reference mass sits inside a bin is unknown: at the right end when that is
    # a point of mass, else at the current values' mean (right under no drift), else in
    # the middle.
    inner_counts = counts[1:-1]
    position = np.divide(sums[1:-1], inner_counts, out=grid[1:] - width / 2, where=inner_counts > 0)
    position[mass[1:]] = grid[1:][mass[1:]]
    ref_integral = ref_cdf[:-1] * width + np.diff(ref_cdf) * (grid[1:] - position)
    lower = max(float(counts[0] * grid[0] - sums[0]) / n, 0.0)
    upper = max(float(sums[-1] - counts[-1] * grid[-1]) / n, 0.0)
    wasserstein = float(np.abs(ref_integral - cur_integral).sum()) + lower + upper
    return NumericComparison(d, ks_pvalue_asymptotic(d, n_reference, n), wasserstein)


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


def benjamini_hochberg(p_values: npt.ArrayLike) -> FloatArray:
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


# --------------------------------------------------------------------------- categorical


@dataclass(frozen=True)
class CategoricalCounts:
    """A categorical window: counts per canonical category and the number missing."""

    counts: Mapping[str, int]
    missing: int = 0

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: CategoricalCounts) -> CategoricalCounts:
        merged = dict(self.counts)
        for key, value in other.counts.items():
            merged[key] = merged.get(key, 0) + value
        return CategoricalCounts(merged, self.missing + other.missing)

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "missing": self.missing}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalCounts:
        counts = {str(k): int(v) for k, v in data["counts"].items()}
        return cls(counts, int(data.get("missing", 0)))


def category_counts(values: pd.Series) -> tuple[dict[str, int], int]:
    """Counts per category (canonical strings, as in training) and the number missing.

    Values are counted first and only the distinct ones are normalised (``1``, ``1.0`` and
    ``"1"`` are one category, see :func:`creditops.features.dataset.normalise_categorical`).
    """
    raw = values.value_counts(dropna=True, sort=False)
    missing = len(values) - int(raw.sum())
    counts: dict[str, int] = {}
    for name, count in zip(canonical_categories(raw.index.tolist()), raw.tolist(), strict=True):
        if name is None:
            missing += int(count)
        else:
            counts[name] = counts.get(name, 0) + int(count)
    return counts, missing


def canonical_categories(keys: Sequence[object]) -> list[str | None]:
    """``normalise_categorical`` of a few distinct values, without its pandas overhead in
    the common cases: integers, and strings without digits (which can never parse as a
    number, so only stripping applies). Everything else goes through the real function."""
    out: list[str | None] = [None] * len(keys)
    slow: list[int] = []
    for i, key in enumerate(keys):
        if isinstance(key, int | np.integer) and not isinstance(key, bool):
            out[i] = str(int(key))
        elif isinstance(key, str) and not any(ch.isdigit() for ch in key):
            out[i] = key.strip() or None
        else:
            slow.append(i)
    if slow:
        names = normalise_categorical(pd.Series([keys[i] for i in slow], dtype=object))
        for i, name in zip(slow, names.tolist(), strict=True):
            out[i] = None if name is None else str(name)
    return out
