"""Drift, performance and fairness checks, stored reports, and alert tests (scope monitor)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from creditops.api.security import Principal
from creditops.api.state import ApiState
from creditops.domain.windows import parse_since
from creditops.monitoring.performance import PerformanceConfig
from creditops.services import monitoring
from creditops.services.model_versions import load_model
from creditops.services.monitoring import (
    CheckOutcome,
    CheckRequest,
    get_report,
    labelled_performance,
    list_reports,
    send_alert_test,
)

STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class WindowRequest(BaseModel):
    model_config = STRICT

    model: str = Field(min_length=1, max_length=64)
    since: str | None = Field(
        default=None, description="Window start: a duration like 24h, 7d, 30m or an ISO time."
    )
    until: datetime | None = Field(
        default=None, description="Window end (default: now); UTC if naive."
    )

    @field_validator("until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class PerformanceRequest(BaseModel):
    model_config = STRICT

    model: str = Field(min_length=1, max_length=64)
    window: int | None = Field(default=None, ge=10, le=1_000_000)
    max_drop: float | None = Field(default=None, gt=0, lt=1)


class AlertTestRequest(BaseModel):
    model_config = STRICT

    channel: str | None = Field(default=None, max_length=16)


def window_start(value: str | None, default_hours: float) -> datetime:
    if not value:
        return datetime.now(UTC) - timedelta(hours=default_hours)
    return parse_since(value)


def add_monitoring_routes(app: FastAPI, state: ApiState) -> None:
    scope = Depends(state.auth.require("monitor"))
    router = APIRouter(tags=["monitoring"])
    hours = state.settings.monitor.window_hours

    def served(name: str) -> None:
        state.router.route(name)  # 404 for a model this service does not serve

    async def checks(body: WindowRequest, kinds: tuple[str, ...]) -> CheckOutcome:
        """Run ``kinds`` on a window of a served model's log, off the event loop."""
        served(body.model)
        request = CheckRequest(
            model=body.model,
            since=window_start(body.since, hours),
            until=body.until,
            triggered_by="api",
            kinds=kinds,
        )
        return await run_in_threadpool(monitoring.run_checks, state.ctx, state.sessions, request)

    @router.post("/v1/drift/data-drift", operation_id="data_drift")
    async def data_drift(body: WindowRequest, principal: Principal = scope) -> dict[str, Any]:
        """Data and prediction drift of a window of logged decisions against the profile."""
        del principal
        outcome = await checks(body, ("data_drift", "prediction_drift"))
        return outcome.summary() | {
            "data_drift": outcome.results["data_drift"],
            "prediction_drift": outcome.results["prediction_drift"],
        }

    @router.post("/v1/drift/model-performance-drift", operation_id="performance_drift")
    async def performance(body: PerformanceRequest, principal: Principal = scope) -> dict[str, Any]:
        """Metrics over the latest labelled decisions vs validation and a baseline period."""
        del principal
        served(body.model)
        monitor = state.settings.monitor
        loaded = await run_in_threadpool(load_model, state.ctx, body.model, "production")
        config = PerformanceConfig(
            window=body.window or monitor.performance_window,
            max_drop=body.max_drop or monitor.max_performance_drop,
        )
        return await run_in_threadpool(
            labelled_performance, state.sessions, body.model, loaded.info.metrics, config
        )

    @router.post("/v1/drift/check-and-retrain", operation_id="check_and_retrain")
    async def check(body: WindowRequest, principal: Principal = scope) -> dict[str, Any]:
        """Every check; says whether retraining should be triggered and why."""
        del principal
        outcome = await checks(body, monitoring.ALL_CHECKS)
        return outcome.summary() | {"results": outcome.results, "alerts": outcome.deliveries}

    @router.get("/v1/drift/reports", operation_id="list_reports")
    async def reports(
        model: Annotated[str | None, Query(max_length=64)] = None,
        kind: Annotated[str | None, Query(max_length=32)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
        principal: Principal = scope,
    ) -> list[dict[str, Any]]:
        """Stored check results, newest first."""
        del principal
        return await run_in_threadpool(list_reports, state.sessions, model, kind, limit, offset)

    @router.get("/v1/drift/reports/{report_id}", operation_id="get_report")
    async def report(
        report_id: Annotated[str, Path(min_length=1, max_length=64)], principal: Principal = scope
    ) -> dict[str, Any]:
        """One stored check with its full result."""
        del principal
        return await run_in_threadpool(get_report, state.sessions, report_id)

    @router.post("/v1/fairness/analyze", operation_id="analyze_fairness")
    async def fairness(body: WindowRequest, principal: Principal = scope) -> dict[str, Any]:
        """Approval rates by protected group, parity ratios and their drift."""
        del principal
        outcome = await checks(body, ("fairness",))
        return dict(outcome.results["fairness"])

    @router.post("/v1/drift/test-email", operation_id="test_email")
    async def test_email(principal: Principal = scope) -> list[dict[str, Any]]:
        """Send a test alert by e-mail (the channel must be configured)."""
        del principal
        results = await run_in_threadpool(send_alert_test, state.ctx, "email")
        return [r.to_dict() for r in results]

    @router.post("/v1/alerts/test", operation_id="test_alerts")
    async def test_alerts(
        body: AlertTestRequest | None = None, principal: Principal = scope
    ) -> list[dict[str, Any]]:
        """Send a test alert to one channel or to every selected channel."""
        del principal
        channel = body.channel if body else None
        results = await run_in_threadpool(send_alert_test, state.ctx, channel)
        return [r.to_dict() for r in results]

    app.include_router(router)
