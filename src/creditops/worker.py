"""``creditops worker``: the background process: scheduled monitoring checks, the
retraining triggers they feed, the jobs those queue, and the deployments in progress
(driven on a thread of their own every ``deploy.evaluate_interval_s``).

Each tick it looks at every model with a production alias and runs its checks when they are
due: every ``every_hours`` hours or after ``every_predictions`` new logged decisions,
whichever comes first (per-model overrides in ``CREDITOPS_MONITOR__MODELS``). Results are
stored (history is kept), alerts go out through the configured channels, and the
retraining triggers are evaluated (``services/retraining.py``). Then it runs the oldest
queued job, if any.

Only one scheduler fires per tick however many workers run, and only one worker runs jobs
at a time: with PostgreSQL session-level advisory locks elect them; with the embedded
SQLite store exclusive file locks under ``CREDITOPS_HOME`` do the same on one machine. Both
kinds of lock go with the process that held them, so a worker killed mid-job leaves the
lock free and the next one fails the job it left running.

With ``events.enabled`` it also publishes the event outbox (``services/events.py``) on a
thread of its own; ``creditops publish`` runs the same publisher alone. One publisher pass
runs at a time however many processes publish (the same kind of lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from creditops.domain.windows import utc_text
from creditops.errors import CreditopsError
from creditops.services.context import AppContext, make_home_private
from creditops.services.deployments import drive
from creditops.services.events import OutboxPublisher, PublishSummary, jetstream_broker
from creditops.services.experiments import look_all
from creditops.services.monitoring import CheckRequest, run_checks
from creditops.services.retraining import act_on_triggers, run_pending_job
from creditops.settings import Settings
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.migrations_api import ensure_current
from creditops.store.monitoring_repositories import MonitorStateRepository
from creditops.store.repositories import DecisionRepository

log = logging.getLogger("creditops.worker")
ADVISORY_LOCK_ID = 0x63726564  # "cred"
JOB_LOCK_ID = 0x6A6F6273  # "jobs"


@contextlib.contextmanager
def scheduler_lock(
    engine: Engine, settings: Settings, name: str = "worker", lock_id: int = ADVISORY_LOCK_ID
) -> Iterator[bool]:
    """Yields True when this process holds the lock (``name``) for this tick: a
    PostgreSQL session advisory lock, or a file lock under the home with SQLite. Both are
    released when the process dies, however it dies."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_id}).scalar()
            )
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})
                    conn.commit()
        return
    path = settings.home_dir / f"{name}.lock"
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def last_check(sessions: sessionmaker[Session], model: str) -> datetime | None:
    with sessions() as session:
        state = MonitorStateRepository(session).get(f"schedule:{model}") or {}
    last = state.get("last_check_at")
    return datetime.fromisoformat(last) if last else None


def due_reason(
    sessions: sessionmaker[Session],
    model: str,
    settings: Settings,
    now: datetime,
    last_at: datetime | None,
) -> str | None:
    """Why a check of ``model`` is due now ("schedule" or "predictions"), or None."""
    every_hours, every_predictions, _ = settings.monitor.for_model(model)
    with sessions() as session:
        new = DecisionRepository(session).count(since=last_at, model=model)
    if new == 0:
        return None  # nothing logged since the last check: nothing to compare
    if last_at is None or now - last_at >= timedelta(hours=every_hours):
        return "schedule"
    return "predictions" if new >= every_predictions else None


def mark_checked(sessions: sessionmaker[Session], model: str, at: datetime) -> None:
    with sessions.begin() as session:
        MonitorStateRepository(session).put(f"schedule:{model}", {"last_check_at": utc_text(at)})


def run_tick(
    ctx: AppContext, sessions: sessionmaker[Session], engine: Engine
) -> list[dict[str, Any]]:
    """One scheduler pass; returns the summaries of the checks it ran."""
    settings = ctx.settings
    ran: list[dict[str, Any]] = []
    with scheduler_lock(engine, settings) as leader:
        if not leader:
            return ran
        for model in ctx.registry.model_names():
            if ctx.registry.find_alias(model, "production") is None:
                continue
            now = datetime.now(UTC)
            previous = last_check(sessions, model)
            reason = due_reason(sessions, model, settings, now, previous)
            if reason is None:
                continue
            # The window is what was logged since the previous check (at most window_hours).
            earliest = now - timedelta(hours=settings.monitor.window_hours)
            window_start = max(previous, earliest) if previous else earliest
            try:
                request = CheckRequest(model=model, since=window_start, triggered_by=reason)
                outcome = run_checks(ctx, sessions, request)
                triggers = act_on_triggers(ctx, sessions, model, outcome.results)
            except CreditopsError as exc:
                log.error("checks of %s failed: %s", model, exc.message)
                continue
            mark_checked(sessions, model, now)
            ran.append(outcome.summary() | {"triggers": [t.to_dict() for t in triggers]})
            log.info("checked %s (%s): %s", model, reason, outcome.summary())
    return ran


def run_jobs(ctx: AppContext, sessions: sessionmaker[Session], engine: Engine) -> str | None:
    """Run one queued job (retraining) if this process holds the job lock. A job that a
    dead worker left running is failed first: holding the lock proves nobody runs it."""
    with scheduler_lock(engine, ctx.settings, "jobs", JOB_LOCK_ID) as holder:
        if not holder:
            return None
        return run_pending_job(ctx, sessions)


DEPLOY_LOCK_ID = 0x64706C79  # "dply"


def drive_deployments(
    ctx: AppContext, sessions: sessionmaker[Session], engine: Engine
) -> list[str]:
    """One pass over the deployments in progress, if this process holds the deployment
    lock (one driver at a time, however many workers run)."""
    with scheduler_lock(engine, ctx.settings, "deployments", DEPLOY_LOCK_ID) as holder:
        if not holder:
            return []
        return drive(ctx, sessions) + look_all(ctx, sessions)


def _deployment_loop(
    ctx: AppContext, sessions: sessionmaker[Session], engine: Engine, stop: threading.Event
) -> None:
    """Deployments are driven on their own thread, so that a long retraining job in the
    main loop never delays a rollback by more than one evaluation interval."""
    while not stop.is_set():
        try:
            drive_deployments(ctx, sessions, engine)
        except Exception:  # keep driving: the next interval tries again
            log.exception("driving deployments failed")
        stop.wait(ctx.settings.deploy.evaluate_interval_s)


PUBLISH_LOCK_ID = 0x65766E74  # "evnt"


def build_publisher(
    settings: Settings, sessions: sessionmaker[Session], engine: Engine
) -> OutboxPublisher:
    """The outbox publisher of ``settings.events``, one pass at a time across processes."""
    hold = partial(scheduler_lock, engine, settings, "publisher", PUBLISH_LOCK_ID)
    return OutboxPublisher(sessions, jetstream_broker(settings.events), settings.events, hold=hold)


def _publisher_loop(publisher: OutboxPublisher, stop: threading.Event) -> None:
    """The publisher on its own thread and event loop, until ``stop``."""
    while not stop.is_set():
        try:
            asyncio.run(publisher.run(stop))
        except Exception:  # keep publishing: the outbox keeps what was not sent
            log.exception("the event publisher failed; restarting it")
            stop.wait(1.0)


def run_publisher(settings: Settings, *, once: bool = False) -> PublishSummary:
    """``creditops publish``: publish the outbox until SIGTERM/SIGINT (or, with ``once``,
    until it is empty; a broker error then raises)."""
    make_home_private(settings)
    ensure_current(settings.database)
    engine = create_db_engine(settings.database)
    stop = threading.Event()
    if not once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    try:
        publisher = build_publisher(settings, session_factory(engine), engine)
        log.info("creditops publisher started (%s)", settings.events.nats_url)
        return asyncio.run(publisher.run(stop, once=once))
    finally:
        engine.dispose()


def run_worker(settings: Settings, *, once: bool = False) -> None:
    """Run until SIGTERM/SIGINT (or one tick with ``once``)."""
    make_home_private(settings)
    ensure_current(settings.database)
    engine = create_db_engine(settings.database)
    sessions = session_factory(engine)
    ctx = AppContext(settings)
    stop = threading.Event()
    if not once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    log.info("creditops worker started (tick %.0fs)", settings.monitor.tick_seconds)
    driver = None
    publisher = None
    if once:
        drive_deployments(ctx, sessions, engine)
    else:
        driver = threading.Thread(
            target=_deployment_loop, args=(ctx, sessions, engine, stop), daemon=True
        )
        driver.start()
        if settings.events.enabled:
            publisher = threading.Thread(
                target=_publisher_loop,
                args=(build_publisher(settings, sessions, engine), stop),
                name="creditops-publisher",
                daemon=True,
            )
            publisher.start()
    try:
        while not stop.is_set():
            run_tick(ctx, sessions, engine)
            job = run_jobs(ctx, sessions, engine)
            if once:
                break
            if job is None:  # after a job, look for the next one at once
                stop.wait(settings.monitor.tick_seconds)
    finally:
        stop.set()
        if driver is not None:
            driver.join(timeout=30)
        if publisher is not None:
            publisher.join(timeout=30)
        engine.dispose()
