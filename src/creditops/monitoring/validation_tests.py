"""The statistical tests a model validator runs on a PD model: the calibration back-tests
per band, the Brier skill, the AUC-decline test, characteristic stability with the score
shift it causes, and fairness in lending terms. Formulas, readings and references are in
``docs/validation_statistics.md``; each function's docstring states its own.

Conventions are those of :mod:`creditops.modeling.metrics`: ``y`` is 1 for a default,
``pd`` the predicted probability of default, a *score* runs the other way (higher is
safer). Bad input raises :class:`~creditops.errors.InvalidInputError` naming the
parameter, what was expected and what was received, as everywhere in the core.

**Why this module lives in ``monitoring`` and not in ``modeling``.** The characteristic
stability index is the population stability index of a characteristic's bins, and the
one ``psi`` is :func:`creditops.monitoring.drift.statistics.psi`. The import-linter layers
put ``monitoring`` above ``modeling``: ``modeling`` may not import ``monitoring``, while
``monitoring`` may import ``modeling``. Here the module reuses both the DeLong code and
fairness helpers of ``modeling`` and the ``psi`` and conditions of ``monitoring`` without
a second copy of any of them, and without making every caller pass ``psi`` in. These are
also the tests that ongoing monitoring repeats on each later sample, which is
``monitoring``'s business.

Everything is pure numpy / scipy and returns frozen results with ``to_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.stats import beta, binomtest, fisher_exact, norm

from creditops.errors import InvalidInputError
from creditops.modeling.fairness import FAIRNESS_MIN_GROUP, FOUR_FIFTHS, _factorize, _flags
from creditops.modeling.metrics import (
    FloatArray,
    _checked,
    _labels,
    _reals,
    _vector,
    brier_score,
    delong_auc_ci,
    finite_or_none,
)
from creditops.monitoring.conditions import INSUFFICIENT, Level, level_of
from creditops.monitoring.drift.statistics import psi, shares

Light = Literal["green", "amber", "red"]
BacktestKind = Literal["jeffreys", "binomial"]
ImpactStatus = Literal["reference", "pass", "fail", "insufficient_data"]
SmdStatus = Literal["reference", "assessed", "insufficient_data"]
Magnitude = Literal["negligible", "small", "medium", "large"]

# The fewest approvals, and the fewest denials, that each cell of the 2 x 2 table of a
# group and the reference group must hold for the adverse impact ratio to be judged.
MIN_CELL_COUNT = 5
# CSI levels: the PSI bands of the drift checks (Siddiqi 2006): < 0.1 stable, 0.1 - 0.25
# some shift, >= 0.25 a significant shift.
CSI_WARNING = 0.1
CSI_CRITICAL = 0.25
# Cohen (1988): |d| of 0.2, 0.5 and 0.8 are a small, medium and large effect.
_COHEN: tuple[tuple[float, Magnitude], ...] = ((0.8, "large"), (0.5, "medium"), (0.2, "small"))


def _floats_or_none(values: Mapping[str, Any]) -> dict[str, Any]:
    """``asdict`` output for JSON: NaN and infinities become None."""
    return {k: finite_or_none(v) if isinstance(v, float) else v for k, v in values.items()}


# --------------------------------------------------------------------------- Brier skill


def brier_skill_score(y: npt.ArrayLike, pd: npt.ArrayLike) -> float:
    """``BSS = 1 - Brier / Brier_ref`` with ``Brier_ref = p̄ (1 - p̄)``, ``p̄ = mean(y)``.

    ``Brier_ref`` is the Brier score of the uninformed forecast that gives everyone the
    observed default rate. 1 is a perfect forecast, 0 no better than that forecast, below 0
    worse. Undefined (and refused) when ``y`` holds a single class.
    """
    labels, probs = _checked(y, pd)
    rate = float(labels.mean())
    reference = rate * (1.0 - rate)
    if reference == 0.0:
        raise InvalidInputError(
            "y must contain both defaults and non-defaults for the Brier skill score "
            f"(the reference Brier p̄(1 - p̄) is 0); got a default rate of {rate}",
            field="y",
        )
    return 1.0 - brier_score(labels, probs) / reference


# --------------------------------------------------------------------------- band back-tests


@dataclass(frozen=True)
class TrafficLightThresholds:
    """The condition of the band back-tests, on the p-value of the test named by ``test``.

    ``green`` when ``p >= green_min``, ``amber`` when ``amber_min <= p < green_min``,
    ``red`` when ``p < amber_min``. Defaults: 0.05 and 0.01 on the Jeffreys test (the ECB
    convention for PD back-testing).
    """

    green_min: float = 0.05
    amber_min: float = 0.01
    test: BacktestKind = "jeffreys"

    def __post_init__(self) -> None:
        if not 0.0 < self.amber_min <= self.green_min < 1.0:
            raise InvalidInputError(
                "TrafficLightThresholds needs 0 < amber_min <= green_min < 1; "
                f"got amber_min={self.amber_min}, green_min={self.green_min}",
                field="amber_min",
            )
        if self.test not in ("jeffreys", "binomial"):
            raise InvalidInputError(
                f"TrafficLightThresholds.test must be 'jeffreys' or 'binomial'; got {self.test!r}",
                field="test",
            )

    def light_of(self, p_value: float) -> Light:
        if p_value >= self.green_min:
            return "green"
        return "amber" if p_value >= self.amber_min else "red"


DEFAULT_LIGHTS = TrafficLightThresholds()


@dataclass(frozen=True)
class BandCalibrationResult:
    """The back-test of one band: its counts, rates, both p-values and the traffic light."""

    band: str
    n: int
    defaults: int
    observed_rate: float
    mean_pd: float
    binomial_p_value: float
    jeffreys_p_value: float
    light: Light

    def to_dict(self) -> dict[str, Any]:
        return _floats_or_none(asdict(self))


def _count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InvalidInputError(
            f"{name} must be an integer of at least {minimum}; got {value!r}", field=name
        )
    return int(value)


def band_calibration_test(
    n: int,
    defaults: int,
    mean_pd: float,
    band: str = "all",
    thresholds: TrafficLightThresholds = DEFAULT_LIGHTS,
) -> BandCalibrationResult:
    """One-sided back-tests of a band's PD: is the true default rate above ``mean_pd``?

    * Exact binomial test (H0: true PD <= ``mean_pd``): ``p = P(X >= d)``,
      ``X ~ Binomial(n, mean_pd)`` (``scipy.stats.binomtest(d, n, mean_pd, "greater")``).
    * Jeffreys test: ``p = F(mean_pd)`` with ``F`` the CDF of ``Beta(d + 1/2, n - d + 1/2)``,
      the posterior of the PD under the Jeffreys prior ``Beta(1/2, 1/2)``: the posterior
      probability that the PD is at or below the prediction.

    A small p-value says the band defaults more often than predicted (the PD is too low).
    A ``mean_pd`` of exactly 0 makes the Jeffreys p-value 0 whatever the defaults.
    """
    n = _count(n, "n", 1)
    defaults = _count(defaults, "defaults", 0)
    if defaults > n:
        raise InvalidInputError(
            f"defaults must be at most n ({n}); got {defaults}", field="defaults"
        )
    if not (isinstance(mean_pd, float | int | np.number) and 0.0 <= float(mean_pd) <= 1.0):
        raise InvalidInputError(
            f"mean_pd must be a probability in [0, 1]; got {mean_pd!r}", field="mean_pd"
        )
    p = float(mean_pd)
    binomial = float(binomtest(defaults, n, p, alternative="greater").pvalue)
    jeffreys = float(beta.cdf(p, defaults + 0.5, n - defaults + 0.5))
    chosen = jeffreys if thresholds.test == "jeffreys" else binomial
    return BandCalibrationResult(
        band, n, defaults, defaults / n, p, binomial, jeffreys, thresholds.light_of(chosen)
    )


def band_calibration_tests(
    y: npt.ArrayLike,
    pd: npt.ArrayLike,
    bands: npt.ArrayLike,
    thresholds: TrafficLightThresholds = DEFAULT_LIGHTS,
) -> tuple[BandCalibrationResult, ...]:
    """:func:`band_calibration_test` for every band, from row-level outcomes and PDs.

    Per band (a decision band, a rating grade, a score band): ``n`` rows, ``d`` defaults and
    the mean PD. Bands are ordered as fairness groups are (numbers and ranges numerically,
    then text, then ``"missing"`` for None / NaN labels).
    """
    labels, probs = _checked(y, pd)
    band_values = _vector(bands, "bands")
    if len(band_values) != len(labels):
        raise InvalidInputError(
            f"bands has {len(band_values)} values but y has {len(labels)}; "
            "they must have the same length",
            field="bands",
        )
    names, codes = _factorize(band_values)
    k = len(names)
    counts = np.bincount(codes, minlength=k)
    defaults = np.bincount(codes, weights=labels, minlength=k).round().astype(np.int64)
    pd_sums = np.bincount(codes, weights=probs, minlength=k)
    return tuple(
        band_calibration_test(
            int(counts[i]),
            int(defaults[i]),
            min(float(pd_sums[i] / counts[i]), 1.0),
            band=names[i],
            thresholds=thresholds,
        )
        for i in range(k)
    )


# --------------------------------------------------------------------------- AUC decline


@dataclass(frozen=True)
class AucDeclineResult:
    """The one-sided test that a later sample's AUC is below the development AUC."""

    auc_dev: float
    auc_new: float
    difference: float
    se: float
    z: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return _floats_or_none(asdict(self))


def _sample(
    y: npt.ArrayLike, pd: npt.ArrayLike, suffix: str
) -> tuple[npt.NDArray[np.int8], FloatArray]:
    labels = _labels(y, f"y_{suffix}")
    probs = _reals(pd, f"pd_{suffix}", probability=True)
    if len(labels) != len(probs):
        raise InvalidInputError(
            f"pd_{suffix} has {len(probs)} values but y_{suffix} has {len(labels)}; "
            "they must have the same length",
            field=f"pd_{suffix}",
        )
    bad = int(labels.sum())
    if bad in (0, len(labels)):
        raise InvalidInputError(
            f"y_{suffix} must contain both defaults and non-defaults for an AUC; "
            f"got {bad} defaults and {len(labels) - bad} non-defaults",
            field=f"y_{suffix}",
        )
    return labels, probs


def auc_decline_test(
    y_dev: npt.ArrayLike, pd_dev: npt.ArrayLike, y_new: npt.ArrayLike, pd_new: npt.ArrayLike
) -> AucDeclineResult:
    """Is the AUC on a later, independent sample lower than the development AUC?

    ``z = (AUC_dev - AUC_new) / sqrt(Var_dev + Var_new)`` with each variance DeLong's
    (:func:`~creditops.modeling.metrics.delong_auc_ci`; the samples are independent, so no
    covariance term), and the one-sided ``p = 1 - Phi(z)``. A small p-value says the AUC
    declined. With zero variance (both samples perfectly separated or all tied),
    ``z`` is 0 when the AUCs are equal and ±infinity otherwise; with a single default or
    non-default in a sample the variance is undefined and ``se``, ``z`` and ``p_value`` are NaN.
    """
    dev = delong_auc_ci(*_sample(y_dev, pd_dev, "dev"))
    new = delong_auc_ci(*_sample(y_new, pd_new, "new"))
    difference = dev.auc - new.auc
    se = math.sqrt(dev.se**2 + new.se**2)
    if math.isnan(se):
        z = math.nan
    elif se == 0.0:
        z = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
    else:
        z = difference / se
    p_value = math.nan if math.isnan(z) else float(norm.sf(z))
    return AucDeclineResult(dev.auc, new.auc, difference, se, z, p_value)


# --------------------------------------------------------------------------- stability


@dataclass(frozen=True)
class CharacteristicStabilityResult:
    """CSI of one characteristic and its level (``ok`` / ``warning`` / ``critical``)."""

    characteristic: str
    csi: float
    level: Level
    n_bins: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bin_vector(values: npt.ArrayLike, name: str, *, counts: bool) -> FloatArray:
    arr = _reals(values, name, probability=False)
    if counts and (arr.min() < 0.0 or arr.sum() <= 0.0):
        raise InvalidInputError(
            f"{name} must be non-negative bin counts (or shares) with a positive total; "
            f"got {arr.tolist()}",
            field=name,
        )
    return arr


# Points may be negative; every other vector holds bin counts or shares.
_POINTS = "points"


def _aligned(
    characteristic: str, named: Mapping[str, Mapping[str, npt.ArrayLike]]
) -> list[FloatArray]:
    """The vectors of one characteristic from each mapping, checked to have equal bins."""
    vectors: list[FloatArray] = []
    for name, mapping in named.items():
        if characteristic not in mapping:
            raise InvalidInputError(
                f"{name} must have an entry for every characteristic; "
                f"{characteristic!r} is missing (it has {sorted(mapping)})",
                field=name,
            )
        field = f"{name}[{characteristic!r}]"
        vectors.append(_bin_vector(mapping[characteristic], field, counts=name != _POINTS))
    sizes = {len(v) for v in vectors}
    if len(sizes) > 1:
        raise InvalidInputError(
            f"every vector of {characteristic!r} must have the same number of bins; "
            f"got {[len(v) for v in vectors]} in {list(named)}",
            field=list(named)[-1],
        )
    return vectors


def _characteristics(named: Mapping[str, Mapping[str, npt.ArrayLike]]) -> list[str]:
    first_name, first = next(iter(named.items()))
    if not first:
        raise InvalidInputError(
            f"{first_name} must name at least one characteristic; got none", field=first_name
        )
    for name, mapping in named.items():
        extra = sorted(set(mapping) - set(first))
        if extra:
            raise InvalidInputError(
                f"{name} has characteristics that {first_name} lacks: {extra}", field=name
            )
    return list(first)


def characteristic_stability(
    reference_counts: Mapping[str, npt.ArrayLike],
    current_counts: Mapping[str, npt.ArrayLike],
    warning: float = CSI_WARNING,
    critical: float = CSI_CRITICAL,
) -> tuple[CharacteristicStabilityResult, ...]:
    """Characteristic stability index per characteristic, largest first (ties by name).

    ``CSI = sum_i (q_i - p_i) ln(q_i / p_i)`` over the characteristic's bins, with ``p`` and
    ``q`` the reference and current shares: the PSI of :mod:`~creditops.monitoring.drift.
    statistics` (a zero share is replaced by 1e-4). Level: ``critical`` at or above
    ``critical`` (0.25), ``warning`` from ``warning`` (0.1), as the data-drift checks read PSI.
    Bins are given per characteristic as counts (or shares), aligned in both mappings.
    """
    if not 0.0 < warning <= critical:
        raise InvalidInputError(
            f"need 0 < warning <= critical; got warning={warning}, critical={critical}",
            field="warning",
        )
    named = {"reference_counts": reference_counts, "current_counts": current_counts}
    rows = []
    for characteristic in _characteristics(named):
        reference, current = _aligned(characteristic, named)
        csi = psi(reference, current)
        level = level_of(csi, warning, critical, critical_inclusive=True)
        rows.append(CharacteristicStabilityResult(characteristic, csi, level, len(reference)))
    return tuple(sorted(rows, key=lambda r: (-r.csi, r.characteristic)))


@dataclass(frozen=True)
class ScoreShiftRow:
    """One characteristic's mean points in the reference and current population."""

    characteristic: str
    reference_points: float
    current_points: float
    shift: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScoreShiftResult:
    """Rows by decreasing absolute shift, and the total (the change of the mean score)."""

    rows: tuple[ScoreShiftRow, ...]
    total_shift: float

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.to_dict() for r in self.rows], "total_shift": self.total_shift}


def score_shift_attribution(
    points: Mapping[str, npt.ArrayLike],
    reference_shares: Mapping[str, npt.ArrayLike],
    current_shares: Mapping[str, npt.ArrayLike],
) -> ScoreShiftResult:
    """Which characteristic moved the score: ``shift_c = sum_i (q_i - p_i) * points_i``.

    ``points[c][i]`` is the score contribution of bin ``i`` of characteristic ``c`` (e.g.
    from a WoE scorecard), ``p`` and ``q`` the reference and current shares of the bins
    (counts are accepted and divided by their total). ``reference_points = sum_i p_i
    points_i`` is the characteristic's mean contribution to the score in the reference
    population, likewise ``current_points``. For an additive scorecard ``total_shift`` (the
    sum of the shifts) is the change of the mean score between the two populations.
    """
    named = {
        _POINTS: points,
        "reference_shares": reference_shares,
        "current_shares": current_shares,
    }
    rows = []
    for characteristic in _characteristics(named):
        contribution, reference, current = _aligned(characteristic, named)
        before = float(np.dot(shares(reference), contribution))
        after = float(np.dot(shares(current), contribution))
        rows.append(ScoreShiftRow(characteristic, before, after, after - before))
    rows.sort(key=lambda r: (-abs(r.shift), r.characteristic))
    return ScoreShiftResult(tuple(rows), math.fsum(r.shift for r in rows))


# --------------------------------------------------------------------------- fairness


@dataclass(frozen=True)
class AdverseImpactRow:
    """One group against the reference group: ``adverse_impact_ratio = rate / rate_ref``."""

    group: str
    n: int
    approvals: int
    approval_rate: float
    adverse_impact_ratio: float | None
    is_below_four_fifths: bool | None
    fisher_p_value: float | None
    status: ImpactStatus


@dataclass(frozen=True)
class AdverseImpactResult:
    reference_group: str
    min_count: int
    rows: tuple[AdverseImpactRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows": [asdict(r) for r in self.rows]}


def _groups(
    group: npt.ArrayLike, reference_group: str, min_count: int
) -> tuple[list[str], npt.NDArray[np.intp], int]:
    """Group names, each row's group index and the reference group's index."""
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise InvalidInputError(
            f"min_count must be an integer of at least 1; got {min_count!r}", field="min_count"
        )
    names, codes = _factorize(_vector(group, "group"))
    if reference_group not in names:
        raise InvalidInputError(
            f"reference_group must be one of the groups {names}; got {reference_group!r}",
            field="reference_group",
        )
    return names, codes, names.index(reference_group)


def _impact_row(
    name: str, cells: npt.NDArray[np.int64], reference: npt.NDArray[np.int64], min_count: int
) -> AdverseImpactRow:
    """``cells`` and ``reference`` are (approvals, denials) of the group and the reference."""
    n, approvals = int(cells.sum()), int(cells[0])
    rate, reference_rate = approvals / n, float(reference[0] / reference.sum())
    air = rate / reference_rate if reference_rate > 0.0 else None
    below = None if air is None else air < FOUR_FIFTHS
    p_value = float(fisher_exact(np.vstack((cells, reference)), alternative="two-sided").pvalue)
    enough = min(n, int(reference.sum())) >= min_count
    if not enough or min(*cells, *reference) < MIN_CELL_COUNT:
        status: ImpactStatus = INSUFFICIENT
    else:
        status = "fail" if below else "pass"
    return AdverseImpactRow(name, n, approvals, rate, air, below, p_value, status)


def adverse_impact_ratio(
    approved: npt.ArrayLike,
    group: npt.ArrayLike,
    reference_group: str,
    min_count: int = FAIRNESS_MIN_GROUP,
) -> AdverseImpactResult:
    """Adverse impact ratio of every group's approval rate over the reference group's.

    Per group ``g``: ``AIR = rate_g / rate_ref`` (None when the reference approves nobody),
    the four-fifths flag ``AIR < 0.8`` (EEOC, 29 CFR 1607.4(D)) and the two-sided Fisher
    exact test of equal approval rates on the 2 x 2 table ``[[approved_g, denied_g],
    [approved_ref, denied_ref]]``. ``status`` is ``"fail"`` when the flag is raised, else
    ``"pass"``; the reference group's row is ``"reference"``.

    Insufficient-data rule: a group is not judged (``"insufficient_data"``, its numbers
    still reported) when it or the reference group has fewer than ``min_count`` applicants
    (default 30), or when any of the four cells (approvals and denials of the group and of
    the reference group) holds fewer than 5. Group labels are compared as strings (None and
    NaN form ``"missing"``), so ``reference_group`` is a string.
    """
    names, codes, ref = _groups(group, reference_group, min_count)
    flags = _flags(approved, "approved", len(codes))
    k = len(names)
    approvals = np.bincount(codes, weights=flags.astype(np.float64), minlength=k)
    approvals = approvals.round().astype(np.int64)
    counts = np.bincount(codes, minlength=k).astype(np.int64)
    table = np.column_stack((approvals, counts - approvals))
    rows = [_impact_row(names[i], table[i], table[ref], min_count) for i in range(k)]
    rows[ref] = AdverseImpactRow(
        names[ref],
        int(counts[ref]),
        int(approvals[ref]),
        rows[ref].approval_rate,
        1.0,
        False,
        None,
        "reference",
    )
    return AdverseImpactResult(reference_group, min_count, tuple(rows))


@dataclass(frozen=True)
class MeanDifferenceRow:
    """One group's score mean and SD, and its standardised mean difference to the reference."""

    group: str
    n: int
    mean: float
    sd: float | None
    smd: float | None
    magnitude: Magnitude | None
    status: SmdStatus


@dataclass(frozen=True)
class StandardizedMeanDifferenceResult:
    reference_group: str
    min_count: int
    rows: tuple[MeanDifferenceRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows": [asdict(r) for r in self.rows]}


def _magnitude(smd: float | None) -> Magnitude | None:
    if smd is None:
        return None
    for bound, label in _COHEN:
        if abs(smd) >= bound:
            return label
    return "negligible"


def standardized_mean_difference(
    scores: npt.ArrayLike,
    group: npt.ArrayLike,
    reference_group: str,
    min_count: int = FAIRNESS_MIN_GROUP,
) -> StandardizedMeanDifferenceResult:
    """Standardised mean difference (Cohen's d) of every group's scores to the reference's.

    ``SMD = (mean_g - mean_ref) / s_pooled`` with
    ``s_pooled = sqrt(((n_g - 1) s_g^2 + (n_ref - 1) s_ref^2) / (n_g + n_ref - 2))`` and
    ``s`` the sample standard deviation. Positive means the group scores higher than the
    reference (safer, on a score scale). ``magnitude`` by Cohen (1988): ``|SMD|`` under 0.2
    negligible, from 0.2 small, from 0.5 medium, from 0.8 large. SMD is None when the pooled
    SD is 0 or undefined. Insufficient-data rule as for :func:`adverse_impact_ratio`, on
    counts only: a group with fewer than ``min_count`` scores, or compared with a reference
    group with fewer, is ``"insufficient_data"`` (numbers reported, no magnitude).
    """
    names, codes, ref = _groups(group, reference_group, min_count)
    values = _reals(scores, "scores", probability=False)
    if len(values) != len(codes):
        raise InvalidInputError(
            f"scores has {len(values)} values but group has {len(codes)}; "
            "they must have the same length",
            field="scores",
        )
    k = len(names)
    counts = np.bincount(codes, minlength=k)
    means = np.bincount(codes, weights=values, minlength=k) / counts
    squares = np.bincount(codes, weights=(values - means[codes]) ** 2, minlength=k)
    rows = []
    for i in range(k):
        dof = int(counts[i] + counts[ref] - 2)
        pooled = math.sqrt((squares[i] + squares[ref]) / dof) if dof > 0 else 0.0
        smd = float((means[i] - means[ref]) / pooled) if pooled > 0.0 else None
        enough = min(counts[i], counts[ref]) >= min_count
        status: SmdStatus = "reference" if i == ref else ("assessed" if enough else INSUFFICIENT)
        sd = math.sqrt(squares[i] / (counts[i] - 1)) if counts[i] > 1 else None
        shown = _magnitude(smd) if status == "assessed" else None
        rows.append(
            MeanDifferenceRow(names[i], int(counts[i]), float(means[i]), sd, smd, shown, status)
        )
    return StandardizedMeanDifferenceResult(reference_group, min_count, tuple(rows))
