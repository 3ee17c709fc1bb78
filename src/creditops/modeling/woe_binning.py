"""Weight-of-evidence (WoE) binning of one feature, for :mod:`creditops.modeling.scorecard`.

:func:`fit_feature_binning` bins a feature with optbinning's ``OptimalBinning`` (missing
values get their own bin) and copies the result into a plain numpy representation,
:class:`FeatureBinning` (split points or a code -> WoE map), so no optbinning object is kept
and the scorecard is plain JSON. :func:`woe_and_iv` computes the WoE of each bin and the
feature's information value.

Sign convention. optbinning defines ``WoE = ln(share of non-events / share of events)``,
so *high* WoE means *low* risk and a logistic regression on it gets negative coefficients.
This module uses the opposite, risk-oriented sign, ``WoE = ln(share of events / share of
non-events)`` (events are defaults), so that a positive WoE means riskier than average,
the coefficients come out positive (close to 1 for a feature that acts alone) and a
positive contribution pushes towards default. Bins without events or without non-events
get WoE 0, as in optbinning.

Scoring of values not seen in training. NaN always scores the WoE of the missing bin (0 if
training had no missing values). For categorical features a code that never occurred in
training (or a non-integer or negative value) scores WoE 0, i.e. neutral (the average
risk), which is also what optbinning does for unknown categories. The encoder already maps
categories unseen at encoding time to NaN; the neutral rule covers codes the encoder knows
but the scorecard's training rows never contained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from optbinning import OptimalBinning

from creditops.errors import InvalidInputError, TrainingError

FloatArray = npt.NDArray[np.float64]


def woe_and_iv(n_event: FloatArray, n_nonevent: FloatArray) -> tuple[FloatArray, float]:
    """Risk-oriented WoE per bin and the total information value.

    ``woe = ln(p_event / p_nonevent)`` and ``IV = sum((p_event - p_nonevent) * woe)``
    (Siddiqi, *Credit Risk Scorecards*, 2006), over bins holding both classes only.
    """
    total_event = float(n_event.sum())
    total_nonevent = float(n_nonevent.sum())
    ok = (n_event > 0) & (n_nonevent > 0)
    woe = np.zeros(len(n_event), dtype=np.float64)
    iv = 0.0
    if ok.any():
        p_event = n_event[ok] / total_event
        p_nonevent = n_nonevent[ok] / total_nonevent
        woe[ok] = np.log(p_event / p_nonevent)
        iv = float(np.sum((p_event - p_nonevent) * woe[ok]))
    return woe, iv


@dataclass(frozen=True, eq=False)
class FeatureBinning:
    """One feature's binning, as plain arrays.

    Numeric: ``splits`` ascending; bin ``i`` holds ``splits[i-1] <= x < splits[i]`` (the
    rule of optbinning's ``np.digitize(..., right=False)``) and ``woe`` has one value per
    bin. Categorical: ``codes`` are the category codes seen in training and ``woe`` has one
    value per code (codes grouped in one bin share a value); ``n_bins`` counts the groups.
    """

    name: str
    categorical: bool
    splits: FloatArray
    codes: npt.NDArray[np.int64]
    woe: FloatArray
    missing_woe: float
    n_bins: int
    iv: float

    def transform(self, column: FloatArray) -> FloatArray:
        missing = np.isnan(column)
        if self.categorical:
            lookup = np.zeros(int(self.codes.max(initial=-1)) + 2, dtype=np.float64)
            lookup[self.codes] = self.woe
            known = ~missing & (column >= 0) & (column < len(lookup) - 1)
            known &= column == np.floor(column)
            index = np.where(known, column, len(lookup) - 1).astype(np.int64)
            out = lookup[index]  # the last slot is the neutral 0 for unknown codes
        else:
            out = self.woe[np.searchsorted(self.splits, column, side="right")]
        out[missing] = self.missing_woe
        return out

    def attainable_woe(self) -> FloatArray:
        """Every value :meth:`transform` can return (bins, missing bin, unknown code)."""
        extra = [self.missing_woe, 0.0] if self.categorical else [self.missing_woe]
        return np.concatenate([self.woe, np.asarray(extra, dtype=np.float64)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "categorical": self.categorical,
            "splits": [float(v) for v in self.splits],
            "codes": [int(v) for v in self.codes],
            "woe": [float(v) for v in self.woe],
            "missing_woe": float(self.missing_woe),
            "n_bins": int(self.n_bins),
            "iv": float(self.iv),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureBinning:
        binning = cls(
            name=str(d["name"]),
            categorical=bool(d["categorical"]),
            splits=np.asarray(d["splits"], dtype=np.float64),
            codes=np.asarray(d["codes"], dtype=np.int64),
            woe=np.asarray(d["woe"], dtype=np.float64),
            missing_woe=float(d["missing_woe"]),
            n_bins=int(d["n_bins"]),
            iv=float(d["iv"]),
        )
        if binning.categorical:
            consistent = len(binning.codes) == len(binning.woe) and bool((binning.codes >= 0).all())
        else:
            consistent = len(binning.woe) == len(binning.splits) + 1
        if not consistent or not np.isfinite(binning.woe).all():
            raise InvalidInputError(f"inconsistent binning for feature {binning.name!r}")
        return binning


def fit_feature_binning(  # noqa: PLR0913 - optbinning's options for one feature
    name: str,
    column: FloatArray,
    y: npt.NDArray[np.int64],
    *,
    categorical: bool,
    trend: str,
    min_bin_share: float,
    max_n_bins: int,
    random_state: int,
) -> FeatureBinning:
    """Bin one column with optbinning and copy the result into a :class:`FeatureBinning`.

    A column never observed in training gets a single neutral bin (optbinning cannot fit it).
    """
    no_splits, no_codes = np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int64)
    present = ~np.isnan(column)
    if not present.any():
        n_bins = 0 if categorical else 1
        return FeatureBinning(
            name, categorical, no_splits, no_codes, np.zeros(n_bins), 0.0, n_bins, 0.0
        )
    binning = OptimalBinning(
        name=name,
        dtype="categorical" if categorical else "numerical",
        monotonic_trend=trend,
        min_bin_size=min_bin_share,
        max_n_bins=max_n_bins,
        random_state=random_state,  # forwarded to the CART pre-binning tree
    )
    try:
        binning.fit(column, y)
    except ValueError as exc:
        raise TrainingError(f"could not bin feature {name!r}: {exc}") from exc
    if binning.status not in ("OPTIMAL", "FEASIBLE"):
        raise TrainingError(f"optimal binning of feature {name!r} ended {binning.status}")
    table = binning.binning_table
    # Rows: the regular bins, then the special-codes bin (always empty here), then missing.
    woe_all, iv = woe_and_iv(
        np.asarray(table.n_event, dtype=np.float64),
        np.asarray(table.n_nonevent, dtype=np.float64),
    )
    bin_woe, missing_woe = woe_all[:-2], float(woe_all[-1])
    if not categorical:
        splits = np.asarray(binning.splits, dtype=np.float64)
        return FeatureBinning(name, False, splits, no_codes, bin_woe, missing_woe, len(bin_woe), iv)
    if len(binning.splits):
        groups = [np.asarray(g, dtype=np.float64).astype(np.int64) for g in binning.splits]
    else:  # optbinning put every category in one bin
        groups = [np.unique(column[present]).astype(np.int64)]
    codes = np.concatenate(groups)
    woe = np.concatenate([np.full(len(g), bin_woe[b]) for b, g in enumerate(groups)])
    order = np.argsort(codes, kind="stable")
    return FeatureBinning(
        name, True, no_splits, codes[order], woe[order], missing_woe, len(groups), iv
    )
