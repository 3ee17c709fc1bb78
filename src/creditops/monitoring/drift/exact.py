"""Exact-mode data drift: a current frame against a reference frame, on raw values.

*Exact* mode compares raw samples: a reference frame (or its :func:`prepare_reference`, which
sorts every column once so repeated checks do not) with a current frame; p-values equal
scipy's. A numeric feature's PSI bins are the reference's deciles, computed as the training
profile computes them, so the two modes freeze the same bins. The mode for two files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from creditops.errors import InvalidInputError
from creditops.features.profile import N_QUANTILE_BINS
from creditops.monitoring.drift import statistics as st
from creditops.monitoring.drift.data import (
    DriftConfig,
    DriftResult,
    Measured,
    NumericBins,
    check_frame,
    finalise,
    measure_categorical,
    measure_numeric,
    numeric_values,
)


@dataclass(frozen=True, eq=False)
class ReferenceNumeric:
    sample: st.Sample
    missing: int
    edges: tuple[float, ...]
    bins: st.IntArray
    std: float


@dataclass(frozen=True, eq=False)
class ReferenceCategorical:
    counts: Mapping[str, int]
    missing: int


@dataclass(frozen=True, eq=False)
class PreparedReference:
    """A reference frame summarised once for exact checks: every numeric column sorted
    (as a :class:`~creditops.monitoring.drift.statistics.Sample`) with its frozen decile bins,
    every categorical column counted. Far smaller than the frame for discrete data."""

    features: Mapping[str, ReferenceNumeric | ReferenceCategorical]
    n_rows: int


def _sample_bins(sample: st.Sample, edges: Iterable[float]) -> st.IntArray:
    below = sample.count_le(np.asarray(list(edges), dtype=np.float64))
    return np.diff(np.concatenate(([0], below, [sample.n]))).astype(np.int64)


def _decile_edges(sample: st.Sample) -> tuple[float, ...]:
    """The training profile's :func:`~creditops.features.profile.decile_edges`, from a sample,
    so that both modes freeze the same bins (bitwise; a test compares them)."""
    if sample.n == 0:
        return ()
    levels = np.linspace(0, 1, N_QUANTILE_BINS + 1)[1:-1]
    return tuple(float(v) for v in np.unique(sample.quantiles(levels)))


def prepare_reference(frame: pd.DataFrame, feature_types: Mapping[str, str]) -> PreparedReference:
    """Sort / count every feature of a reference frame once (see :class:`PreparedReference`)."""
    check_frame(frame, feature_types, "reference")
    features: dict[str, ReferenceNumeric | ReferenceCategorical] = {}
    for name, kind in feature_types.items():
        if kind == "categorical":
            counts, missing = st.category_counts(frame[name])
            features[name] = ReferenceCategorical(counts, missing)
            continue
        sample, missing = st.Sample.from_array(numeric_values(frame, name, "reference"))
        edges = _decile_edges(sample)
        features[name] = ReferenceNumeric(
            sample, missing, edges, _sample_bins(sample, edges), sample.mean_std()[1]
        )
    return PreparedReference(features, len(frame))


def data_drift_exact(
    reference: PreparedReference | pd.DataFrame,
    current: pd.DataFrame,
    feature_types: Mapping[str, str],
    config: DriftConfig | None = None,
) -> DriftResult:
    """Exact-mode data drift of ``current`` against a reference frame (or its preparation)."""
    config = config or DriftConfig()
    prepared = (
        reference
        if isinstance(reference, PreparedReference)
        else prepare_reference(reference, feature_types)
    )
    check_frame(current, feature_types, "current")
    measured: list[Measured] = []
    for name, kind in feature_types.items():
        ref = prepared.features.get(name)
        rule = config.rule(name, kind)  # type: ignore[arg-type]
        if isinstance(ref, ReferenceNumeric) and kind == "numeric":
            sample, missing = st.Sample.from_array(numeric_values(current, name, "current"))
            both = sample.n > 0 and ref.sample.n > 0
            comparison = st.compare_samples(ref.sample, sample) if both else None
            bins = _sample_bins(sample, ref.edges)
            measured.append(
                measure_numeric(
                    name,
                    rule,
                    NumericBins(ref.edges, (ref.bins, ref.missing), (bins, missing)),
                    comparison,
                    ref.std,
                )
            )
        elif isinstance(ref, ReferenceCategorical) and kind == "categorical":
            cur = st.category_counts(current[name])
            measured.append(measure_categorical(name, rule, (ref.counts, 0, ref.missing), cur))
        else:
            raise InvalidInputError(
                f"the prepared reference has no {kind} feature {name!r}", field="feature_types"
            )
    return finalise("exact", measured, config, prepared.n_rows, len(current))
