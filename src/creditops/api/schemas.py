"""API models (…Request / …Response). Per-model request models are generated from the spec,
so /docs shows each served model's real feature names and types."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, create_model

from creditops.features.spec import Spec

STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
ApplicationId = Annotated[str, Field(min_length=1, max_length=128, examples=["app-0001"])]


def _feature_field(spec: Spec, name: str) -> tuple[Any, Any]:
    required = name in spec.model_features
    if spec.features[name] == "numeric":
        annotation: Any = StrictFloat | StrictInt | None
        description = "numeric"
    else:
        annotation = StrictStr | StrictInt | None
        description = "categorical (string or integer code)"
    role = "model input" if required else "not a model input (fairness, monitoring, rules)"
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

    decision_id: str | None = Field(default=None, max_length=64)
    application_id: str | None = Field(default=None, max_length=128)
    defaulted: bool
    observed_at: datetime | None = None


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
    override_reason_code: str | None = Field(default=None, max_length=32)
    note: str = Field(default="", max_length=2000)
    reviewer: str = Field(..., min_length=1, max_length=128)


class SuspendRequest(BaseModel):
    model_config = STRICT

    reason: str = Field(default="", max_length=500)


class VersionResponse(BaseModel):
    name: str
    version: str
    aliases: list[str]
    created_at: datetime
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
