"""The FastAPI app factory: the one place of the API that wires adapters to services.

``create_app()`` loads the served models (hash-verified, from the registry), opens the
database, builds the :class:`~creditops.services.decisions.DecisionService` with its
group-commit decision log, and registers the resource routers plus one predict/explain
route pair per model with a request schema generated from its spec. Nothing happens at
import time; uvicorn calls the factory in each worker process (``creditops serve``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditops.api.deps import ApiState
from creditops.api.event_metrics import OutboxCollector
from creditops.api.fastpath import FastRoute, PredictFastPath, read_body, replay_body
from creditops.api.metrics import ServiceMetrics, build_metrics
from creditops.api.monitoring_metrics import DeploymentCollector, MonitoringCollector
from creditops.api.offload import SlowLane
from creditops.api.openapi import complete_openapi, docs_router
from creditops.api.problems import install_problem_handlers, problem
from creditops.api.routes import (
    deployments,
    experiments,
    feedback,
    jobs,
    keys,
    models,
    monitoring,
    system,
)
from creditops.api.routes.predict import default_model, model_routes, unknown_model_routes
from creditops.api.schemas import typical_applicant
from creditops.api.security import Authenticator
from creditops.errors import CreditopsError
from creditops.services.access import find_key
from creditops.services.context import OWNER_ONLY_UMASK, AppContext, make_home_private
from creditops.services.decisions import (
    DecisionService,
    ModelControls,
    ShadowScorer,
    health_check,
)
from creditops.services.deployments import latest_per_model, refused_alert
from creditops.services.events import outbox_backlog
from creditops.services.monitoring import latest_results
from creditops.services.serving import ModelRouter, RouteFollower, load_router
from creditops.settings import Settings, get_settings
from creditops.store.decision_log import DecisionLogWriter
from creditops.store.engine import check_database, create_db_engine, session_factory
from creditops.store.migrations_api import ensure_current

log = logging.getLogger("creditops.api")


class BodyTooLargeError(Exception):
    pass


class EdgeMiddleware:
    """Request size limit and request metrics, as plain ASGI for a cheap hot path."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: ServiceMetrics) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        admitted = await self._admit(scope, receive, send)
        if admitted is None:
            observe_request(self.metrics, scope, 413, started)
            return
        receive = admitted
        seen = {"bytes": 0}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > self.max_body:
                    raise BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            await self._too_large(scope, receive, send)
            status["code"] = 413
        observe_request(self.metrics, scope, status["code"], started)

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """The request's ``receive``, or None when its body is too large (413 answered).

        A declared length is checked up front. A chunked body has none: it is read here,
        within the limit, so that an oversized one is a 413 and not FastAPI's 400.
        """
        declared = _content_length(scope)
        if declared is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            body, complete, _ = await read_body(receive, self.max_body)
            if complete:
                return replay_body(body, receive)
        elif declared is None or declared <= self.max_body:
            return receive
        await self._too_large(scope, receive, send)
        return None

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413, "payload_too_large", f"The request body exceeds {self.max_body} bytes."
        )
        await response(scope, receive, send)


def observe_request(metrics: ServiceMetrics, scope: Scope, status: int, started: float) -> None:
    """Count a request and its latency under its route's path template."""
    route = scope.get("route")
    path = getattr(route, "path", None) or "unmatched"
    method = scope.get("method", "")
    metrics.child(metrics.requests, path, method, str(status)).inc()
    metrics.child(metrics.request_seconds, path, method).observe(time.perf_counter() - started)


class DecisionServiceApp(FastAPI):
    """FastAPI, with the predict fast path (``api/fastpath.py``) in front of its middleware.

    Requests the fast path serves skip Starlette's and FastAPI's middleware stack, which
    every resumption of the request's coroutine and every ``send`` would otherwise pass
    through; it applies the same body-size limit and records the same request metrics
    itself. Whatever it passes on goes through the whole stack as usual.
    """

    fast_path: PredictFastPath | None = None

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document with the security schemes and error answers
        (``api/openapi.py``), built once."""
        if not self.openapi_schema:
            complete_openapi(super().openapi(), self.routes)
        return self.openapi_schema or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is not None and scope["type"] == "http":
            route = fast.match(scope)
            if route is not None:
                scope["app"] = self
                await fast.handle(route, scope, receive, send, super().__call__)
                return
        await super().__call__(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _follow_deployments(state: ApiState, follower: RouteFollower) -> None:
    """Every reload interval: follow the deployments and the production alias, swap routes
    atomically, report this process's serving state (``services/serving.RouteFollower``)."""
    interval = state.settings.serve.reload_interval_s
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            changes = await run_in_threadpool(follower.refresh)
        except CreditopsError as exc:
            log.warning("model refresh failed: %s", exc.message)
            continue
        except Exception:  # keep following: the next interval tries again
            log.exception("model refresh failed")
            continue
        for change in changes:
            log.warning("%s", change)
        if changes:
            state.metrics.model_info.clear()
            _export_model_info(state.metrics, follower.router)


def _export_model_info(metrics: ServiceMetrics, router: ModelRouter) -> None:
    for name in router.names():
        route = router.model_route(name)
        for slot in (route.stable, route.candidate):
            if slot is not None:
                arm = "shadow" if route.shadow and slot is route.candidate else slot.route
                metrics.model_info.labels(
                    slot.name, slot.version, slot.info.tags.get("bundle_sha256", ""), arm
                ).set(1)


def _commit_observer(metrics: ServiceMetrics) -> Callable[[int, float], None]:
    def observe(batch_size: int, seconds: float) -> None:
        metrics.log_commit_seconds.observe(seconds)
        metrics.log_batch_size.observe(batch_size)

    return observe


def _build_state(
    settings: Settings,
) -> tuple[ApiState, DecisionLogWriter, Engine, RouteFollower]:
    """Open the database, start nothing yet: the state every route reaches, the decision log
    writer (started by the lifespan) and the engine (disposed by it)."""
    os.umask(OWNER_ONLY_UMASK)  # the decision log and everything else: owner only
    make_home_private(settings)
    ctx = AppContext(settings)
    ctx.alert_dispatcher  # noqa: B018 - build the alert channels now: a bad one fails start-up
    engine = create_db_engine(settings.database)
    ensure_current(settings.database)
    sessions = session_factory(engine)
    # Reads on the hot path (key lookups, the kill-switch state, gauges) must not take
    # SQLite's write lock.
    readonly = session_factory(engine, read_only=True)
    metrics = build_metrics()
    writer = DecisionLogWriter(
        engine,
        max_batch=settings.serve.log_batch_max,
        max_wait_ms=settings.serve.log_batch_wait_ms,
        on_commit=_commit_observer(metrics),
        events=settings.events.enabled,
    )
    decisions = DecisionService(
        load_router(ctx, settings.serve.models),
        writer,
        ModelControls(readonly, sessions),
        reasons_for=settings.serve.reasons_for,
        batch_wait_ms=settings.serve.batch_wait_ms,
    )
    decisions.on_decided = metrics.observe_decisions
    decisions.shadow = ShadowScorer(
        sessions, settings.serve.reasons_for, settings.deploy.shadow_queue
    )
    follower = RouteFollower(
        ctx,
        decisions.router,
        sessions,
        health_check=health_check,
        on_refused=partial(refused_alert, ctx),
    )
    state = ApiState(
        settings=settings,
        ctx=ctx,
        sessions=sessions,
        auth=Authenticator(
            partial(find_key, readonly, sessions), enabled=settings.serve.auth_enabled
        ),
        decisions=decisions,
        metrics=metrics,
        check_database=partial(check_database, engine),
        slow=SlowLane(settings.serve.slow_threads, settings.serve.slow_queue),
    )
    metrics.add_collector(
        MonitoringCollector(lambda: latest_results(readonly, decisions.router.names()))
    )
    state.follower = follower
    metrics.add_collector(
        DeploymentCollector(lambda: latest_per_model(readonly, decisions.router.names()))
    )
    metrics.add_collector(OutboxCollector(partial(outbox_backlog, readonly)))
    return state, writer, engine, follower


def create_app(settings: Settings | None = None) -> DecisionServiceApp:
    """Build the decision service for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    state, writer, engine, follower = _build_state(settings)
    shadow = state.decisions.shadow

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        writer.start()
        await run_in_threadpool(follower.refresh)  # report in, follow a deployment at once
        served = ", ".join(
            f"{m.name} v{m.version}" + (f" ({', '.join(sorted(m.aliases))})" if m.aliases else "")
            for m in state.decisions.served_models()
        )
        log.info(
            "serving %s on http://%s:%d (process %d)",
            served or "no model",
            settings.serve.host,
            settings.serve.port,
            os.getpid(),
        )
        tasks = [asyncio.create_task(_follow_deployments(state, follower))]
        if shadow is not None:
            tasks.append(asyncio.create_task(shadow.run()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            if shadow is not None:
                await shadow.flush()
            await run_in_threadpool(follower.forget)
            writer.close()
            engine.dispose()

    app = DecisionServiceApp(
        title="creditops decision service",
        version=_version(),
        description="Credit decisions with PD, score, decision band and adverse-action reason "
        "codes; every decision is durably logged before it is returned.",
        lifespan=lifespan,
        # served by api/openapi.py, with the pages' assets from this package (no CDN)
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.api = state
    metrics = state.metrics
    install_problem_handlers(app, on_error=lambda kind: metrics.errors.labels(kind).inc())
    app.include_router(system.router)
    app.include_router(docs_router())
    router = state.decisions.router
    default = default_model(settings.serve.default_model, router.names())
    fast_routes: list[FastRoute] = []
    for slot in router.slots():
        routes, fast = model_routes(
            slot.name,
            slot.model.spec,
            settings.serve.max_batch,
            seed_route=slot.name == default,
            example=typical_applicant(slot.model.spec, slot.model.bundle.reference_profile),
        )
        app.include_router(routes)
        fast_routes += fast
    app.include_router(unknown_model_routes())  # after every served model's own routes
    _export_model_info(metrics, router)
    for resource in (
        models.router,
        deployments.router,
        experiments.router,
        feedback.router,
        monitoring.router,
        keys.router,
        jobs.router,
    ):
        app.include_router(resource)
    if settings.serve.fast_path:
        app.fast_path = PredictFastPath(
            {f.route.path: f for f in fast_routes},
            state.auth,
            app.exception_handlers,
            max_body_bytes=settings.serve.max_body_bytes,
            on_served=lambda scope, status, started: observe_request(
                metrics, scope, status, started
            ),
        )
    app.add_middleware(
        EdgeMiddleware, max_body_bytes=settings.serve.max_body_bytes, metrics=metrics
    )
    return app


def _version() -> str:
    from creditops import __version__

    return __version__
