"""Configuration of data drift: :class:`DriftConfig` and its per-feature :class:`FeatureOverride`.

The first step of the house pattern (configuration -> calculation -> result -> condition):
small, serialisable (``to_dict`` / ``from_dict``, unknown keys rejected) and fingerprinted,
the sha256 of its canonical JSON being stored with every result. What the settings mean (the
methods, effect floors, PSI and Jensen-Shannon thresholds, dataset levels and weights) is
defined in :mod:`creditops.monitoring.drift`, next to the judgement that applies them.

Elsewhere: results and the judgement in :mod:`creditops.monitoring.drift`, the two data-drift
modes in :mod:`creditops.monitoring.drift_exact` and :mod:`creditops.monitoring.drift_binned`,
prediction drift with its own configuration in :mod:`creditops.monitoring.prediction_drift`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeVar

from creditops.errors import ConfigError

__all__ = ["DriftConfig", "FeatureOverride"]

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
    """How data drift is measured and judged (see :mod:`creditops.monitoring.drift`)."""

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
