"""The reference profile: a compact summary of the training data stored in the bundle.

Monitoring compares production windows with it. PSI bins are frozen here, from the
reference deciles, so later checks never recompute them from combined data. Bin ``i``
holds values in ``(edges[i-1], edges[i]]``; the first bin is open below, the last open above,
and missing values are counted separately.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

N_QUANTILE_BINS = 10
MAX_CATEGORIES = 50
# Percentiles 0..100 of each numeric feature: enough for binned KS and Wasserstein checks.
N_PROFILE_QUANTILES = 101


def decile_edges(values: npt.NDArray[np.float64], n_bins: int = N_QUANTILE_BINS) -> list[float]:
    """Inner bin edges at the reference quantiles (duplicates removed)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    qs = np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1])
    return [float(v) for v in np.unique(qs)]


def bin_counts(values: npt.NDArray[np.float64], edges: list[float]) -> list[int]:
    """Counts per bin for :func:`decile_edges` bins; missing values are not counted."""
    finite = values[~np.isnan(values)]
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), finite, side="left")
    return [int(c) for c in np.bincount(idx, minlength=len(edges) + 1)]


def numeric_profile(values: npt.NDArray[np.float64]) -> dict[str, Any]:
    edges = decile_edges(values)
    finite = values[np.isfinite(values)]
    stats: dict[str, Any] = {
        "type": "numeric",
        "count": int(values.size),
        "missing": int(np.isnan(values).sum()),
        "edges": edges,
        "counts": bin_counts(values, edges),
    }
    if finite.size:
        stats.update(
            mean=float(finite.mean()),
            std=float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
            min=float(finite.min()),
            max=float(finite.max()),
            quantiles=[
                float(v) for v in np.quantile(finite, np.linspace(0, 1, N_PROFILE_QUANTILES))
            ],
        )
    return stats


def categorical_profile(values: pd.Series) -> dict[str, Any]:
    counts = values.dropna().astype(str).value_counts()
    counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    top = counts.head(MAX_CATEGORIES)
    return {
        "type": "categorical",
        "count": len(values),
        "missing": int(values.isna().sum()),
        "categories": {str(k): int(v) for k, v in top.items()},
        "other": int(counts.iloc[MAX_CATEGORIES:].sum()),
    }


def build_reference_profile(
    frame: pd.DataFrame,
    feature_types: Mapping[str, str],
    pd_values: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float64],
) -> dict[str, Any]:
    """Profile every spec feature (model inputs and excluded ones) plus PD and score."""
    features: dict[str, Any] = {}
    for name, kind in feature_types.items():
        if kind == "categorical":
            features[name] = categorical_profile(frame[name])
        else:
            features[name] = numeric_profile(frame[name].to_numpy(dtype=np.float64))
    return {
        "n_rows": len(frame),
        "features": features,
        "pd": numeric_profile(np.asarray(pd_values, dtype=np.float64)),
        "score": numeric_profile(np.asarray(scores, dtype=np.float64)),
    }
