"""API models (…Request / …Response). Per-model request models are generated from the spec,
so /docs shows each served model's real feature names and types."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    create_model,
)

from creditops.domain.windows import aware_utc, parse_since
from creditops.errors import InvalidInputError
from creditops.features.spec import Spec

STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _storable_text(value: str) -> str:
    """Text every store accepts: no NUL (PostgreSQL refuses it), valid UTF-8 (no lone
    surrogates, which JSON can carry but no database column can)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


Text = Annotated[StrictStr, AfterValidator(_storable_text)]
Int64 = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]
ApplicationId = Annotated[Text, Field(min_length=1, max_length=128, examples=["app-0001"])]
FeatureText = Annotated[Text, Field(max_length=256)]


def _aware_utc(value: datetime | None) -> datetime | None:
    """Naive times are taken as UTC; times outside 1900-9998 are refused."""
    if value is None:
        return None
    try:
        return aware_utc(value, field="time")
    except InvalidInputError as exc:
        raise ValueError(exc.message.removeprefix("time ")) from None


def _window_start(value: str | None) -> str | None:
    """A window start the service can parse (a duration like 24h or an ISO time)."""
    if value is not None:
        try:
            parse_since(value)
        except InvalidInputError as exc:
            raise ValueError(exc.message) from None
    return value


AwareTime = Annotated[datetime | None, AfterValidator(_aware_utc)]
WindowStart = Annotated[
    str | None,
    Field(
        max_length=64, description="Window start: a duration like 24h, 7d, 30m, 2w or an ISO time."
    ),
    AfterValidator(_window_start),
]


def _refuse_null(value: object) -> object:
    if value is None:
        raise ValueError("may not be missing: the model's spec does not allow it (missing.allowed)")
    return value


_NOT_NULL = BeforeValidator(_refuse_null)


def _feature_field(spec: Spec, name: str) -> tuple[Any, Any]:
    """A model input is a required key; its value may be null only when the spec lets it
    be missing (``missing.allowed``, or ``on_missing: review``): otherwise null is a 422
    naming the field, never a number the model would read as 0."""
    required = name in spec.model_features
    nullable = spec.may_be_missing(name) or spec.missing.on_missing == "review"
    if spec.features[name] == "numeric":
        annotation: Any = StrictFloat | Int64
        description = "numeric"
    else:
        annotation = FeatureText | Int64
        description = "categorical (string or integer code)"
    annotation = annotation | None if nullable else Annotated[annotation, _NOT_NULL]
    role = "model input" if required else "not a model input (fairness, monitoring, rules)"
    if required and not nullable:
        role += "; may not be null (the spec does not allow it missing)"
    info = Field(... if required else None, description=f"{description}; {role}")
    return annotation, info


def build_request_models(
    model_name: str, spec: Spec, max_batch: int
) -> tuple[type[BaseModel], type[BaseModel], type[BaseModel]]:
    """(features, single application, batch) request models for one served model."""
    stem = "".join(
        part.capitalize() for part in model_name.replace("-", "_").replace(".", "_").split("_")
    )
    fields = {name: _feature_field(spec, name) for name in spec.features}
    features = create_model(f"{stem}Features", __config__=STRICT, **fields)  # type: ignore[call-overload]
    single = create_model(
        f"{stem}ApplicationRequest",
        __config__=STRICT,
        application_id=(ApplicationId, ...),
        features=(features, ...),
    )
    batch = create_model(
        f"{stem}BatchRequest",
        __config__=STRICT,
        applications=(list[single], Field(..., min_length=1, max_length=max_batch)),
    )
    return features, single, batch


def typical_applicant(spec: Spec, profile: Mapping[str, Any]) -> dict[str, Any]:
    """The features of a typical applicant of the training data, for the request examples:
    each numeric feature at its median (on the data's grain), each categorical one at its
    most frequent category, from the model's reference profile.

    Every value is one the model saw; the whole is nobody's record, which matters because
    the examples are shown on the open /docs page.
    """
    stats = profile.get("features", {})
    return {
        name: _typical_number(stats.get(name, {}))
        if kind == "numeric"
        else _typical_category(stats.get(name, {}))
        for name, kind in spec.features.items()
    }


def _typical_number(stats: Mapping[str, Any]) -> int | float | None:
    quantiles = [float(q) for q in stats.get("quantiles") or ()]
    if not quantiles:
        return None
    median = quantiles[len(quantiles) // 2]
    # Percentiles of whole numbers are whole but where they fall between two values.
    if sum(q.is_integer() for q in quantiles) >= 0.9 * len(quantiles):
        return round(median)
    return round(median, 4)


def _typical_category(stats: Mapping[str, Any]) -> int | str | None:
    categories = stats.get("categories") or {}
    if not categories:
        return None
    top = str(max(categories, key=lambda c: categories[c]))
    return int(top) if top.lstrip("-").isdigit() else top


class ModelRef(BaseModel):
    name: str
    version: str


class ReasonResponse(BaseModel):
    code: str
    text: str
    feature: str | None
    value: Any = None
    contribution: float


class AdverseActionResponse(BaseModel):
    """What a lender's adverse-action notice generator needs for a decline."""

    principal_reasons: list[ReasonResponse]
    score: float
    score_range: dict[str, float | None]
    model: ModelRef
    policy_version: str
    decision_date: str


class DecisionResponse(BaseModel):
    decision_id: str
    application_id: str
    model: ModelRef
    pd: float
    score: float
    decision: Literal["approve", "review", "decline"]
    reasons: list[ReasonResponse]
    policy_version: str
    suspended: bool = False
    adverse_action: AdverseActionResponse | None = None
    created_at: datetime


class BatchDecisionResponse(BaseModel):
    decisions: list[DecisionResponse]


class ExplainResponse(BaseModel):
    model: ModelRef
    base_value: float
    raw_score: float
    pd: float
    score: float
    contributions: list[dict[str, Any]]


class FeedbackItem(BaseModel):
    model_config = STRICT

    decision_id: Text | None = Field(default=None, max_length=64)
    application_id: Text | None = Field(default=None, max_length=128)
    defaulted: StrictBool = Field(description="true when the applicant defaulted (a JSON boolean)")
    observed_at: AwareTime = None


class FeedbackRequest(BaseModel):
    model_config = STRICT

    outcomes: list[FeedbackItem] = Field(..., min_length=1, max_length=10_000)


class FeedbackResponse(BaseModel):
    created: int
    updated: int
    unchanged: int
    unknown: list[dict[str, str | None]]


class ReviewRequest(BaseModel):
    model_config = STRICT

    final_decision: Literal["approve", "decline"]
    override_reason_code: Text | None = Field(default=None, max_length=32)
    note: Text = Field(default="", max_length=2000)
    reviewer: Text = Field(..., min_length=1, max_length=128)


class SuspendRequest(BaseModel):
    model_config = STRICT

    reason: Text = Field(default="", max_length=500)


class VersionResponse(BaseModel):
    name: str
    version: str
    aliases: list[str]
    created_at: str = Field(description="RFC 3339, UTC, with Z.")
    gate_passed: bool | None = Field(
        description="The validation gate's verdict; null: never validated."
    )
    metrics: dict[str, float]
    tags: dict[str, str]
    serving: bool


class ModelSummaryResponse(BaseModel):
    name: str
    serving_version: str | None
    suspended: bool
    aliases: dict[str, str]
    features: dict[str, str]


class HealthResponse(BaseModel):
    status: str


class ReadyResponse(BaseModel):
    status: str
    models: dict[str, str]
    database: str


class ModelControlResponse(BaseModel):
    """The kill switch of one model after a suspend or resume."""

    model: str
    suspended: bool
    reason: str


class LoggedDecisionResponse(BaseModel):
    """One decision as the decision log holds it (times in ISO 8601)."""

    decision_id: str
    application_id: str
    model_name: str
    model_version: str
    policy_version: str
    pd: float
    score: float
    decision: Literal["approve", "review", "decline"]
    reasons: list[dict[str, Any]]
    inputs: dict[str, Any]
    created_at: str
    latency_ms: float
    route: str
    suspended: bool


class ReviewResponse(BaseModel):
    review_id: int
    decision_id: str
    model_name: str
    original_decision: str
    final_decision: Literal["approve", "decline"]
    override_reason_code: str | None
    overridden: bool


class DeliveryResponse(BaseModel):
    """What one alert channel did with one message."""

    channel: str
    ok: bool
    error: str | None = None
    attempts: int = 1
    elapsed_s: float = 0.0


class CheckSummaryResponse(BaseModel):
    """The verdict of a run of checks: its level, whether retraining is advised and why,
    and the ids of the stored reports by check kind."""

    model: str
    version: str
    level: Literal["ok", "warning", "critical", "insufficient_data"]
    should_retrain: bool
    reasons: list[str]
    reports: dict[str, str]


class DriftCheckResponse(CheckSummaryResponse):
    data_drift: dict[str, Any] = Field(description="Per-feature drift and the dataset level.")
    prediction_drift: dict[str, Any] = Field(description="Score PSI and approval-rate change.")


class CheckAndRetrainResponse(CheckSummaryResponse):
    results: dict[str, Any] = Field(description="Each check's full result, by kind.")
    alerts: list[DeliveryResponse] = Field(description="Alert deliveries this run made.")
    retraining: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The retraining triggers that held, each with what came of it.",
    )
    job_id: str | None = Field(default=None, description="The retraining job queued, if any.")


class PerformanceResponse(BaseModel):
    """Metrics over the latest labelled decisions against validation and a baseline period
    (the model's first labelled decisions); drops are relative, positive means worse."""

    kind: Literal["performance"]
    model: str
    n_labelled: int
    n_unlabelled: int
    window: int
    current: dict[str, float | None]
    validation: dict[str, float | None]
    baseline: dict[str, float | None]
    drop_vs_validation: dict[str, float | None]
    drop_vs_baseline: dict[str, float | None]
    max_drop: float
    breaches: list[str]
    warning_drop: float
    warnings: list[str]
    level: Literal["ok", "warning", "critical"]


class FairnessResponse(BaseModel):
    """Approval rates by protected group in the window, parity ratios and their drift."""

    kind: Literal["fairness"]
    model: str
    n: int
    n_labelled: int
    attributes: list[dict[str, Any]]
    level: Literal["ok", "warning", "insufficient_data"]


class ReportSummaryResponse(BaseModel):
    """A stored check result (times in ISO 8601)."""

    report_id: str
    model: str
    version: str
    kind: str
    created_at: str
    level: str
    n_current: int
    should_retrain: bool
    triggered_by: str
    summary: dict[str, Any]
    window_start: str | None
    window_end: str | None


class ReportResponse(ReportSummaryResponse):
    result: dict[str, Any]
