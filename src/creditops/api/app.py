"""The FastAPI app factory.

``create_app()`` loads the served models (hash-verified, from the registry), opens the
database, starts the group-commit decision log and registers one predict/explain route pair
per model with a request schema generated from its spec. Nothing happens at import time;
uvicorn calls the factory in each worker process (``creditops serve``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditops.api.batching import DecisionBatcher
from creditops.api.fastpath import PredictFastPath
from creditops.api.metrics import ServiceMetrics, build_metrics
from creditops.api.monitoring_metrics import MonitoringCollector
from creditops.api.problems import install_problem_handlers, problem
from creditops.api.routes.monitoring import add_monitoring_routes
from creditops.api.routes.operations import add_operation_routes
from creditops.api.routes.predict import THREAD_BATCH_ROWS, add_model_routes
from creditops.api.routes.system import add_system_routes
from creditops.api.security import Authenticator, Principal
from creditops.api.state import ApiState, ModelControls
from creditops.errors import CreditopsError
from creditops.services.context import AppContext
from creditops.services.serving import load_router, refresh_router
from creditops.settings import Settings, get_settings
from creditops.store.admin_repositories import ApiKeyRepository
from creditops.store.decision_log import DecisionLogWriter
from creditops.store.engine import create_db_engine, session_factory
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
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await self._too_large(scope, receive, send)
            observe_request(self.metrics, scope, 413, started)
            return
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


def _key_lookup(readonly: Any, writable: Any) -> Callable[[str], Principal | None]:
    """Find an active key by hash and record that it was used.

    Runs only when the authenticator's cache entry for the key expired, so ``last_used_at``
    is written at most once per key per cache period (5 s) and is accurate to that period.
    A failed write is logged, never turned into a refused request.
    """

    def lookup(key_hash: str) -> Principal | None:
        with readonly() as session:
            row = ApiKeyRepository(session).get_active_by_hash(key_hash)
            if row is None:
                return None
            principal = Principal(key_id=row.key_id, name=row.name, scopes=frozenset(row.scopes))
        try:
            with writable.begin() as session:
                ApiKeyRepository(session).touch(row.key_id, datetime.now(UTC))
        except SQLAlchemyError as exc:
            log.warning("could not record the use of API key %s: %s", row.key_id, exc)
        return principal

    return lookup


async def _watch_aliases(state: ApiState) -> None:
    """Poll the registry and swap bundles atomically when an alias moves."""
    interval = state.settings.serve.reload_interval_s
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            changes = await run_in_threadpool(refresh_router, state.ctx, state.router)
        except CreditopsError as exc:
            log.warning("model refresh failed: %s", exc.message)
            continue
        for change in changes:
            log.warning("%s", change)
        if not changes:
            continue
        state.metrics.model_info.clear()
        for slot in state.router.slots():
            state.metrics.model_info.labels(
                slot.name, slot.version, slot.info.tags.get("bundle_sha256", ""), slot.route
            ).set(1)


def _commit_observer(metrics: ServiceMetrics) -> Callable[[int, float], None]:
    def observe(batch_size: int, seconds: float) -> None:
        metrics.log_commit_seconds.observe(seconds)
        metrics.log_batch_size.observe(batch_size)

    return observe


def create_app(settings: Settings | None = None) -> DecisionServiceApp:
    """Build the decision service for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    ctx = AppContext(settings)
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
    )
    router = load_router(ctx, settings.serve.models)
    state = ApiState(
        settings=settings,
        ctx=ctx,
        router=router,
        auth=Authenticator(_key_lookup(readonly, sessions), enabled=settings.serve.auth_enabled),
        decision_log=writer,
        sessions=sessions,
        controls=ModelControls(readonly),
        metrics=metrics,
        engine=engine,
    )

    state.batcher = DecisionBatcher(
        settings.serve.reasons_for,
        max_rows=THREAD_BATCH_ROWS,
        max_wait_ms=settings.serve.batch_wait_ms,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        writer.start()
        watcher = asyncio.create_task(_watch_aliases(state))
        try:
            yield
        finally:
            watcher.cancel()
            writer.close()
            engine.dispose()

    app = DecisionServiceApp(
        title="creditops decision service",
        version=_version(),
        description="Credit decisions with PD, score, decision band and adverse-action reason "
        "codes; every decision is durably logged before it is returned.",
        lifespan=lifespan,
    )
    app.state.api = state
    install_problem_handlers(app, on_error=lambda kind: metrics.errors.labels(kind).inc())
    add_system_routes(app, state)
    default = settings.serve.default_model or (router.names()[0] if router.names() else None)
    for slot in router.slots():
        add_model_routes(app, state, slot, seed_route=slot.name == default)
        metrics.model_info.labels(
            slot.name, slot.version, slot.info.tags.get("bundle_sha256", ""), slot.route
        ).set(1)
    add_operation_routes(app, state)
    add_monitoring_routes(app, state)
    metrics.add_collector(MonitoringCollector(readonly, router.names))
    if settings.serve.fast_path:
        app.fast_path = PredictFastPath(
            state.fast_routes,
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
