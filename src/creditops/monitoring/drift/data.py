"""Data drift of a model's inputs against its reference: configuration, results, judgement.

The check follows the house pattern: configuration (:class:`DriftConfig`: small,
serialisable, fingerprinted) -> calculation (exact mode on raw frames in ``exact.py``, binned
mode on the training-time reference profile in ``binned.py``; both measure each feature
with :func:`measure_numeric` / :func:`measure_categorical` here) -> result
(:class:`DriftResult`, :class:`FeatureDrift`) -> condition (:func:`finalise` judges every
feature and the dataset by the thresholds below).

**Per feature.** Numeric features get the two-sample KS test, the Wasserstein distance and
the PSI over the reference decile bins (frozen: the profile's ``edges``, or in exact mode the
same :func:`~creditops.features.profile.decile_edges` of the reference, never recomputed
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
A feature has **one verdict**, its ``level``, with a ``verdict`` sentence naming the test
and threshold behind it. A feature the method does not call drifted is ``ok``, whatever its
PSI: the PSI has no notion of sample size, and on a small window a large PSI is noise that
the test (which has one) rejects. A drifted feature is ``warning``, or ``critical`` when its
PSI is at or above ``psi_threshold`` (0.25). The PSI's own band (``warning`` from
``psi_warning``, 0.1) is reported in the sentence, not as a second verdict.

**Dataset.** With weights ``w`` (feature importance, default 1; features without a weight
count 0 when weights are given): ``drifted_share = sum(w * drifted) / sum(w)`` and
``drift_score = sum(w * min(1, psi / psi_threshold)) / sum(w)``, in [0, 1] and increasing in
every feature's PSI: 1 means every feature shifted by at least the critical PSI. The level
is the worst of the score's (``warning`` from ``warning_score`` 0.5, ``critical`` above
``critical_score`` 0.7), the share's (``warning`` from ``warning_share`` 0.2, ``critical``
above ``critical_share`` 0.3) and the features' (``critical`` when a feature with a weight
above 0 is critical): a summary never reads ``ok`` while a feature it weighs is critical.

**Categories.** Current categories missing from the reference are counted as unseen (rows
and the most frequent examples). A profile keeps only its top categories plus an ``other``
count; when that count is non-zero, current categories outside the list are pooled into
``other`` and cannot be told apart from unseen ones, so they are not counted as unseen.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from creditops.errors import ConfigError, DataError, InvalidInputError
from creditops.features.dataset import parse_numeric
from creditops.monitoring.conditions import Level, level_of, worst
from creditops.monitoring.drift import statistics as st

MISSING_BIN = "missing"
OTHER_BIN = "(other)"
MAX_UNSEEN_EXAMPLES = 5


FeatureType = Literal["numeric", "categorical"]
NUMERIC_METHODS = ("ks", "wasserstein", "psi")
CATEGORICAL_METHODS = ("chi2", "psi", "jensenshannon")
_T = TypeVar("_T")


def from_mapping(cls: type[_T], data: Mapping[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} must be a mapping; got {type(data).__name__}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} keys {unknown}; known keys are {sorted(known)}")
    return dict(data)


def canonical_sha256(payload: Mapping[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class FeatureOverride:
    """Per-feature settings; None keeps the configuration's value."""

    method: str | None = None
    effect_floor: float | None = None
    psi_warning: float | None = None
    psi_threshold: float | None = None
    js_threshold: float | None = None


@dataclass(frozen=True)
class Rule:
    method: str
    effect_floor: float
    psi_warning: float
    psi_threshold: float
    js_threshold: float


@dataclass(frozen=True)
class DriftConfig:
    """How data drift is measured and judged (see the module docstring)."""

    numeric_method: str = "ks"
    categorical_method: str = "chi2"
    alpha: float = 0.05
    correction: Literal["bh", "none"] = "bh"
    ks_effect_floor: float = 0.02
    wasserstein_effect_floor: float = 0.05
    chi2_effect_floor: float = 0.02
    psi_warning: float = 0.1
    psi_threshold: float = 0.25
    js_threshold: float = 0.1
    warning_score: float = 0.5
    critical_score: float = 0.7
    warning_share: float = 0.2
    critical_share: float = 0.3
    overrides: Mapping[str, FeatureOverride] = field(default_factory=dict)
    weights: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        require(
            self.numeric_method in NUMERIC_METHODS,
            f"numeric_method must be one of {NUMERIC_METHODS}",
        )
        require(
            self.categorical_method in CATEGORICAL_METHODS,
            f"categorical_method must be one of {CATEGORICAL_METHODS}",
        )
        require(0.0 < self.alpha < 1.0, f"alpha must be in (0, 1); got {self.alpha}")
        require(self.correction in ("bh", "none"), "correction must be 'bh' or 'none'")
        floors = (self.ks_effect_floor, self.wasserstein_effect_floor, self.chi2_effect_floor)
        require(min(floors) >= 0.0, "effect floors must be >= 0")
        require(
            0.0 <= self.warning_score <= self.critical_score <= 1.0,
            "need 0 <= warning_score <= critical_score <= 1",
        )
        require(
            0.0 <= self.warning_share <= self.critical_share <= 1.0,
            "need 0 <= warning_share <= critical_share <= 1",
        )
        for name, override in self.overrides.items():
            require(
                isinstance(override, FeatureOverride)
                and (override.effect_floor is None or override.effect_floor >= 0.0),
                f"override of {name!r} must be a FeatureOverride with effect_floor >= 0",
            )
            self._check_rule(self._merge(override), name)
        self._check_rule(self._merge(FeatureOverride()), "defaults")
        if self.weights is not None:
            values = list(self.weights.values())
            require(
                all(math.isfinite(w) and w >= 0 for w in values), "weights must be finite and >= 0"
            )
            require(sum(values) > 0, "weights must not all be 0")

    def _merge(self, o: FeatureOverride) -> Rule:
        return Rule(
            method=o.method or "",
            effect_floor=-1.0 if o.effect_floor is None else o.effect_floor,
            psi_warning=self.psi_warning if o.psi_warning is None else o.psi_warning,
            psi_threshold=self.psi_threshold if o.psi_threshold is None else o.psi_threshold,
            js_threshold=self.js_threshold if o.js_threshold is None else o.js_threshold,
        )

    @staticmethod
    def _check_rule(rule: Rule, name: str) -> None:
        require(
            rule.method in ("", *NUMERIC_METHODS, *CATEGORICAL_METHODS),
            f"{name}: unknown method {rule.method!r}",
        )
        require(
            0.0 < rule.psi_warning <= rule.psi_threshold,
            f"{name}: need 0 < psi_warning <= psi_threshold",
        )
        require(rule.js_threshold > 0, f"{name}: js_threshold must be > 0")

    def rule(self, feature: str, kind: FeatureType) -> Rule:
        """The effective method and thresholds of one feature."""
        base = self._merge(self.overrides.get(feature, FeatureOverride()))
        method = base.method or (
            self.numeric_method if kind == "numeric" else self.categorical_method
        )
        allowed = NUMERIC_METHODS if kind == "numeric" else CATEGORICAL_METHODS
        if method not in allowed:
            raise ConfigError(
                f"method {method!r} does not apply to {kind} feature {feature!r}; "
                f"use one of {allowed}"
            )
        floor = base.effect_floor
        if floor < 0:
            floor = {
                "ks": self.ks_effect_floor,
                "wasserstein": self.wasserstein_effect_floor,
                "chi2": self.chi2_effect_floor,
            }.get(method, 0.0)
        return Rule(method, floor, base.psi_warning, base.psi_threshold, base.js_threshold)

    def weight(self, feature: str) -> float:
        return 1.0 if self.weights is None else float(self.weights.get(feature, 0.0))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["overrides"] = {
            name: {k: v for k, v in asdict(o).items() if v is not None}
            for name, o in sorted(self.overrides.items())
        }
        out["weights"] = None if self.weights is None else dict(sorted(self.weights.items()))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftConfig:
        values = from_mapping(cls, data, "drift config")
        overrides = values.get("overrides") or {}
        if not isinstance(overrides, Mapping):
            raise ConfigError("drift config 'overrides' must map feature names to settings")
        values["overrides"] = {
            str(name): FeatureOverride(**from_mapping(FeatureOverride, o, f"override of {name!r}"))
            for name, o in overrides.items()
        }
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"invalid drift config: {exc}") from None

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of :meth:`to_dict`: stored with every result."""
        return canonical_sha256(self.to_dict())


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class BinShare:
    """Share of the reference and current rows in one bin (for plots)."""

    bin: str
    reference: float
    current: float


@dataclass(frozen=True)
class FeatureDrift:
    """The drift of one feature. ``statistic`` and ``effect_size`` are the method's:

    ``ks``: D and D; ``wasserstein``: W / std and W / std; ``chi2``: Pearson's chi-square and
    the total variation distance; ``psi``: PSI and PSI; ``jensenshannon``: JS and JS.
    ``p_value`` is always the feature's test (KS or chi-square) when it could run.
    ``n_reference`` / ``n_current`` count the non-missing values.
    """

    feature: str
    type: FeatureType
    method: str
    statistic: float | None
    p_value: float | None
    p_value_adjusted: float | None
    effect_size: float | None
    threshold: float
    drifted: bool
    level: Level
    verdict: str
    psi: float
    js: float | None
    ks_statistic: float | None
    wasserstein: float | None
    n_reference: int
    n_current: int
    missing_share_reference: float
    missing_share_current: float
    unseen_count: int
    unseen_examples: tuple[str, ...]
    bins: tuple[BinShare, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["unseen_examples"] = list(self.unseen_examples)
        out["bins"] = [asdict(b) for b in self.bins]
        return out


@dataclass(frozen=True)
class DriftResult:
    mode: Literal["exact", "binned"]
    features: tuple[FeatureDrift, ...]
    n_drifted: int
    drifted_share: float
    drift_score: float
    level: Level
    level_by_score: Level
    level_by_share: Level
    level_by_features: Level
    config_fingerprint: str
    n_reference: int
    n_current: int

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def feature(self, name: str) -> FeatureDrift:
        for item in self.features:
            if item.feature == name:
                return item
        raise InvalidInputError(f"no drift result for feature {name!r}", field="feature")

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["features"] = [f.to_dict() for f in self.features]
        return out


# --------------------------------------------------------------------------- per feature


@dataclass(frozen=True)
class Measured:
    """Everything computed for one feature before the dataset-level correction."""

    feature: str
    kind: FeatureType
    rule: Rule
    psi: float
    bins: tuple[BinShare, ...]
    counts: tuple[int, int, int, int]  # n_reference, n_current, missing_ref, missing_cur
    comparison: st.NumericComparison | None = None
    std: float = 0.0
    chi2: tuple[float, float] | None = None
    tvd: float | None = None
    js: float | None = None
    unseen: tuple[int, tuple[str, ...]] = (0, ())

    @property
    def p_value(self) -> float | None:
        if self.comparison is not None:
            return self.comparison.ks_p_value
        return None if self.chi2 is None else self.chi2[1]

    def statistic_and_effect(self) -> tuple[float | None, float | None]:
        method, c = self.rule.method, self.comparison
        if method == "psi":
            return self.psi, self.psi
        if method == "jensenshannon":
            return self.js, self.js
        if method == "chi2":
            return (None, None) if self.chi2 is None else (self.chi2[0], self.tvd)
        if c is None:
            return None, None
        if method == "ks":
            return c.ks_statistic, c.ks_statistic
        normed = c.wasserstein / self.std if self.std > 0 else c.wasserstein
        return normed, normed


def bin_labels(edges: Iterable[float]) -> list[str]:
    points = [f"{e:.6g}" for e in edges]
    if not points:
        return ["all"]
    inner = [f"({a}, {b}]" for a, b in itertools.pairwise(points)]
    return [f"<= {points[0]}", *inner, f"> {points[-1]}"]


def bin_shares(labels: list[str], ref: npt.ArrayLike, cur: npt.ArrayLike) -> tuple[BinShare, ...]:
    p, q = st.shares(ref), st.shares(cur)
    return tuple(BinShare(b, float(x), float(y)) for b, x, y in zip(labels, p, q, strict=True))


@dataclass(frozen=True)
class NumericBins:
    """A numeric feature's frozen PSI bins (inner ``edges``) and the reference's and the
    current window's (counts per bin, number missing) in them."""

    edges: Iterable[float]
    reference: tuple[st.IntArray, int]
    current: tuple[st.IntArray, int]


def measure_numeric(
    feature: str,
    rule: Rule,
    binned: NumericBins,
    comparison: st.NumericComparison | None,
    std: float,
) -> Measured:
    """Measure a numeric feature from its bins and, when both sides have values, its
    two-sample comparison; ``std`` is the reference's (for Wasserstein / std)."""
    ref, cur = binned.reference, binned.current
    ref_vec, cur_vec = np.append(ref[0], ref[1]), np.append(cur[0], cur[1])
    return Measured(
        feature=feature,
        kind="numeric",
        rule=rule,
        psi=st.psi(ref_vec, cur_vec),
        bins=bin_shares([*bin_labels(binned.edges), MISSING_BIN], ref_vec, cur_vec),
        counts=(int(ref[0].sum()), int(cur[0].sum()), int(ref[1]), int(cur[1])),
        comparison=comparison,
        std=std,
    )


def measure_categorical(
    feature: str,
    rule: Rule,
    ref: tuple[Mapping[str, int], int, int],  # counts, other, missing
    cur: tuple[Mapping[str, int], int],  # counts, missing
) -> Measured:
    ref_counts, other, ref_missing = ref
    cur_counts, cur_missing = cur
    names = sorted(ref_counts, key=lambda k: (-ref_counts[k], k))
    unseen = sorted(
        ((k, v) for k, v in cur_counts.items() if k not in ref_counts),
        key=lambda kv: (-kv[1], kv[0]),
    )
    ref_vec = [int(ref_counts[k]) for k in names]
    cur_vec = [int(cur_counts.get(k, 0)) for k in names]
    if other > 0:  # a truncated profile: categories outside its list are pooled
        names.append(OTHER_BIN)
        ref_vec.append(int(other))
        cur_vec.append(sum(v for _, v in unseen))
        unseen = []
    else:
        names += [k for k, _ in unseen]
        ref_vec += [0] * len(unseen)
        cur_vec += [v for _, v in unseen]
    n_ref, n_cur = sum(ref_vec), sum(cur_vec)
    names.append(MISSING_BIN)
    ref_vec.append(int(ref_missing))
    cur_vec.append(int(cur_missing))
    testable = n_ref + ref_missing > 0 and n_cur + cur_missing > 0
    return Measured(
        feature=feature,
        kind="categorical",
        rule=rule,
        psi=st.psi(ref_vec, cur_vec),
        bins=bin_shares(names, ref_vec, cur_vec),
        counts=(n_ref, n_cur, int(ref_missing), int(cur_missing)),
        chi2=st.chi2_homogeneity(ref_vec, cur_vec) if testable else None,
        tvd=st.total_variation(ref_vec, cur_vec) if testable else None,
        js=st.jensen_shannon(ref_vec, cur_vec) if testable else None,
        unseen=(sum(v for _, v in unseen), tuple(k for k, _ in unseen[:MAX_UNSEEN_EXAMPLES])),
    )


_EFFECT_NAME = {
    "ks": "KS D",
    "wasserstein": "Wasserstein/std",
    "chi2": "total variation",
    "psi": "PSI",
    "jensenshannon": "JS distance",
}


def _judge(m: Measured, p_adjusted: float | None, config: DriftConfig) -> FeatureDrift:
    rule = m.rule
    statistic, effect = m.statistic_and_effect()
    if rule.method in ("psi", "jensenshannon"):
        threshold = rule.psi_threshold if rule.method == "psi" else rule.js_threshold
        drifted = effect is not None and effect >= threshold
    else:
        threshold = rule.effect_floor
        drifted = (
            p_adjusted is not None
            and effect is not None
            and p_adjusted < config.alpha
            and effect >= threshold
        )
    level: Level = "ok"
    if drifted:
        level = "critical" if m.psi >= rule.psi_threshold else "warning"
    n_ref, n_cur, miss_ref, miss_cur = m.counts
    c = m.comparison
    return FeatureDrift(
        feature=m.feature,
        type=m.kind,
        method=rule.method,
        statistic=statistic,
        p_value=m.p_value,
        p_value_adjusted=p_adjusted,
        effect_size=effect,
        threshold=threshold,
        drifted=bool(drifted),
        level=level,
        verdict=_verdict(m, level, p_adjusted, config.alpha),
        psi=m.psi,
        js=m.js,
        ks_statistic=None if c is None else c.ks_statistic,
        wasserstein=None if c is None else c.wasserstein,
        n_reference=n_ref,
        n_current=n_cur,
        missing_share_reference=miss_ref / (n_ref + miss_ref) if n_ref + miss_ref else 0.0,
        missing_share_current=miss_cur / (n_cur + miss_cur) if n_cur + miss_cur else 0.0,
        unseen_count=m.unseen[0],
        unseen_examples=m.unseen[1],
        bins=m.bins,
    )


def _verdict(m: Measured, level: Level, p_adjusted: float | None, alpha: float) -> str:
    """One sentence: the level, the test and the thresholds that produced it."""
    rule = m.rule
    _, effect = m.statistic_and_effect()
    threshold = {"psi": rule.psi_threshold, "jensenshannon": rule.js_threshold}.get(
        rule.method, rule.effect_floor
    )
    name = _EFFECT_NAME[rule.method]
    if effect is None:
        return f"{level}: {name} could not be computed (no values on one side)"
    if rule.method in ("psi", "jensenshannon"):
        reason = f"{name} {effect:.3f} {'>=' if effect >= threshold else '<'} {threshold:g}"
    elif p_adjusted is None:
        reason = "no test possible"
    else:
        significant = p_adjusted < alpha
        reason = (
            f"adjusted p {p_adjusted:.3g} {'<' if significant else '>='} {alpha:g}, "
            f"{name} {effect:.3f} {'>=' if effect >= threshold else '<'} floor {threshold:g}"
        )
    if level == "ok":
        band = " (PSI not judged without a drift by the test)" if m.psi >= rule.psi_warning else ""
        return f"ok: {reason}; PSI {m.psi:.3f}{band}"
    cmp = ">=" if m.psi >= rule.psi_threshold else "<"
    return f"{level}: {reason}; PSI {m.psi:.3f} {cmp} {rule.psi_threshold:g}"


def finalise(
    mode: Literal["exact", "binned"],
    measured: list[Measured],
    config: DriftConfig,
    n_reference: int,
    n_current: int,
) -> DriftResult:
    if not measured:
        raise InvalidInputError("no features to check for drift", field="features")
    raw = [m.p_value for m in measured]
    tested = [i for i, p in enumerate(raw) if p is not None]
    adjusted: list[float | None] = list(raw)
    if config.correction == "bh" and tested:
        corrected = st.benjamini_hochberg([float(raw[i]) for i in tested])  # type: ignore[arg-type]
        for i, value in zip(tested, corrected, strict=True):
            adjusted[i] = float(value)
    results = tuple(_judge(m, p, config) for m, p in zip(measured, adjusted, strict=True))
    weights = np.asarray([config.weight(r.feature) for r in results], dtype=np.float64)
    if weights.sum() <= 0:
        raise ConfigError("the weights of the checked features are all 0")
    drifted = np.asarray([r.drifted for r in results], dtype=np.float64)
    terms = np.asarray([min(1.0, m.psi / m.rule.psi_threshold) for m in measured])
    share = float(np.dot(weights, drifted) / weights.sum())
    score = float(np.dot(weights, terms) / weights.sum())
    by_score = level_of(score, config.warning_score, config.critical_score)
    by_share = level_of(share, config.warning_share, config.critical_share)
    critical_weighted = any(
        r.level == "critical" and w > 0 for r, w in zip(results, weights, strict=True)
    )
    by_features: Level = "critical" if critical_weighted else "ok"
    return DriftResult(
        mode=mode,
        features=results,
        n_drifted=int(drifted.sum()),
        drifted_share=share,
        drift_score=score,
        level=worst(by_score, by_share, by_features),
        level_by_score=by_score,
        level_by_share=by_share,
        level_by_features=by_features,
        config_fingerprint=config.fingerprint(),
        n_reference=n_reference,
        n_current=n_current,
    )


# --------------------------------------------------------------------------- input frames


def check_frame(frame: pd.DataFrame, feature_types: Mapping[str, str], which: str) -> None:
    bad = sorted(k for k, v in feature_types.items() if v not in ("numeric", "categorical"))
    if bad:
        raise InvalidInputError(
            f"feature types must be 'numeric' or 'categorical'; bad: {bad}", field="feature_types"
        )
    missing = [name for name in feature_types if name not in frame.columns]
    if missing:
        raise DataError(
            f"the {which} data lacks feature columns", count=len(missing), examples=missing
        )


def numeric_values(frame: pd.DataFrame, name: str, which: str) -> npt.NDArray[np.float64]:
    """A numeric column as floats (NaN = missing). Text (a CSV read as strings, JSON
    inputs) is parsed as in training; values that are not numbers are an error."""
    column = frame[name]
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    numbers, bad = parse_numeric(column)
    if bool(bad.any()):
        examples = column[bad].head(5).tolist()
        raise DataError(
            f"{which} column {name!r} has values that are not numbers",
            field=name,
            count=int(bad.sum()),
            examples=examples,
        )
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)
