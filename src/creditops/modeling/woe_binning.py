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

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

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


MISSING_BIN = "missing"
WOE_SIGN = "WoE = ln(share of defaults / share of non-defaults): positive = riskier than average"


@dataclass(frozen=True, eq=False)
class BinCounts:
    """Training rows per bin: ``event`` (defaults) and ``nonevent`` per regular bin, the
    missing bin's two counts, and for a categorical feature ``code_bin``: the bin of each of
    :attr:`FeatureBinning.codes`."""

    event: npt.NDArray[np.int64]
    nonevent: npt.NDArray[np.int64]
    missing_event: int
    missing_nonevent: int
    code_bin: npt.NDArray[np.int64] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event": [int(v) for v in self.event],
            "nonevent": [int(v) for v in self.nonevent],
            "missing_event": int(self.missing_event),
            "missing_nonevent": int(self.missing_nonevent),
        }
        if self.code_bin is not None:
            out["code_bin"] = [int(v) for v in self.code_bin]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BinCounts:
        code_bin = d.get("code_bin")
        return cls(
            event=np.asarray(d["event"], dtype=np.int64),
            nonevent=np.asarray(d["nonevent"], dtype=np.int64),
            missing_event=int(d["missing_event"]),
            missing_nonevent=int(d["missing_nonevent"]),
            code_bin=None if code_bin is None else np.asarray(code_bin, dtype=np.int64),
        )


@dataclass(frozen=True)
class BinRow:
    """One row of a characteristic's binning table (counts are training rows)."""

    bin: str  # "0", "1", ... or "missing"
    label: str  # the interval or the categories, readable
    count: int | None
    share: float | None
    n_event: int | None
    n_nonevent: int | None
    event_rate: float | None
    woe: float
    iv_contribution: float | None


@dataclass(frozen=True)
class BinningTable:
    """A characteristic's bins, as optbinning's ``binning_table`` shows them, in
    creditops' risk-oriented WoE sign (:data:`WOE_SIGN`). ``auc`` is the single-feature
    AUC of the binned feature on the training rows (see :func:`binned_auc`; None without
    counts)."""

    feature: str
    categorical: bool
    rows: tuple[BinRow, ...]
    iv: float
    auc: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "categorical": self.categorical,
            "iv": self.iv,
            "auc": self.auc,
            "rows": [asdict(r) for r in self.rows],
        }


def _num_text(value: float) -> str:
    return f"{value:g}"


def _interval_labels(splits: FloatArray) -> list[str]:
    """``< a``, ``[a, b)``, ..., ``>= z`` (bin i holds ``splits[i-1] <= x < splits[i]``)."""
    if len(splits) == 0:
        return ["all values"]
    labels = [f"< {_num_text(splits[0])}"]
    labels += [f"[{_num_text(lo)}, {_num_text(hi)})" for lo, hi in pairwise(splits)]
    labels.append(f">= {_num_text(splits[-1])}")
    return labels


def category_text(category: str, value_labels: Mapping[str, str] | None) -> str:
    """A category with its display label from the spec when it has one: ``1 (male)``."""
    label = (value_labels or {}).get(category)
    return f"{category} ({label})" if label else category


def binned_auc(event: FloatArray, nonevent: FloatArray) -> float | None:
    """AUC of the bins' default rates as a score: P(a default sits in a bin with a higher
    default rate than a non-default's), ties one half (Mann-Whitney over the bins).

    The default rate, not the WoE, orders the bins: it ranks mixed bins exactly as the WoE
    does, and it still separates bins holding one class only, which get WoE 0, so a feature
    that splits defaults from non-defaults perfectly scores 1.0 here although its IV is 0.
    """
    total_event, total_nonevent = float(event.sum()), float(nonevent.sum())
    if total_event == 0 or total_nonevent == 0:
        return None
    count = event + nonevent
    rate = np.divide(event, count, out=np.zeros_like(event), where=count > 0)
    values, index = np.unique(rate, return_inverse=True)
    ev = np.bincount(index, weights=event, minlength=len(values))
    ne = np.bincount(index, weights=nonevent, minlength=len(values))
    below = np.concatenate([[0.0], np.cumsum(ne)[:-1]])  # non-defaults in lower-rate bins
    wins = float(np.sum(ev * (below + 0.5 * ne)))
    return wins / (total_event * total_nonevent)


@dataclass(frozen=True, eq=False)
class FeatureBinning:
    """One feature's binning, as plain arrays.

    Numeric: ``splits`` ascending; bin ``i`` holds ``splits[i-1] <= x < splits[i]`` (the
    rule of optbinning's ``np.digitize(..., right=False)``) and ``woe`` has one value per
    bin. Categorical: ``codes`` are the category codes seen in training and ``woe`` has one
    value per code (codes grouped in one bin share a value); ``n_bins`` counts the groups.
    ``counts`` are the training rows per bin (None in bundles written before they were
    kept); the binning table needs them.
    """

    name: str
    categorical: bool
    splits: FloatArray
    codes: npt.NDArray[np.int64]
    woe: FloatArray
    missing_woe: float
    n_bins: int
    iv: float
    counts: BinCounts | None = None

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

    def bin_woe(self) -> FloatArray:
        """One WoE per regular bin (categorical: per group of codes)."""
        if not self.categorical:
            return self.woe
        out = np.zeros(self.n_bins, dtype=np.float64)
        if self.counts is not None and self.counts.code_bin is not None:
            out[self.counts.code_bin] = self.woe
        return out

    def bin_labels(
        self,
        categories: Sequence[str] | None = None,
        value_labels: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Readable bins: intervals, or the categories of each group (encoder
        ``categories`` turn codes back into values; ``value_labels`` add the spec's names)."""
        if not self.categorical:
            return _interval_labels(self.splits)
        groups: list[list[str]] = [[] for _ in range(self.n_bins)]
        code_bin = self.counts.code_bin if self.counts is not None else None
        for i, code in enumerate(self.codes):
            value = categories[code] if categories is not None and code < len(categories) else None
            text = category_text(str(value), value_labels) if value is not None else f"code {code}"
            groups[int(code_bin[i]) if code_bin is not None else 0].append(text)
        return [", ".join(g) for g in groups]

    def table(
        self,
        categories: Sequence[str] | None = None,
        value_labels: Mapping[str, str] | None = None,
    ) -> BinningTable:
        """The binning table: per bin (then the missing bin) the training counts, the
        share of rows, the default (event) rate, the WoE and the bin's part of the IV."""
        labels = self.bin_labels(categories, value_labels)
        woe = np.append(self.bin_woe(), self.missing_woe)
        bins = [str(i) for i in range(self.n_bins)] + [MISSING_BIN]
        labels.append(MISSING_BIN)
        if self.counts is None:
            rows = tuple(
                BinRow(b, lab, None, None, None, None, None, float(w), None)
                for b, lab, w in zip(bins, labels, woe, strict=True)
            )
            return BinningTable(self.name, self.categorical, rows, self.iv, None)
        event = np.append(self.counts.event, self.counts.missing_event).astype(np.float64)
        nonevent = np.append(self.counts.nonevent, self.counts.missing_nonevent).astype(np.float64)
        count = event + nonevent
        n_total, e_total, ne_total = count.sum(), event.sum(), nonevent.sum()
        has_both = (event > 0) & (nonevent > 0)
        contribution = np.where(
            has_both, (event / max(e_total, 1.0) - nonevent / max(ne_total, 1.0)) * woe, 0.0
        )
        rows = tuple(
            BinRow(
                bin=bins[i],
                label=labels[i],
                count=int(count[i]),
                share=float(count[i] / n_total) if n_total else None,
                n_event=int(event[i]),
                n_nonevent=int(nonevent[i]),
                event_rate=float(event[i] / count[i]) if count[i] else None,
                woe=float(woe[i]),
                iv_contribution=float(contribution[i]),
            )
            for i in range(len(bins))
        )
        return BinningTable(self.name, self.categorical, rows, self.iv, binned_auc(event, nonevent))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "categorical": self.categorical,
            "splits": [float(v) for v in self.splits],
            "codes": [int(v) for v in self.codes],
            "woe": [float(v) for v in self.woe],
            "missing_woe": float(self.missing_woe),
            "n_bins": int(self.n_bins),
            "iv": float(self.iv),
        }
        if self.counts is not None:
            out["counts"] = self.counts.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureBinning:
        counts = d.get("counts")
        binning = cls(
            name=str(d["name"]),
            categorical=bool(d["categorical"]),
            splits=np.asarray(d["splits"], dtype=np.float64),
            codes=np.asarray(d["codes"], dtype=np.int64),
            woe=np.asarray(d["woe"], dtype=np.float64),
            missing_woe=float(d["missing_woe"]),
            n_bins=int(d["n_bins"]),
            iv=float(d["iv"]),
            counts=None if counts is None else BinCounts.from_dict(counts),
        )
        if binning.categorical:
            consistent = len(binning.codes) == len(binning.woe) and bool((binning.codes >= 0).all())
        else:
            consistent = len(binning.woe) == len(binning.splits) + 1
        if not consistent or not np.isfinite(binning.woe).all() or not _counts_fit(binning):
            raise InvalidInputError(f"inconsistent binning for feature {binning.name!r}")
        return binning


def _counts_fit(binning: FeatureBinning) -> bool:
    counts = binning.counts
    if counts is None:
        return True
    shapes = len(counts.event) == binning.n_bins == len(counts.nonevent)
    if not binning.categorical:
        return shapes
    code_bin = counts.code_bin
    return (
        shapes
        and code_bin is not None
        and len(code_bin) == len(binning.codes)
        and bool(((code_bin >= 0) & (code_bin < binning.n_bins)).all())
    )


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
        defaults = int(y.sum())
        empty = BinCounts(
            np.zeros(n_bins, dtype=np.int64),
            np.zeros(n_bins, dtype=np.int64),
            defaults,
            len(y) - defaults,
            no_codes if categorical else None,
        )
        return FeatureBinning(
            name, categorical, no_splits, no_codes, np.zeros(n_bins), 0.0, n_bins, 0.0, empty
        )
    # imported here: optbinning (with matplotlib and scipy.stats) costs about 0.7 s to
    # import, and every process that only scores would pay it
    from optbinning import OptimalBinning

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
    n_event = np.asarray(table.n_event, dtype=np.int64)
    n_nonevent = np.asarray(table.n_nonevent, dtype=np.int64)
    woe_all, iv = woe_and_iv(n_event.astype(np.float64), n_nonevent.astype(np.float64))
    bin_woe, missing_woe = woe_all[:-2], float(woe_all[-1])
    missing = (int(n_event[-1]), int(n_nonevent[-1]))
    if not categorical:
        splits = np.asarray(binning.splits, dtype=np.float64)
        counts = BinCounts(n_event[:-2], n_nonevent[:-2], *missing)
        return FeatureBinning(
            name, False, splits, no_codes, bin_woe, missing_woe, len(bin_woe), iv, counts
        )
    if len(binning.splits):
        groups = [np.asarray(g, dtype=np.float64).astype(np.int64) for g in binning.splits]
    else:  # optbinning put every category in one bin
        groups = [np.unique(column[present]).astype(np.int64)]
    codes = np.concatenate(groups)
    woe = np.concatenate([np.full(len(g), bin_woe[b]) for b, g in enumerate(groups)])
    code_bin = np.concatenate([np.full(len(g), b, dtype=np.int64) for b, g in enumerate(groups)])
    order = np.argsort(codes, kind="stable")
    counts = BinCounts(n_event[:-2], n_nonevent[:-2], *missing, code_bin[order])
    return FeatureBinning(
        name, True, no_splits, codes[order], woe[order], missing_woe, len(groups), iv, counts
    )
