"""The validation gate: configurable thresholds that decide whether a version may ship.

A gate profile (YAML) sets minimums and maximums for test metrics, fairness minimums per
protected attribute, whether the monotonicity proof is required, and the champion /
challenger rule. Every threshold becomes one :class:`GateCheck`; the gate passes only when
every check passes. A minimum passes when ``value >= threshold``, a maximum when
``value <= threshold``; a metric that could not be computed (None) fails its check.

Champion / challenger: with a ``production`` version present, both are scored on the
candidate's test split and compared with the paired DeLong test. The candidate fails when
its AUC is significantly worse than the champion's by more than ``tolerance``: a one-sided
test of ``H0: auc_candidate - auc_champion >= -tolerance`` rejected at level ``alpha``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy.stats import norm

from creditops.errors import ConfigError

FAIRNESS_METRICS = (
    "demographic_parity_ratio",
    "equal_opportunity_ratio",
    "disparate_impact_ratio",
    "fairness_score",
)
BUILTIN_PROFILES = ("default", "seed")


def _split_reasons(entries: object, where: str) -> tuple[object, dict[str, str]]:
    """``{metric: number | {value: number, reason: text}}`` -> numbers and reasons.

    Anything else is returned unchanged for pydantic to reject with its own message.
    """
    if not isinstance(entries, dict):
        return entries, {}
    values: dict[str, object] = {}
    reasons: dict[str, str] = {}
    for metric, entry in entries.items():
        if not isinstance(entry, dict):
            values[metric] = entry
            continue
        unknown = sorted(set(entry) - {"value", "reason"})
        if unknown or "value" not in entry:
            raise ValueError(
                f"{where}.{metric}: write a number, or {{value: number, reason: text}}; "
                f"got keys {sorted(entry)}"
            )
        reason = entry.get("reason")
        if reason is not None:
            if not isinstance(reason, str) or not reason.strip():
                raise ValueError(f"{where}.{metric}.reason must be non-empty text")
            reasons[str(metric)] = " ".join(reason.split())
        values[metric] = entry["value"]
    return values, reasons


class MetricThresholds(BaseModel):
    """Minimums and maximums of test metrics. An entry is a number, or ``{value, reason}``
    where the reason (why this threshold, e.g. why it is lower than usual) is shown in the
    validation report; ``reasons`` holds them as ``min.<metric>`` / ``max.<metric>``."""

    model_config = ConfigDict(extra="forbid")

    min: dict[str, float] = Field(default_factory=dict)
    max: dict[str, float] = Field(default_factory=dict)
    reasons: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _inline_reasons(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        reasons = dict(data.get("reasons") or {})
        for kind in ("min", "max"):
            if kind in data:
                data[kind], found = _split_reasons(data[kind], f"metrics.{kind}")
                reasons.update({f"{kind}.{metric}": text for metric, text in found.items()})
        data["reasons"] = reasons
        return data

    def reason_for(self, kind: str, metric: str) -> str | None:
        return self.reasons.get(f"{kind}.{metric}")


class FairnessThresholds(BaseModel):
    """Fairness minimums: ``default`` for every protected attribute, ``attributes`` to
    override them per attribute. Entries are numbers or ``{value, reason}``; an attribute's
    overrides may also carry one ``reason`` for all of them. ``reasons`` holds them as
    ``default.<metric>`` / ``<attribute>.<metric>``."""

    model_config = ConfigDict(extra="forbid")

    default: dict[str, float] = Field(default_factory=dict)
    attributes: dict[str, dict[str, float]] = Field(default_factory=dict)
    reasons: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _inline_reasons(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        reasons = dict(data.get("reasons") or {})
        if "default" in data:
            data["default"], found = _split_reasons(data["default"], "fairness.default")
            reasons.update({f"default.{metric}": text for metric, text in found.items()})
        attributes = data.get("attributes")
        if isinstance(attributes, dict):
            split: dict[str, object] = {}
            for attribute, entries in attributes.items():
                shared = None
                if isinstance(entries, dict) and "reason" in entries:
                    entries = dict(entries)
                    shared = entries.pop("reason")
                    if not isinstance(shared, str) or not shared.strip():
                        raise ValueError(f"fairness.attributes.{attribute}.reason must be text")
                where = f"fairness.attributes.{attribute}"
                values, found = _split_reasons(entries, where)
                split[attribute] = values
                for metric in values if isinstance(values, dict) else {}:
                    text = found.get(metric) or (" ".join(shared.split()) if shared else None)
                    if text:
                        reasons[f"{attribute}.{metric}"] = text
            data["attributes"] = split
        data["reasons"] = reasons
        return data

    def for_attribute(self, attribute: str) -> dict[str, float]:
        return {**self.default, **self.attributes.get(attribute, {})}

    def reason_for(self, attribute: str, metric: str) -> str | None:
        if metric in self.attributes.get(attribute, {}):
            return self.reasons.get(f"{attribute}.{metric}")
        return self.reasons.get(f"default.{metric}")

    def default_replaced(self, attribute: str, metric: str) -> float | None:
        """The default minimum an attribute's own threshold replaces (None if it has none)."""
        if metric in self.attributes.get(attribute, {}):
            return self.default.get(metric)
        return None


class ChampionRule(BaseModel):
    """How a candidate must compare with the production version on the same rows.

    ``non_inferior`` (default): fails only when its AUC is significantly worse than the
    champion's by more than ``tolerance``. ``improve``: must beat the champion's AUC by
    more than ``min_gain``; with ``significant`` the gain must also be significant (one-sided
    paired DeLong test at ``alpha``), without it the point estimate decides.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    mode: Literal["non_inferior", "improve"] = "non_inferior"
    tolerance: float = Field(default=0.0, ge=0.0, le=1.0)
    min_gain: float = Field(default=0.0, ge=0.0, le=1.0)
    significant: bool = False
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)


class DriftRule(BaseModel):
    """Drift conditions on the candidate's own test data against its training reference:
    no feature's PSI above ``max_psi``."""

    model_config = ConfigDict(extra="forbid")

    max_psi: float = Field(default=0.25, gt=0.0)


class GateProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The name becomes part of a report's file name: the model-name pattern, no path.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    description: str = ""
    metrics: MetricThresholds = Field(default_factory=MetricThresholds)
    fairness: FairnessThresholds = Field(default_factory=FairnessThresholds)
    require_monotonicity: bool = True
    champion: ChampionRule = Field(default_factory=ChampionRule)
    drift: DriftRule | None = None


class GateCheck(BaseModel):
    """One threshold applied. ``reason`` is the profile's stated reason for the threshold;
    ``default_threshold`` the profile default an attribute's own threshold replaced."""

    metric: str
    value: float | None
    threshold: float
    kind: Literal["min", "max"]
    passed: bool
    category: Literal["performance", "fairness", "monotonicity", "champion", "drift"]
    attribute: str | None = None
    reason: str | None = None
    default_threshold: float | None = None

    @property
    def is_relaxed(self) -> bool:
        """Looser than the default it replaced (a lower minimum or a higher maximum)."""
        if self.default_threshold is None:
            return False
        if self.kind == "min":
            return self.threshold < self.default_threshold
        return self.threshold > self.default_threshold


class GateResult(BaseModel):
    profile: str
    passed: bool
    checks: list[GateCheck]
    champion: dict[str, Any] | None = None

    @property
    def failed(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]


def _check(  # noqa: PLR0913 - the fields of one GateCheck
    metric: str,
    value: float | None,
    threshold: float,
    kind: Literal["min", "max"],
    category: Literal["performance", "fairness", "monotonicity", "champion", "drift"],
    attribute: str | None = None,
) -> GateCheck:
    if value is None or value != value:  # None or NaN
        passed = False
        value = None
    else:
        passed = value >= threshold if kind == "min" else value <= threshold
    return GateCheck(
        metric=metric,
        value=value,
        threshold=threshold,
        kind=kind,
        passed=passed,
        category=category,
        attribute=attribute,
    )


def champion_comparison(
    auc_candidate: float, auc_champion: float, se: float, rule: ChampionRule
) -> dict[str, Any]:
    """The candidate's AUC against the champion's (see :class:`ChampionRule`).

    non_inferior: ``p = P(Z <= (d + tolerance) / se)``, one-sided test of ``H0: d >=
    -tolerance``; passes when ``p >= alpha``. improve: ``p = P(Z >= (d - min_gain) / se)``,
    one-sided test of ``H0: d <= min_gain``; passes when ``d > min_gain`` and, if
    ``significant``, ``p < alpha``.
    """
    difference = auc_candidate - auc_champion
    if rule.mode == "improve":
        shift = difference - rule.min_gain
        p_value = float(norm.sf(shift / se)) if se > 0 else (0.0 if shift > 0 else 1.0)
        passed = shift > 0 and (p_value < rule.alpha or not rule.significant)
    else:
        shift = difference + rule.tolerance
        p_value = float(norm.cdf(shift / se)) if se > 0 else (0.0 if shift < 0 else 1.0)
        passed = p_value >= rule.alpha
    return {
        "mode": rule.mode,
        "auc_candidate": auc_candidate,
        "auc_champion": auc_champion,
        "difference": difference,
        "se": se,
        "tolerance": rule.tolerance,
        "min_gain": rule.min_gain,
        "significant": rule.significant,
        "alpha": rule.alpha,
        "p_value": p_value,
        "passed": passed,
    }


def _champion_checks(champion: dict[str, Any]) -> list[GateCheck]:
    if champion.get("mode") == "improve":
        checks = [
            _check(
                "champion_auc_gain", champion["difference"], champion["min_gain"], "min", "champion"
            )
        ]
        checks[0].passed = champion["difference"] > champion["min_gain"]
        if champion["significant"]:
            checks.append(
                _check(
                    "champion_gain_p_value",
                    champion["p_value"],
                    champion["alpha"],
                    "max",
                    "champion",
                )
            )
            checks[-1].passed = champion["p_value"] < champion["alpha"]
        return checks
    return [_check("champion_p_value", champion["p_value"], champion["alpha"], "min", "champion")]


def evaluate_gate(  # noqa: PLR0913 - what a candidate is judged on, one argument per part
    profile: GateProfile,
    metrics: dict[str, float],
    fairness: list[dict[str, Any]],
    monotonicity: list[dict[str, Any]],
    champion: dict[str, Any] | None = None,
    drift_psi: dict[str, float] | None = None,
) -> GateResult:
    """Apply every threshold of ``profile``; ``drift_psi`` is the PSI per feature of the
    candidate's test data against its reference, for the profile's drift rule."""
    checks: list[GateCheck] = []
    limits: tuple[tuple[Literal["min", "max"], dict[str, float]], ...] = (
        ("min", profile.metrics.min),
        ("max", profile.metrics.max),
    )
    for kind, thresholds in limits:
        for name, threshold in thresholds.items():
            check = _check(name, metrics.get(name), threshold, kind, "performance")
            check.reason = profile.metrics.reason_for(kind, name)
            checks.append(check)
    rules = profile.fairness
    for result in fairness:
        attribute = str(result["attribute"])
        for name, threshold in rules.for_attribute(attribute).items():
            check = _check(name, result.get(name), threshold, "min", "fairness", attribute)
            check.reason = rules.reason_for(attribute, name)
            check.default_threshold = rules.default_replaced(attribute, name)
            checks.append(check)
    if profile.require_monotonicity:
        for item in monotonicity:
            checks.append(
                _check(
                    "monotonicity_violations",
                    float(item["violations"]),
                    0.0,
                    "max",
                    "monotonicity",
                    str(item["feature"]),
                )
            )
    if champion is not None:
        checks += _champion_checks(champion)
    if profile.drift is not None and drift_psi is not None:
        for feature, psi in sorted(drift_psi.items()):
            checks.append(
                _check("test_data_psi", psi, profile.drift.max_psi, "max", "drift", feature)
            )
    return GateResult(
        profile=profile.name,
        passed=all(c.passed for c in checks),
        checks=checks,
        champion=champion,
    )


def load_gate_profile(ref: str) -> GateProfile:
    """A profile from a YAML path, or a built-in one by name (``default``, ``seed``)."""
    if ref in BUILTIN_PROFILES:
        text = resources.files("creditops.modeling").joinpath(f"gates/{ref}.yaml").read_text()
        source = f"built-in profile {ref!r}"
    else:
        path = Path(ref)
        if not path.is_file():
            raise ConfigError(
                f"gate profile {ref!r} is neither a file nor a built-in profile "
                f"({', '.join(BUILTIN_PROFILES)})",
                field="profile",
            )
        text = path.read_text(encoding="utf-8")
        source = str(path)
    try:
        data = yaml.safe_load(text)
        return GateProfile.model_validate(data)
    except yaml.YAMLError:
        raise ConfigError(f"{source}: not valid YAML", field="profile") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source}: {where}: {first['msg']}", field="profile") from None
