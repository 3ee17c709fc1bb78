"""Drift statistics on count vectors used by the ``creditops.monitoring.drift*`` modules
(pure numpy / scipy), the counting of categorical features and their count container of
binned mode (:class:`CategoricalCounts`).

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

Elsewhere: the numeric two-sample statistics (Kolmogorov-Smirnov, Wasserstein, binned mode's
grid and :class:`~creditops.monitoring.drift_stats.NumericCounts`) in
:mod:`creditops.monitoring.drift_stats`; the levels and their
:class:`~creditops.monitoring.drift_levels.Hysteresis` in
:mod:`creditops.monitoring.drift_levels`.
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
from creditops.monitoring.drift_stats import FloatArray

PSI_EPSILON = 1e-4


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
