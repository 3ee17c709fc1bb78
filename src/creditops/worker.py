"""``creditops worker``: the scheduler that runs monitoring checks in the background.

Each tick it looks at every model with a production alias and runs its checks when they are
due: every ``every_hours`` hours or after ``every_predictions`` new logged decisions,
whichever comes first (per-model overrides in ``CREDITOPS_MONITOR__MODELS``). Results are
stored (history is kept) and alerts go out through the configured channels.

Only one scheduler fires per job however many workers run: with PostgreSQL a session-level
advisory lock elects the active scheduler; with the embedded SQLite store an exclusive
file lock under ``CREDITOPS_HOME`` does the same on one machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from creditops.errors import CreditopsError
from creditops.services.context import AppContext, make_home_private
from creditops.services.monitoring import CheckRequest, run_checks
from creditops.settings import Settings
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.migrations_api import ensure_current
from creditops.store.monitoring_repositories import MonitorStateRepository
from creditops.store.repositories import DecisionRepository

log = logging.getLogger("creditops.worker")
ADVISORY_LOCK_ID = 0x63726564  # "cred"


@contextlib.contextmanager
def scheduler_lock(engine: Engine, settings: Settings) -> Iterator[bool]:
    """Yields True when this process holds the scheduler lock for this tick."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = bool(
                conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_ID}
                ).scalar()
            )
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_ID})
                    conn.commit()
        return
    path = settings.home_dir / "worker.lock"
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
        MonitorStateRepository(session).put(f"schedule:{model}", {"last_check_at": at.isoformat()})


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
            except CreditopsError as exc:
                log.error("checks of %s failed: %s", model, exc.message)
                continue
            mark_checked(sessions, model, now)
            ran.append(outcome.summary())
            log.info("checked %s (%s): %s", model, reason, outcome.summary())
    return ran


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
    log.warning("creditops worker started (tick %.0fs)", settings.monitor.tick_seconds)
    try:
        while not stop.is_set():
            run_tick(ctx, sessions, engine)
            if once:
                break
            stop.wait(settings.monitor.tick_seconds)
    finally:
        engine.dispose()
