"""Prediction drift: how the model's output moved against its reference.

**Prediction drift.** PSI of the score over the profile's frozen score bins and the change
of the approval rate with a pooled two-proportion z-test (:func:`prediction_drift`), each
with its own level; the result's level is the worse of the two. The configuration
(:class:`PredictionDriftConfig`) follows the same house pattern as data drift's: small,
serialisable, fingerprinted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from creditops.errors import InvalidInputError
from creditops.monitoring.conditions import Level, level_of, worst
from creditops.monitoring.drift import statistics as st
from creditops.monitoring.drift.binned import numeric_grid
from creditops.monitoring.drift.data import (
    MISSING_BIN,
    BinShare,
    bin_labels,
    bin_shares,
    canonical_sha256,
    from_mapping,
    require,
)
from creditops.monitoring.drift.statistics import NumericCounts, count_numeric


@dataclass(frozen=True)
class PredictionDriftConfig:
    """Score PSI bands and approval-rate change thresholds (absolute rate differences).

    The approval level is raised only when the change is significant (two-proportion
    z-test p < ``alpha``) and at least the threshold, for the same reason as the floors.
    """

    psi_warning: float = 0.1
    psi_critical: float = 0.25
    alpha: float = 0.05
    approval_warning: float = 0.02
    approval_critical: float = 0.05

    def __post_init__(self) -> None:
        require(0.0 < self.psi_warning <= self.psi_critical, "need 0 < psi_warning <= psi_critical")
        require(0.0 < self.alpha < 1.0, f"alpha must be in (0, 1); got {self.alpha}")
        require(
            0.0 <= self.approval_warning <= self.approval_critical <= 1.0,
            "need 0 <= approval_warning <= approval_critical <= 1",
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PredictionDriftConfig:
        return cls(**from_mapping(cls, data, "prediction drift config"))

    def fingerprint(self) -> str:
        return canonical_sha256(self.to_dict())


@dataclass(frozen=True)
class ApprovalCounts:
    """Approved decisions out of all, in the reference (e.g. training scores under the
    policy) and in the current window."""

    reference_approved: int
    reference_total: int
    current_approved: int
    current_total: int


@dataclass(frozen=True)
class PredictionDriftResult:
    psi: float
    psi_level: Level
    bins: tuple[BinShare, ...]
    n_reference: int
    n_current: int
    reference_approval_rate: float | None
    current_approval_rate: float | None
    approval_rate_change: float | None
    z: float | None
    p_value: float | None
    approval_level: Level
    level: Level
    config_fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["bins"] = [asdict(b) for b in self.bins]
        return out


def prediction_drift(
    reference: Mapping[str, Any],
    current: npt.ArrayLike | NumericCounts,
    approval: ApprovalCounts | None = None,
    config: PredictionDriftConfig | None = None,
) -> PredictionDriftResult:
    """Drift of the model's output: score (or PD) PSI and the approval-rate change.

    ``reference`` is a numeric profile (the bundle's ``reference_profile["score"]``);
    ``current`` the window's raw scores or their :class:`NumericCounts` on its grid.
    """
    config = config or PredictionDriftConfig()
    if reference.get("type") != "numeric" or "counts" not in reference:
        raise InvalidInputError("the reference must be a numeric profile", field="reference")
    edges = [float(e) for e in reference.get("edges", ())]
    ref_bins = np.asarray(reference["counts"], dtype=np.int64)
    if isinstance(current, NumericCounts):
        cur_bins = st.regroup(numeric_grid(reference), current.counts, edges)
        cur_missing = current.missing
    else:
        counted = count_numeric(current, np.asarray(edges, dtype=np.float64))
        cur_bins, cur_missing = counted.counts, counted.missing
    ref_vec = np.append(ref_bins, int(reference["missing"]))
    cur_vec = np.append(cur_bins, cur_missing)
    psi = st.psi(ref_vec, cur_vec)
    psi_level = level_of(psi, config.psi_warning, config.psi_critical, critical_inclusive=True)
    rates: tuple[float | None, ...] = (None, None, None, None, None)
    approval_level: Level = "ok"
    if approval is not None:
        a = approval
        z, p = st.two_proportion_z(
            a.reference_approved, a.reference_total, a.current_approved, a.current_total
        )
        ref_rate, cur_rate = (
            a.reference_approved / a.reference_total,
            a.current_approved / a.current_total,
        )
        rates = (ref_rate, cur_rate, cur_rate - ref_rate, z, p)
        if p < config.alpha:
            approval_level = level_of(
                abs(cur_rate - ref_rate),
                config.approval_warning,
                config.approval_critical,
                critical_inclusive=True,
            )
    return PredictionDriftResult(
        psi=psi,
        psi_level=psi_level,
        bins=bin_shares([*bin_labels(edges), MISSING_BIN], ref_vec, cur_vec),
        n_reference=int(ref_bins.sum()),
        n_current=int(cur_bins.sum()),
        reference_approval_rate=rates[0],
        current_approval_rate=rates[1],
        approval_rate_change=rates[2],
        z=rates[3],
        p_value=rates[4],
        approval_level=approval_level,
        level=worst(psi_level, approval_level),
        config_fingerprint=config.fingerprint(),
    )
