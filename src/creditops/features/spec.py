"""The data contract: a YAML spec that names the target, the features and their types.

A spec is the one thing a user writes to train on a new file. It is stored inside every
model bundle, so serving, monitoring and reason codes read the same contract that
training read.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from creditops.errors import SpecError

FeatureType = Literal["numeric", "categorical"]
Direction = Literal["increasing", "decreasing"]
Scalar = str | int | float | bool

DEFAULT_AGE_BANDS: tuple[float, ...] = (25.0, 40.0, 60.0)
_FAMILY_RE = re.compile(r"^(?P<stem>.*?)[_]?(?P<num>\d+)$")


class TargetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str
    positive: Scalar = Field(description="The target value that means default (bad).")


class ReasonCode(BaseModel):
    """One adverse-action reason: a code, its text, and the features it covers."""

    model_config = ConfigDict(extra="forbid")

    code: str
    text: str
    features: list[str]


class ReasonCatalogue(BaseModel):
    """Versioned map from features to reason codes; related features share one code."""

    model_config = ConfigDict(extra="forbid")

    version: str = "default"
    codes: list[ReasonCode] = Field(default_factory=list)

    def code_for(self, feature: str) -> ReasonCode | None:
        for code in self.codes:
            if feature in code.features:
                return code
        return None


class ScalingSpec(BaseModel):
    """Score points: ``points = offset + factor * ln(good:bad odds)``."""

    model_config = ConfigDict(extra="forbid")

    base_score: float = 600.0
    base_odds: float = Field(default=50.0, gt=0)
    pdo: float = Field(default=20.0, gt=0)
    min_score: float | None = 300.0
    max_score: float | None = 850.0

    @model_validator(mode="after")
    def _check_range(self) -> ScalingSpec:
        if (
            self.min_score is not None
            and self.max_score is not None
            and self.min_score >= self.max_score
        ):
            raise ValueError("min_score must be below max_score")
        return self


class MissingPolicy(BaseModel):
    """Which model inputs may be missing, and what happens when one that may not is.

    LightGBM scores a missing number as 0 when training saw no missing value for it, so a
    missing credit limit would read as "credit limit is low": a feature not in ``allowed``
    is never scored silently. ``on_missing: refuse`` rejects it (HTTP 422 naming the field;
    a batch file with such rows is refused naming the field and the rows); ``review``
    decides the applicant ``review`` with the policy's own reason first. ``allowed`` left
    out is resolved at training: every categorical input (a missing or unseen category
    has its own, learned, branch) and every numeric input with missing values in the
    training rows. The resolved list is stored in the model's bundle.
    """

    model_config = ConfigDict(extra="forbid")

    allowed: list[str] | None = None
    on_missing: Literal["refuse", "review"] = "refuse"
    reason_code: str = Field(default="MIS01", min_length=1, max_length=16)
    reason_text: str = Field(default="Required information is missing", min_length=1)


class ModelCardSpec(BaseModel):
    """What a model validator reads first: why the model exists and where it must not be
    used (``docs/evidence.md``). Free text, documentation only; no model input depends on it."""

    model_config = ConfigDict(extra="forbid")

    purpose: str | None = None
    intended_use: str | None = None
    out_of_scope: list[str] = Field(default_factory=list)
    target_definition: str | None = None  # e.g. ever 90+ days past due within 12 months
    limitations: list[str] = Field(default_factory=list)
    owner: str | None = None
    # the group each protected attribute's approval rates are compared with (by raw value,
    # or band label for banded attributes); unnamed: the largest group
    reference_groups: dict[str, str] = Field(default_factory=dict)


class Spec(BaseModel):
    """The data contract. Unknown top-level keys are allowed and ignored."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    target: TargetSpec
    id_column: str | None = None
    split_column: str | None = None
    features: dict[str, FeatureType]
    protected: list[str] = Field(default_factory=list)
    protected_bands: dict[str, list[float]] = Field(default_factory=dict)
    exclude_from_model: list[str] = Field(default_factory=list)
    monotone: dict[str, Direction] = Field(default_factory=dict)
    reasons: ReasonCatalogue | None = None
    scaling: ScalingSpec = Field(default_factory=ScalingSpec)
    max_dirty_share: float | None = Field(default=None, ge=0, le=1)
    lightgbm: dict[str, Any] = Field(default_factory=dict)
    # the amount at risk per application (a numeric feature), for expected-loss metrics
    exposure_column: str | None = None
    # display names of categorical values, e.g. {sex: {1: male, 2: female}}: reports show
    # them beside the raw value; they change no model input
    value_labels: dict[str, dict[str, str]] = Field(default_factory=dict)
    missing: MissingPolicy = Field(default_factory=MissingPolicy)
    model_card: ModelCardSpec | None = None

    @field_validator("features")
    @classmethod
    def _non_empty(cls, value: dict[str, FeatureType]) -> dict[str, FeatureType]:
        if not value:
            raise ValueError("at least one feature is required")
        return value

    @field_validator("value_labels", mode="before")
    @classmethod
    def _canonical_value_keys(cls, value: object) -> object:
        """Keys as the encoder writes categories (``1``, ``1.0`` and ``"1"`` are one value);
        labels must be non-empty text."""
        if not isinstance(value, dict):
            return value  # pydantic reports the type error
        out: dict[str, object] = {}
        for feature, labels in value.items():
            if not isinstance(labels, dict):
                raise ValueError(
                    f"value_labels.{feature} must map values to labels, "
                    f"e.g. {{1: male, 2: female}}; got {type(labels).__name__}"
                )
            canonical: dict[str, str] = {}
            for raw, label in labels.items():
                if not isinstance(label, str | int | float) or isinstance(label, bool):
                    raise ValueError(
                        f"value_labels.{feature}.{raw}: a label must be text; got {label!r}"
                    )
                if not str(label).strip():
                    raise ValueError(f"value_labels.{feature}.{raw}: the label is empty")
                key = value_key(raw)
                if key in canonical:
                    raise ValueError(f"value_labels.{feature} gives value {key!r} twice")
                canonical[key] = str(label).strip()
            out[str(feature)] = canonical
        return out

    @model_validator(mode="after")
    def _check_references(self) -> Spec:
        known = set(self.features)
        if self.target.column in known:
            raise ValueError(f"the target column {self.target.column!r} is also a feature")
        for key, names in (
            ("protected", self.protected),
            ("exclude_from_model", self.exclude_from_model),
            ("monotone", list(self.monotone)),
            ("missing.allowed", self.missing.allowed or []),
        ):
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ValueError(f"{key} names columns that are not features: {unknown}")
        self._check_monotone()
        if (
            self.exposure_column is not None
            and self.features.get(self.exposure_column) != "numeric"
        ):
            raise ValueError(f"exposure_column {self.exposure_column!r} must be a numeric feature")
        if not self.model_features:
            raise ValueError("every feature is excluded from the model")
        for name in self.value_labels:
            if self.features.get(name) != "categorical":
                kind = "not a feature" if name not in known else "numeric"
                raise ValueError(
                    f"value_labels names {name!r}, which is {kind}: labels are for the "
                    "values of categorical features"
                )
        for code in self.reasons.codes if self.reasons is not None else ():
            unknown = [f for f in code.features if f not in known]
            if unknown:
                raise ValueError(f"reason {code.code!r} names unknown features {unknown}")
        return self

    def _check_monotone(self) -> None:
        """A monotone constraint needs a numeric model input."""
        for name in self.monotone:
            if self.features[name] != "numeric":
                raise ValueError(f"monotone feature {name!r} must be numeric")
            if name in self.exclude_from_model:
                raise ValueError(f"monotone feature {name!r} is excluded from the model")

    @property
    def model_features(self) -> list[str]:
        """Features the model uses, in spec order."""
        return [f for f in self.features if f not in self.exclude_from_model]

    def may_be_missing(self, name: str) -> bool:
        """True when ``name`` may be missing: not a model input, listed in
        ``missing.allowed``, or the list was never resolved (a bundle from before the
        policy existed keeps its old behaviour)."""
        allowed = self.missing.allowed
        return allowed is None or name not in self.model_features or name in allowed

    def with_missing_resolved(self, frame: Any) -> Spec:
        """This spec with ``missing.allowed`` resolved from the training rows ``frame``
        (a pandas frame) when the spec leaves it out; see :class:`MissingPolicy`."""
        if self.missing.allowed is not None:
            return self
        allowed = [
            n
            for n in self.model_features
            if self.features[n] == "categorical" or bool(frame[n].isna().any())
        ]
        policy = self.missing.model_copy(update={"allowed": allowed})
        return self.model_copy(update={"missing": policy})

    @property
    def categorical_features(self) -> list[str]:
        return [f for f, t in self.features.items() if t == "categorical"]

    def bands_for(self, column: str) -> tuple[float, ...] | None:
        """Band edges for a numeric protected attribute (age gets sensible defaults)."""
        if column in self.protected_bands:
            return tuple(self.protected_bands[column])
        if self.features.get(column, "numeric") == "categorical":
            return None
        return DEFAULT_AGE_BANDS

    def reason_catalogue(self) -> ReasonCatalogue:
        """The spec's catalogue, completed with default codes for uncovered features.

        Defaults group features whose names differ only by a trailing number
        (``bill_amt1`` .. ``bill_amt6``) into one family, so they take one reason slot.
        """
        catalogue = self.reasons or ReasonCatalogue()
        covered = {f for code in catalogue.codes for f in code.features}
        families: dict[str, list[str]] = {}
        for feature in self.model_features:
            if feature in covered:
                continue
            match = _FAMILY_RE.match(feature)
            stem = match.group("stem") if match and match.group("stem") else feature
            families.setdefault(stem, []).append(feature)
        extra = [
            ReasonCode(
                code=stem.upper(),
                text=f"{stem.replace('_', ' ').strip().capitalize()} increases the risk",
                features=members,
            )
            for stem, members in families.items()
        ]
        return ReasonCatalogue(version=catalogue.version, codes=[*catalogue.codes, *extra])

    def label_of(self, feature: str, value: object) -> str | None:
        """The spec's display label of one value of ``feature``, if it gives one."""
        return self.value_labels.get(feature, {}).get(value_key(value))

    def canonical_json(self) -> str:
        data = self.model_dump(mode="json")
        if not data.get("value_labels"):
            # display-only and empty: left out, so specs written before the key existed
            # keep their hash
            data.pop("value_labels", None)
        if data.get("model_card") is None:
            data.pop("model_card", None)  # documentation only: absent, the hash is as before
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def value_key(value: object) -> str:
    """The text key of a categorical value, as the encoder writes it: integral numbers
    without decimals (``1``, ``1.0``, ``" 1 "`` are all ``"1"``), anything else as text."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def parse_spec(data: object, *, source: str = "spec") -> Spec:
    """Validate a parsed YAML/JSON object as a spec; errors name the offending key."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        message = first["msg"].removeprefix("Value error, ")
        raise SpecError(f"{source}: {where}: {message}", field=where) from None


def load_spec(path: Path) -> Spec:
    """Read and validate a spec file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}") from None
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    return parse_spec(data, source=str(path))
