"""Data drift and prediction drift of a model's inputs and outputs against its reference.

The house pattern: configuration (:class:`DriftConfig`, :class:`PredictionDriftConfig`:
small, serialisable, fingerprinted) -> calculation (:func:`data_drift_exact`,
:func:`data_drift_binned`, :func:`drift_from_profile`, :func:`prediction_drift`: pure) ->
result (:class:`DriftResult`, :class:`FeatureDrift`, :class:`PredictionDriftResult`,
``to_dict()``) -> condition (levels from the thresholds, and :class:`Hysteresis` across
windows). The statistics live in :mod:`creditops.monitoring.drift_stats`.

**Modes.** *Exact* compares raw samples: a reference frame (or its
:func:`prepare_reference`, which sorts every column once so repeated checks do not) with a
current frame; p-values equal scipy's. *Binned* compares the model's reference profile
(built at training time) with counts aggregated into its bins: :func:`aggregate_numeric`
or a :class:`BinnedAccumulator` fed chunk by chunk in bounded memory. Binned KS and
Wasserstein are approximate (see :func:`~creditops.monitoring.drift_stats.binned_compare`).

**Per feature.** Numeric features get the two-sample KS test, the Wasserstein distance and
the PSI over the reference decile bins (frozen: the profile's ``edges``, or in exact mode the
same :func:`~creditops.modeling.profile.decile_edges` of the reference, never recomputed
from current data); categorical ones the chi-square test of homogeneity, the PSI and the
Jensen-Shannon distance over the reference categories. Missing values are excluded from KS
and Wasserstein but form their own bin (category) for PSI, Jensen-Shannon and chi-square, so
a jump in missingness shows. P-values are Benjamini-Hochberg adjusted across the features of
one check by default (``correction="none"`` turns it off); both are reported.

A feature is **drifted** when, by its method:

* ``ks``: adjusted KS p < alpha and KS statistic D >= ``ks_effect_floor``;
* ``wasserstein``: adjusted KS p < alpha and Wasserstein / reference std >=
  ``wasserstein_effect_floor`` (the raw distance when the reference is constant);
* ``chi2``: adjusted chi-square p < alpha and total variation distance >= ``chi2_effect_floor``;
* ``psi``: PSI >= ``psi_threshold``; ``jensenshannon``: JS distance >= ``js_threshold``.

The floors keep very large windows from alarming on trivial shifts. Defaults (0.02 for D
and the total variation distance, 0.05 for Wasserstein / std) sit at about a 0.05-standard
deviation mean shift of a normal feature, half the 0.1-SD shift that must be detected.
A feature's **severity** comes from its PSI: ``warning`` from ``psi_warning`` (0.1),
``critical`` from ``psi_threshold`` (0.25).

**Dataset.** With weights ``w`` (feature importance, default 1; features without a weight
count 0 when weights are given): ``drifted_share = sum(w * drifted) / sum(w)`` and
``drift_score = sum(w * min(1, psi / psi_threshold)) / sum(w)``, in [0, 1] and increasing in
every feature's PSI: 1 means every feature shifted by at least the critical PSI. The level
is the worse of the score's (``warning`` from ``warning_score`` 0.5, ``critical`` above
``critical_score`` 0.7) and the share's (``warning`` from ``warning_share`` 0.2, ``critical``
above ``critical_share`` 0.3).

**Categories.** Current categories missing from the reference are counted as unseen (rows
and the most frequent examples). A profile keeps only its top categories plus an ``other``
count; when that count is non-zero, current categories outside the list are pooled into
``other`` and cannot be told apart from unseen ones, so they are not counted as unseen.

**Prediction drift.** PSI of the score over the profile's frozen score bins and the change
of the approval rate with a pooled two-proportion z-test (:func:`prediction_drift`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from creditops.errors import ConfigError, DataError, InvalidInputError
from creditops.modeling.profile import decile_edges
from creditops.monitoring import drift_stats as ds
from creditops.monitoring.drift_stats import Hysteresis, Level, level_of, worst

__all__ = [
    "BinShare",
    "BinnedAccumulator",
    "CategoricalCounts",
    "DriftConfig",
    "DriftResult",
    "FeatureDrift",
    "FeatureOverride",
    "Hysteresis",
    "NumericCounts",
    "PredictionDriftConfig",
    "PredictionDriftResult",
    "PreparedReference",
    "aggregate_numeric",
    "data_drift_binned",
    "data_drift_exact",
    "drift_from_profile",
    "prediction_drift",
    "prepare_reference",
]
