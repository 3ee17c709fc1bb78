"""Group fairness of approve / decline decisions for one protected attribute.

Approval is the favourable outcome. Per group we report the approval (selection) rate, the
true-positive rate among *good* applicants (those who did not default: equal opportunity
asks that creditworthy people are approved at equal rates in every group) and the default
rate. Across groups:

* ``demographic_parity_ratio`` / ``_difference``: min / max and max - min of the approval
  rates (fairlearn's ``demographic_parity_ratio`` / ``_difference``).
* ``equal_opportunity_ratio`` / ``_difference``: the same over the good-applicant approval
  rates (fairlearn's ``equal_opportunity_ratio`` / ``_difference`` with ``y_true = good``);
  None when ``defaulted`` is not given.
* ``disparate_impact_ratio``: the smallest ``approval_rate(g) / approval_rate(reference)``
  over the groups, the reference group included (so it is at most 1). The reference is
  ``reference_group`` when given (the lender's designated comparison group), else the group
  with the highest approval rate, as in the EEOC's four-fifths rule (ties: the first in group
  order); without a designated group it therefore equals the demographic parity
  ratio. The four-fifths rule passes when it is >= 0.8. Groups are ordered by
  :func:`group_sort_key`: numeric codes and bands in numeric order (``<25`` before
  ``25-39``), then text, then ``"missing"``; the same order breaks reference ties.
* ``fairness_score = 100 * mean(available ratios)`` over the demographic parity ratio, the
  equal opportunity ratio (when available) and ``min(disparate_impact_ratio, 1)``; 100 means
  equal treatment on every measure, 0 that some group is never approved.

Where these differ from fairlearn (documented choices, only in degenerate cases):

* When every compared rate is 0 (nobody approved) a ratio is 1.0 (treatment is equal);
  fairlearn returns NaN (0 / 0). Likewise a disparate impact against a reference group with
  approval rate 0 is 1.0, since no group is approved less often than the reference.
* A group without good applicants has no true-positive rate (None) and is left out of the
  equal opportunity figures; fairlearn scores it as 0, which would drive the ratio to 0.

Groups with fewer than ``min_group_size`` rows are reported (``included = False``) but left
out of every dataset-level figure and cannot be the reference, because rates of tiny groups
are noise. Missing group labels (None, NaN) form the group ``"missing"``.

Everything is vectorised: labels are factorised once with ``np.unique`` and all per-group
counts come from a single ``np.bincount``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from creditops.errors import InvalidInputError
from creditops.features.spec import Spec

FOUR_FIFTHS = 0.8
MISSING = "missing"
# Groups smaller than this are reported but left out of the fairness ratios: a rate over a
# handful of applicants is noise, not evidence of disparate treatment.
FAIRNESS_MIN_GROUP = 30


@dataclass(frozen=True)
class GroupFairness:
    """Rates of one group. ``impact_ratio`` is ``approval_rate / reference approval_rate``."""

    group: str
    count: int
    approval_rate: float
    true_positive_rate: float | None
    default_rate: float | None
    impact_ratio: float | None
    included: bool


@dataclass(frozen=True)
class FairnessResult:
    attribute: str
    reference_group: str | None
    groups: tuple[GroupFairness, ...]
    demographic_parity_ratio: float | None
    demographic_parity_difference: float | None
    equal_opportunity_ratio: float | None
    equal_opportunity_difference: float | None
    disparate_impact_ratio: float | None
    passes_four_fifths: bool | None
    fairness_score: float | None
    min_group_size: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["groups"] = [asdict(g) for g in self.groups]
        return out


# --------------------------------------------------------------------------- banding


def _edge_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _default_band_labels(edges: Sequence[float]) -> list[str]:
    """``<25, 25-39, 40-59, 60+`` for integer edges; ``[25.5, 40)`` style otherwise."""
    integer = all(float(e).is_integer() for e in edges)
    labels = [f"<{_edge_text(edges[0])}"]
    for low, high in pairwise(edges):
        if integer:
            labels.append(f"{_edge_text(low)}-{_edge_text(high - 1)}")
        else:
            labels.append(f"[{_edge_text(low)}, {_edge_text(high)})")
    labels.append(f"{_edge_text(edges[-1])}+")
    return labels


def band_numeric(
    values: npt.ArrayLike,
    edges: Sequence[float] = (25, 40, 60),
    labels: Sequence[str] | None = None,
) -> npt.NDArray[np.str_]:
    """Band a numeric attribute (e.g. age) into ``len(edges) + 1`` labelled intervals.

    Band ``i`` is ``[edges[i-1], edges[i])``: the lower edge is inclusive, so with the
    default edges 25 falls in ``"25-39"``. NaN (and None) become ``"missing"``.
    """
    edge_array = np.asarray(edges, dtype=np.float64)
    if edge_array.ndim != 1 or edge_array.size == 0 or not np.isfinite(edge_array).all():
        raise InvalidInputError("edges must be a non-empty list of finite numbers", field="edges")
    if np.any(np.diff(edge_array) <= 0):
        raise InvalidInputError(f"edges must increase strictly; got {list(edges)}", field="edges")
    names = list(labels) if labels is not None else _default_band_labels(list(edges))
    if len(names) != len(edges) + 1:
        raise InvalidInputError(
            f"labels must have len(edges) + 1 = {len(edges) + 1} entries; got {len(names)}",
            field="labels",
        )
    try:
        numbers = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError("values must be numeric (or missing)", field="values") from None
    if numbers.ndim != 1:
        raise InvalidInputError(
            f"values must be one-dimensional; got {numbers.shape}", field="values"
        )
    index = np.searchsorted(edge_array, numbers, side="right")
    index[np.isnan(numbers)] = len(names)
    return np.asarray([*names, MISSING], dtype=np.str_)[index]


# --------------------------------------------------------------------------- inputs


def _flags(values: npt.ArrayLike, name: str, n: int) -> npt.NDArray[np.bool_]:
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n:
        raise InvalidInputError(
            f"{name} must be one-dimensional with one value per row ({n}); got shape {arr.shape}",
            field=name,
        )
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf" or not ((arr == 0) | (arr == 1)).all():
        raise InvalidInputError(f"{name} must be boolean (or 0/1)", field=name)
    return arr.astype(np.bool_)


def _factorize(groups: npt.ArrayLike) -> tuple[list[str], npt.NDArray[np.intp]]:
    """Sorted distinct group labels (as strings) and each row's index into them."""
    arr = np.asarray(groups)
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidInputError(
            f"groups must be one-dimensional and non-empty; got shape {arr.shape}", field="groups"
        )
    if arr.dtype.kind == "O":
        # Elementwise comparisons run in C; `x != x` is True only for NaN.
        missing = np.asarray(arr == None, dtype=bool) | np.asarray(arr != arr, dtype=bool)  # noqa: E711
        arr = arr.copy()
        arr[missing] = MISSING
        arr = arr.astype(np.str_)
    uniques, inverse = _unique_inverse(arr)
    # `tolist` gives Python scalars whose str() is distinct for distinct values.
    labels = [_label_text(u) for u in uniques.tolist()]
    order = sorted(range(len(labels)), key=lambda i: group_sort_key(labels[i]))
    if order == list(range(len(labels))):
        return labels, inverse.reshape(-1)
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order), dtype=np.intp)
    return [labels[i] for i in order], rank[inverse.reshape(-1)]


_BAND_LOW = re.compile(r"^\s*\[?\s*(-?\d+(?:\.\d+)?)")


def group_sort_key(label: str) -> tuple[int, float, str]:
    """Order of group labels: numbers and bands by their lower edge, then text, then missing.

    Bands from :func:`band_numeric` read ``<25, 25-39, 40-59, 60+`` in that (numeric) order,
    not the lexical ``25-39, 40-59, 60+, <25``; codes ``1, 2, 10`` sort as numbers.
    """
    if label == MISSING:
        return (2, 0.0, label)
    if label.startswith("<"):
        return (0, -math.inf, label)
    match = _BAND_LOW.match(label)
    if match is not None:
        return (0, float(match.group(1)), label)
    return (1, 0.0, label)


def _label_text(value: object) -> str:
    if isinstance(value, float) and math.isnan(value):
        return MISSING
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


def _unique_inverse(
    arr: npt.NDArray[Any],
) -> tuple[npt.NDArray[Any], npt.NDArray[np.intp]]:
    """``np.unique(arr, return_inverse=True)``, faster for strings and integers.

    numpy >= 2.3 finds the distinct values of these dtypes with a hash table
    (``sorted=False``); sorting that handful and locating every row with ``searchsorted``
    is then exact and 2-3x quicker than the full sort behind ``return_inverse``.
    """
    if arr.dtype.kind in "USbiu":
        try:
            distinct = np.unique(arr, sorted=False)
        except TypeError:  # numpy < 2.3 has no `sorted` argument
            pass
        else:
            uniques = np.sort(distinct)
            return uniques, np.searchsorted(uniques, arr).astype(np.intp)
    uniques, inverse = np.unique(arr, return_inverse=True)
    return uniques, inverse.astype(np.intp)


# --------------------------------------------------------------------------- metrics


def _ratio_and_difference(rates: npt.NDArray[np.float64]) -> tuple[float | None, float | None]:
    if rates.size == 0:
        return None, None
    high, low = float(rates.max()), float(rates.min())
    return (1.0 if high == 0.0 else low / high), high - low


def _reference(
    labels: list[str],
    counts: npt.NDArray[np.int64],
    included: npt.NDArray[np.bool_],
    wanted: str | None,
    rates: npt.NDArray[np.float64],
) -> int | None:
    if wanted is None:
        if not included.any():
            return None
        return int(np.argmax(np.where(included, rates, -1.0)))  # first of the highest
    if wanted not in labels:
        raise InvalidInputError(
            f"reference_group {wanted!r} does not occur; groups are {labels}",
            field="reference_group",
        )
    index = labels.index(wanted)
    if not included[index]:
        raise InvalidInputError(
            f"reference_group {wanted!r} has {int(counts[index])} rows, fewer than min_group_size",
            field="reference_group",
        )
    return index


def _impact(rate: float, reference_rate: float) -> float | None:
    if reference_rate > 0.0:
        return rate / reference_rate
    return 1.0 if rate == 0.0 else None


def _tally(
    codes: npt.NDArray[np.intp], k: int, approved: npt.ArrayLike, defaulted: npt.ArrayLike | None
) -> npt.NDArray[np.int64]:
    """Counts per (group, approved, defaulted) in one bincount; shape ``(k, 2, 2)``."""
    n = len(codes)
    cell = codes.astype(np.int64) * 4 + _flags(approved, "approved", n).astype(np.int64) * 2
    if defaulted is not None:
        cell += _flags(defaulted, "defaulted", n)
    return np.bincount(cell, minlength=4 * k).reshape(k, 2, 2).astype(np.int64)


def _good_approval_rates(table: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Approval rate among non-defaulters per group (NaN for a group without any)."""
    goods = table[:, :, 0].sum(axis=1)
    rates = np.full(len(goods), np.nan, dtype=np.float64)
    np.divide(table[:, 1, 0], goods, out=rates, where=goods > 0)
    return rates


def _score(*ratios: float | None) -> float | None:
    available = [r for r in ratios if r is not None]
    return 100.0 * sum(available) / len(available) if available else None


def compute_fairness(  # noqa: PLR0913 - fairlearn-style metric: arrays plus two options
    attribute: str,
    groups: npt.ArrayLike,
    approved: npt.ArrayLike,
    defaulted: npt.ArrayLike | None = None,
    reference_group: str | None = None,
    min_group_size: int = 1,
) -> FairnessResult:
    """Fairness of the ``approved`` decisions across the groups of one attribute.

    See the module docstring for every definition and the degenerate cases.
    """
    if min_group_size < 1:
        raise InvalidInputError(
            f"min_group_size must be at least 1; got {min_group_size}", field="min_group_size"
        )
    labels, codes = _factorize(groups)
    k = len(labels)
    table = _tally(codes, k, approved, defaulted)
    counts = table.sum(axis=(1, 2))
    approval = table[:, 1, :].sum(axis=1) / counts
    included = counts >= min_group_size
    dp_ratio, dp_diff = _ratio_and_difference(approval[included])

    tpr = _good_approval_rates(table) if defaulted is not None else None
    eo_ratio, eo_diff = (
        _ratio_and_difference(tpr[included & ~np.isnan(tpr)]) if tpr is not None else (None, None)
    )

    ref = _reference(labels, counts, included, reference_group, approval)
    impacts = [None if ref is None else _impact(float(a), float(approval[ref])) for a in approval]
    eligible = [r for r, ok in zip(impacts, included, strict=True) if ok and r is not None]
    di_ratio = min(eligible) if eligible else None

    rows = tuple(
        GroupFairness(
            group=labels[i],
            count=int(counts[i]),
            approval_rate=float(approval[i]),
            true_positive_rate=None if tpr is None or math.isnan(tpr[i]) else float(tpr[i]),
            default_rate=None if defaulted is None else float(table[i, :, 1].sum() / counts[i]),
            impact_ratio=impacts[i],
            included=bool(included[i]),
        )
        for i in range(k)
    )
    return FairnessResult(
        attribute=attribute,
        reference_group=None if ref is None else labels[ref],
        groups=rows,
        demographic_parity_ratio=dp_ratio,
        demographic_parity_difference=dp_diff,
        equal_opportunity_ratio=eo_ratio,
        equal_opportunity_difference=eo_diff,
        disparate_impact_ratio=di_ratio,
        passes_four_fifths=None if di_ratio is None else di_ratio >= FOUR_FIFTHS,
        fairness_score=_score(dp_ratio, eo_ratio, None if di_ratio is None else min(di_ratio, 1)),
        min_group_size=min_group_size,
    )


def protected_groups(frame: pd.DataFrame, spec: Spec, column: str) -> npt.NDArray[np.str_]:
    """Group labels of a protected attribute; numeric attributes are banded."""
    bands = spec.bands_for(column)
    if bands is not None and spec.features.get(column) == "numeric":
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        return np.asarray(band_numeric(values, edges=bands), dtype=str)
    return np.asarray(frame[column].astype("string").fillna(MISSING), dtype=str)
