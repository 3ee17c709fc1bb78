"""Binned-mode data drift: counts aggregated into the bins of the model's reference profile.

*Binned* mode compares the model's reference profile (built at training time by
:mod:`creditops.features.profile`) with counts aggregated into its bins, by a
:class:`BinnedAccumulator` fed chunk by chunk in bounded memory: the mode for windows of
the decision log, however long. Binned KS and Wasserstein are approximate (see
:func:`~creditops.monitoring.drift.statistist.binned_compare`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from creditops.errors import InvalidInputError
from creditops.monitoring.drift import statistics as st
from creditops.monitoring.drift.data import (
    DriftConfig,
    DriftResult,
    FeatureType,
    Measured,
    NumericBins,
    Rule,
    check_frame,
    finalise,
    measure_categorical,
    measure_numeric,
    numeric_values,
)
from creditops.monitoring.drift.statistics import CategoricalCounts, NumericCounts, count_numeric

BinnedCounts = NumericCounts | CategoricalCounts


def numeric_grid(feature_profile: Mapping[str, Any]) -> st.FloatArray:
    """The binned-mode grid of one numeric feature profile."""
    return st.profile_grid(feature_profile.get("quantiles", ()), feature_profile.get("edges", ()))


def _profile_features(profile: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    features = profile.get("features")
    if not isinstance(features, Mapping):
        raise InvalidInputError("the reference profile has no 'features' section", field="profile")
    return features


class BinnedAccumulator:
    """Aggregates a window chunk by chunk into a profile's bins, in memory independent of
    the number of rows (one small array per numeric feature, one count per category)."""

    def __init__(self, profile: Mapping[str, Any], features: Iterable[str] | None = None) -> None:
        available = _profile_features(profile)
        names = list(available) if features is None else list(features)
        unknown = [n for n in names if n not in available]
        if unknown:
            raise InvalidInputError(
                f"features not in the reference profile: {unknown}", field="features"
            )
        self._profile = profile
        self._grids: dict[str, st.FloatArray] = {}
        self._counts: dict[str, BinnedCounts] = {}
        for name in names:
            if available[name].get("type") == "categorical":
                self._counts[name] = CategoricalCounts({})
            else:
                self._grids[name] = numeric_grid(available[name])
                self._counts[name] = NumericCounts.empty(self._grids[name].size)
        self.n_rows = 0

    def update(self, chunk: pd.DataFrame) -> None:
        types = {n: "numeric" if n in self._grids else "categorical" for n in self._counts}
        check_frame(chunk, types, "current")
        for name, held in self._counts.items():
            if isinstance(held, NumericCounts):
                values = numeric_values(chunk, name, "current")
                self._counts[name] = held.merge(count_numeric(values, self._grids[name]))
            else:
                self._counts[name] = held.merge(CategoricalCounts(*st.category_counts(chunk[name])))
        self.n_rows += len(chunk)

    def counts(self) -> dict[str, BinnedCounts]:
        return dict(self._counts)

    def result(self, config: DriftConfig | None = None) -> DriftResult:
        return data_drift_binned(self._profile, self._counts, config)


def data_drift_binned(
    profile: Mapping[str, Any],
    current_counts: Mapping[str, BinnedCounts],
    config: DriftConfig | None = None,
) -> DriftResult:
    """Binned-mode data drift of aggregated counts against a model's reference profile."""
    config = config or DriftConfig()
    available = _profile_features(profile)
    measured: list[Measured] = []
    n_current = 0
    for name, counts in current_counts.items():
        fp = available.get(name)
        if fp is None:
            raise InvalidInputError(f"feature {name!r} is not in the reference profile", field=name)
        kind: FeatureType = "categorical" if fp.get("type") == "categorical" else "numeric"
        rule = config.rule(name, kind)
        n_current = max(n_current, counts.n + counts.missing)
        if kind == "categorical" and isinstance(counts, CategoricalCounts):
            ref = (fp["categories"], int(fp.get("other", 0)), int(fp["missing"]))
            measured.append(measure_categorical(name, rule, ref, (counts.counts, counts.missing)))
        elif kind == "numeric" and isinstance(counts, NumericCounts):
            measured.append(_binned_numeric(name, rule, fp, counts))
        else:
            raise InvalidInputError(
                f"counts of {name!r} do not match its {kind} profile", field=name
            )
    return finalise("binned", measured, config, int(profile.get("n_rows", 0)), n_current)


def _binned_numeric(
    name: str, rule: Rule, fp: Mapping[str, Any], counts: NumericCounts
) -> Measured:
    grid = numeric_grid(fp)
    if counts.counts.size != grid.size + 1:
        raise InvalidInputError(
            f"counts of {name!r} have {counts.counts.size} bins; its grid needs {grid.size + 1}",
            field=name,
        )
    edges = [float(e) for e in fp.get("edges", ())]
    ref_bins = np.asarray(fp["counts"], dtype=np.int64)
    n_ref = int(ref_bins.sum())
    comparison = None
    if n_ref > 0 and counts.n > 0:
        ref_cdf = st.reference_cdf(grid, fp["quantiles"], edges, ref_bins.tolist())
        comparison = st.binned_compare(grid, ref_cdf, n_ref, counts)
    cur_bins = st.regroup(grid, counts.counts, edges)
    binned = NumericBins(edges, (ref_bins, int(fp["missing"])), (cur_bins, counts.missing))
    return measure_numeric(name, rule, binned, comparison, float(fp.get("std", 0.0)))


def drift_from_profile(
    profile: Mapping[str, Any],
    current: pd.DataFrame,
    config: DriftConfig | None = None,
    features: Iterable[str] | None = None,
) -> DriftResult:
    """Aggregate a frame into the profile's bins, then :func:`data_drift_binned`."""
    accumulator = BinnedAccumulator(profile, features)
    accumulator.update(current)
    return accumulator.result(config)
