"""Drift, performance and fairness checks, stored reports, and alert tests (scope monitor).

The drift routes also answer on the seed documents' un-prefixed paths (``/drift/data-drift``
...), as documented aliases where ``model`` may be left out for the default model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from creditops.api.deps import (
    ApiState,
    ContextDep,
    MonitorScope,
    Offset,
    SessionsDep,
    SlowLaneDep,
    StateDep,
)
from creditops.api.problems import ApiProblemError
from creditops.api.routes.predict import default_model
from creditops.api.schemas import (
    AwareTime,
    CheckAndRetrainResponse,
    DeliveryResponse,
    DriftCheckResponse,
    FairnessResponse,
    PerformanceResponse,
    ReportResponse,
    ReportSummaryResponse,
    WindowStart,
)
from creditops.domain.windows import parse_since
from creditops.monitoring.performance import PerformanceConfig
from creditops.services import monitoring, retraining

STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
ReportId = Annotated[str, Path(min_length=1, max_length=64)]

router = APIRouter(tags=["monitoring"], dependencies=[MonitorScope])


class WindowRequest(BaseModel):
    model_config = STRICT

    model: str = Field(min_length=1, max_length=64)
    since: WindowStart = None
    until: AwareTime = Field(default=None, description="Window end (default: now); UTC if naive.")


class PerformanceRequest(BaseModel):
    model_config = STRICT

    model: str = Field(min_length=1, max_length=64)
    window: int | None = Field(default=None, ge=10, le=1_000_000)
    max_drop: float | None = Field(default=None, gt=0, lt=1)


SeedModel = Field(
    default=None,
    min_length=1,
    max_length=64,
    description="The model (default: the service's default model, as for POST /predict).",
)


class SeedWindowRequest(BaseModel):
    """:class:`WindowRequest` with ``model`` optional (the seed documents' clients)."""

    model_config = STRICT

    model: str | None = SeedModel
    since: WindowStart = None
    until: AwareTime = Field(default=None, description="Window end (default: now); UTC if naive.")


class SeedPerformanceRequest(BaseModel):
    """:class:`PerformanceRequest` with ``model`` optional (the seed documents' clients)."""

    model_config = STRICT

    model: str | None = SeedModel
    window: int | None = Field(default=None, ge=10, le=1_000_000)
    max_drop: float | None = Field(default=None, gt=0, lt=1)


class AlertTestRequest(BaseModel):
    model_config = STRICT

    channel: str | None = Field(default=None, max_length=16)


async def _run(
    body: WindowRequest, kinds: tuple[str, ...], state: ApiState
) -> monitoring.CheckOutcome:
    """Run ``kinds`` on a window of a served model's log, in the API's slow lane."""
    state.decisions.check_served(body.model)
    hours = state.settings.monitor.window_hours
    since = parse_since(body.since) if body.since else datetime.now(UTC) - timedelta(hours=hours)
    request = monitoring.CheckRequest(body.model, since, body.until, "api", kinds)
    return await state.slow.run(monitoring.run_checks, state.ctx, state.sessions, request)


def _report_link(kind: str) -> dict[int | str, dict[str, object]]:
    """An OpenAPI link from a check to its stored report (clients and fuzzers follow it)."""
    pointer = f"$response.body#/reports/{kind}"
    link = {"operationId": "get_report", "parameters": {"report_id": pointer}}
    return {200: {"links": {"StoredReport": link}}}


@router.post(
    "/v1/drift/data-drift", operation_id="data_drift", responses=_report_link("data_drift")
)
async def data_drift(body: WindowRequest, state: StateDep) -> DriftCheckResponse:
    """Data and prediction drift of a window of logged decisions against the profile."""
    outcome = await _run(body, ("data_drift", "prediction_drift"), state)
    return DriftCheckResponse(
        **outcome.summary(),
        data_drift=outcome.results["data_drift"],
        prediction_drift=outcome.results["prediction_drift"],
    )


@router.post("/v1/drift/model-performance-drift", operation_id="performance_drift")
async def performance_drift(body: PerformanceRequest, state: StateDep) -> PerformanceResponse:
    """Metrics over the latest labelled decisions vs validation and a baseline period."""
    state.decisions.check_served(body.model)
    monitor = state.settings.monitor
    config = PerformanceConfig(
        window=body.window or monitor.performance_window,
        max_drop=body.max_drop or monitor.max_performance_drop,
    )
    result = await state.slow.run(
        monitoring.production_performance, state.ctx, state.sessions, body.model, config
    )
    return PerformanceResponse(**result)


@router.post(
    "/v1/drift/check-and-retrain", operation_id="check_and_retrain", responses=_report_link("check")
)
async def check_and_retrain(body: WindowRequest, state: StateDep) -> CheckAndRetrainResponse:
    """Every check, then the retraining triggers: when one holds, a retraining job is
    queued (the worker runs it) and its id is in the answer."""
    outcome = await _run(body, monitoring.ALL_CHECKS, state)
    triggered = await state.slow.run(
        retraining.act_on_triggers, state.ctx, state.sessions, body.model, outcome.results
    )
    queued = [t.job_id for t in triggered if t.job_id]
    return CheckAndRetrainResponse(
        **outcome.summary(),
        results=outcome.results,
        alerts=[DeliveryResponse(**d) for d in outcome.deliveries],
        retraining=[t.to_dict() for t in triggered],
        job_id=queued[0] if queued else None,
    )


@router.post(
    "/v1/fairness/analyze", operation_id="analyze_fairness", responses=_report_link("fairness")
)
async def analyze_fairness(body: WindowRequest, state: StateDep) -> FairnessResponse:
    """Approval rates by protected group, parity ratios and their drift."""
    outcome = await _run(body, ("fairness",), state)
    return FairnessResponse(**outcome.results["fairness"])


@router.get("/v1/drift/reports", operation_id="list_reports")
async def list_reports(
    sessions: SessionsDep,
    model: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> list[ReportSummaryResponse]:
    """Stored check results, newest first."""
    rows = await run_in_threadpool(monitoring.list_reports, sessions, model, kind, limit, offset)
    return [ReportSummaryResponse(**row) for row in rows]


@router.get("/v1/drift/reports/{report_id}", operation_id="get_report")
async def get_report(report_id: ReportId, sessions: SessionsDep) -> ReportResponse:
    """One stored check with its full result."""
    return ReportResponse(**await run_in_threadpool(monitoring.get_report, sessions, report_id))


@router.post("/v1/drift/test-email", operation_id="test_email")
async def test_email(ctx: ContextDep, slow: SlowLaneDep) -> list[DeliveryResponse]:
    """Send a test alert by e-mail (the channel must be configured)."""
    results = await slow.run(monitoring.send_alert_test, ctx, "email")
    return [DeliveryResponse(**r.to_dict()) for r in results]


@router.post("/v1/alerts/test", operation_id="test_alerts")
async def test_alerts(
    ctx: ContextDep, slow: SlowLaneDep, body: AlertTestRequest | None = None
) -> list[DeliveryResponse]:
    """Send a test alert to one channel or to every selected channel."""
    channel = body.channel if body else None
    results = await slow.run(monitoring.send_alert_test, ctx, channel)
    return [DeliveryResponse(**r.to_dict()) for r in results]


# -- the seed documents' paths ---------------------------------------------------------------
def _model_or_default(model: str | None, state: ApiState) -> str:
    if model is not None:
        return model
    served = state.decisions.router.names()
    chosen = default_model(state.settings.serve.default_model, served)
    if chosen is None:
        raise ApiProblemError(
            404, "model_not_found", "No model is served, so there is no default model.",
            field="model",
        )  # fmt: skip
    return chosen


def _window(body: SeedWindowRequest, state: ApiState) -> WindowRequest:
    model = _model_or_default(body.model, state)
    return WindowRequest(model=model, since=body.since, until=body.until)


async def data_drift_seed(body: SeedWindowRequest, state: StateDep) -> DriftCheckResponse:
    return await data_drift(_window(body, state), state)


async def performance_drift_seed(
    body: SeedPerformanceRequest, state: StateDep
) -> PerformanceResponse:
    model = _model_or_default(body.model, state)
    request = PerformanceRequest(model=model, window=body.window, max_drop=body.max_drop)
    return await performance_drift(request, state)


async def check_and_retrain_seed(
    body: SeedWindowRequest, state: StateDep
) -> CheckAndRetrainResponse:
    return await check_and_retrain(_window(body, state), state)


def _alias(path: str, handler: Any, target: Any, **options: Any) -> None:
    """``path`` answers like ``POST /v1{path}`` (``target``), documented as its alias."""
    summary = (target.__doc__ or "").splitlines()[0]
    router.add_api_route(
        path,
        handler,
        methods=["POST"],
        operation_id=f"{target.__name__}_seed",
        summary=f"Seed route: {summary[0].lower()}{summary[1:]}",
        description=f"Alias of `POST /v1{path}` for clients written to the seed documents"
        + ("; `model` may be left out for the default model." if handler is not target else ".")
        + f"\n\n{target.__doc__}",
        **options,
    )


_alias("/drift/data-drift", data_drift_seed, data_drift, responses=_report_link("data_drift"))
_alias("/drift/model-performance-drift", performance_drift_seed, performance_drift)
_alias(
    "/drift/check-and-retrain",
    check_and_retrain_seed,
    check_and_retrain,
    responses=_report_link("check"),
)
_alias("/drift/test-email", test_email, test_email)
