"""The decision log writer: every returned decision is committed first, by group commit.

The decision service must durably record each decision before it answers, but a commit per
request would cost one fsync per request (``synchronous=FULL`` on SQLite, WAL flush on
PostgreSQL) and serialize all workers on the write lock. Instead requests hand their records
to one writer thread and wait: the thread takes whatever has queued up (up to ``max_batch``
records, waiting at most ``max_wait_ms`` for more), inserts it in ONE transaction (on
SQLite as multi-row INSERT statements, elsewhere with one executemany), commits, and only
then resolves the futures of that batch. Under load many requests share one fsync; when
idle a request waits at most ``max_wait_ms`` extra.

Guarantees: a future resolves successfully only after the COMMIT containing its records
returned; a submission (one ``submit`` call) is atomic, never split across transactions; a
failed write fails the futures, it never drops records silently. If one submission in a
batch is rejected by the database (e.g. a duplicate ``decision_id``), the batch is retried
one submission per transaction so the others still commit. Transient errors (SQLite busy,
PostgreSQL serialization failures, lost connections) are retried with exponential backoff.
See ``docs/decisions/0004-decision-log-group-commit.md``.

With ``events=True`` each decision also gets its ``decision.created`` event in the outbox
(``event_outbox``, :mod:`creditops.store.outbox`), inserted in the SAME transaction as the
decisions of the group (one more multi-row INSERT / executemany per group): an event exists
exactly when its decision was committed. See ``docs/events.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Engine, Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection

from creditops.errors import CreditopsError
from creditops.store.decision_records import DecisionRecord, PreparedInsert
from creditops.store.engine import StoreUnavailableError, is_transient_error
from creditops.store.outbox import PreparedOutboxInsert, decision_event
from creditops.store.tables import DecisionRow

__all__ = ["DecisionLogError", "DecisionLogWriter"]

log = logging.getLogger(__name__)


class DecisionLogError(CreditopsError):
    """Decision records could not be committed; they are NOT stored.

    ``transient`` says whether the cause was a (persistent) transient condition such as a
    busy or unreachable database, as opposed to records the database refused.
    """

    code = "decision_log_failed"

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(slots=True)
class _Pending:
    """One submission. Exactly one of ``future`` (``submit``) and ``waiter`` (``write``)."""

    rows: list[tuple[Any, ...]]
    future: Future[None] | None
    waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
    events: list[tuple[Any, ...]] = field(default_factory=list)  # outbox rows, same commit
    live: bool = field(default=True)  # False once the caller cancelled (still written)
    released: bool = field(default=False)  # counted out of the queue depth


_STOP: Final = object()
# PostgreSQL's limit of bound parameters per statement is 65535; stay well below it.
_PG_MAX_VARIABLES: Final = 30_000


class DecisionLogWriter:
    """Group-commit writer of :class:`DecisionRecord` (see the module docstring).

    Args:
        engine: engine of the service store (from ``create_db_engine``).
        max_batch: most records per transaction (a larger single submission is committed
            alone, unsplit).
        max_wait_ms: longest wait for more records once the first one arrived.
        on_commit: called as ``on_commit(batch_size, seconds)`` after each successful
            commit, from the writer thread (for metrics; exceptions are logged and ignored).
        retries: retries of a transaction that failed with a transient error.
        retry_backoff_s: first retry delay; doubled for each further retry.
        events: also write each decision's ``decision.created`` event to the outbox, in
            the same transaction.
    """

    def __init__(  # noqa: PLR0913 - the engine and keyword-only tuning of the group commit
        self,
        engine: Engine,
        *,
        max_batch: int = 512,
        max_wait_ms: float = 2.0,
        on_commit: Callable[[int, float], None] | None = None,
        retries: int = 5,
        retry_backoff_s: float = 0.05,
        events: bool = False,
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0 or retries < 0 or retry_backoff_s < 0:
            raise ValueError("max_batch >= 1, max_wait_ms >= 0, retries >= 0, backoff >= 0")
        self._engine = engine
        self._table: Table = DecisionRow.__table__  # type: ignore[assignment]
        self._prepared = PreparedInsert(engine, self._table)
        self._outbox = PreparedOutboxInsert(engine) if events else None
        self._connection: PoolProxiedConnection | None = None  # owned by the writer thread
        self._max_variables: int | None = None
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000.0
        self._on_commit = on_commit
        self._retries = retries
        self._backoff_s = retry_backoff_s
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._depth = 0

    # -- public API -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the background writer thread (once; later calls do nothing)."""
        with self._lock:
            if self._closed:
                raise StoreUnavailableError("The decision log writer was closed.")
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="creditops-decision-log", daemon=True
            )
            self._thread.start()

    def submit(self, records: Sequence[DecisionRecord]) -> Future[None]:
        """Queue ``records``; the future resolves after the commit that stored them.

        Thread-safe. The future carries a :class:`DecisionLogError` if they could not be
        stored. Raises :class:`StoreUnavailableError` if the writer is not running.
        """
        future: Future[None] = Future()
        if not records:
            future.set_result(None)
            return future
        self._enqueue(self._pending(records, future, None))
        return future

    async def write(self, records: Sequence[DecisionRecord]) -> None:
        """Submit ``records`` and wait (without blocking the event loop) for their commit.

        Cancelling the awaiting task does not withdraw the records: they are still written.
        The writer wakes each event loop once per committed batch, not once per request.
        """
        if not records:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._enqueue(self._pending(records, None, (loop, waiter)))
        await asyncio.shield(waiter)

    def _pending(
        self,
        records: Sequence[DecisionRecord],
        future: Future[None] | None,
        waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None,
    ) -> _Pending:
        """A submission: the decision rows and, with events, their outbox rows."""
        pending = _Pending([self._prepared.row(r) for r in records], future, waiter)
        if self._outbox is not None:
            pending.events = [self._outbox.row(decision_event(r)) for r in records]
        return pending

    def _enqueue(self, pending: _Pending) -> None:
        with self._lock:
            if self._closed or self._thread is None:
                raise StoreUnavailableError("The decision log writer is not running.")
            self._depth += len(pending.rows)
            self._queue.put(pending)

    def queue_depth(self) -> int:
        """Records submitted but not yet committed (or failed)."""
        with self._lock:
            return self._depth

    def close(self, timeout: float = 10.0) -> None:
        """Commit everything already submitted, then stop the thread.

        If the thread does not finish within ``timeout`` seconds (e.g. the database hangs),
        the submissions it has not picked up yet are failed with :class:`DecisionLogError`.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is None:
                return
            self._queue.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            log.error("decision log writer did not stop within %.1f s", timeout)
            self._fail_unclaimed()

    # -- writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._drop_connection(invalidate=False)

    def _loop(self) -> None:
        carry: _Pending | None = None
        stopping = False
        while True:
            if carry is not None:
                first, carry = carry, None
            elif stopping:
                return
            else:
                item = self._queue.get()
                if not isinstance(item, _Pending):
                    return
                first = item
            batch, carry, stop_seen = self._gather(first)
            stopping = stopping or stop_seen
            try:
                self._commit_batch(batch)
            except BaseException as exc:  # never let the thread die with futures pending
                log.exception("decision log writer: unexpected error")
                self._fail(batch, exc)

    def _gather(self, first: _Pending) -> tuple[list[_Pending], _Pending | None, bool]:
        """Collect a batch starting with ``first``: (batch, carried-over item, stop seen)."""
        batch = [first]
        size = len(first.rows)
        deadline = time.monotonic() + self._max_wait_s
        while size < self._max_batch:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0:
                    item = self._queue.get(timeout=remaining)
                else:
                    item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, _Pending):
                return batch, None, True
            if size + len(item.rows) > self._max_batch:
                return batch, item, False
            batch.append(item)
            size += len(item.rows)
        return batch, None, False

    def _commit_batch(self, batch: list[_Pending]) -> None:
        for pending in batch:
            # After this a caller can no longer cancel the future; if it already did, the
            # records are written anyway (the decision may have been sent).
            if pending.future is not None:
                pending.live = pending.future.set_running_or_notify_cancel()
        rows = [row for pending in batch for row in pending.rows]
        events = [event for pending in batch for event in pending.events]
        error = self._insert(rows, events)
        if error is None:
            self._resolve(batch)
            return
        if len(batch) > 1 and not is_transient_error(error):
            # Isolate the submission(s) the database refuses; commit the others.
            for pending in batch:
                single_error = self._insert(pending.rows, pending.events)
                if single_error is None:
                    self._resolve([pending])
                else:
                    self._fail([pending], single_error)
            return
        self._fail(batch, error)

    def _insert(
        self, rows: list[tuple[Any, ...]], events: list[tuple[Any, ...]]
    ) -> Exception | None:
        """Insert and commit ``rows`` (and their outbox ``events``) in one transaction, with
        retries; the error or None."""
        for attempt in range(self._retries + 1):
            started = time.perf_counter()
            try:
                self._execute(rows, events)
            except Exception as exc:
                if attempt < self._retries and is_transient_error(exc):
                    log.warning("decision log: transient error, retrying: %s", exc)
                    time.sleep(self._backoff_s * 2**attempt)
                    continue
                return exc
            self._notify(len(rows), time.perf_counter() - started)
            return None
        raise AssertionError("unreachable")  # pragma: no cover

    def _execute(self, rows: list[tuple[Any, ...]], events: list[tuple[Any, ...]]) -> None:
        """One transaction on the writer's connection; DBAPI errors come out as SQLAlchemy's
        ``DBAPIError`` (as ``Connection.execute`` would raise them) so that
        :func:`is_transient_error` classifies them the same way."""
        prepared = self._prepared
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        connection = self._connection
        cursor = connection.cursor()
        try:
            outbox = self._outbox
            if prepared.is_sqlite:
                # The engine turned the sqlite3 module's BEGIN off: a single statement is a
                # transaction of its own (autocommit), several need an explicit one.
                limit = self._sqlite_max_variables()
                statements = prepared.sqlite_statements(rows, limit)
                if outbox is not None and events:
                    statements += outbox.statements(events, limit)
                if len(statements) > 1:
                    cursor.execute("BEGIN IMMEDIATE")
                for sql, parameters in statements:
                    cursor.execute(sql, parameters)
            else:
                cursor.executemany(prepared.sql, prepared.parameters(rows))
                if outbox is not None and events:
                    for sql, parameters in outbox.statements(events, _PG_MAX_VARIABLES):
                        cursor.execute(sql, parameters)
            cursor.close()
            connection.commit()
        except prepared.dbapi_error as exc:
            disconnected = self._engine.dialect.is_disconnect(exc, connection, cursor)  # type: ignore[arg-type]
            with contextlib.suppress(Exception):
                cursor.close()
            self._drop_connection(invalidate=True)
            raise DBAPIError.instance(
                prepared.sql,
                None,
                exc,
                prepared.dbapi_error,
                connection_invalidated=disconnected,
                dialect=self._engine.dialect,
            ) from exc
        except BaseException:
            with contextlib.suppress(Exception):
                cursor.close()
            self._drop_connection(invalidate=True)
            raise

    def _sqlite_max_variables(self) -> int:
        """SQLite's limit on bound parameters per statement (32766 by default since 3.32,
        999 before), read from the connection once."""
        if self._max_variables is None:
            driver = self._connection.driver_connection if self._connection else None
            getlimit = getattr(driver, "getlimit", None)  # Python 3.11+
            limit = sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER
            self._max_variables = int(getlimit(limit)) if getlimit else 999
        return self._max_variables

    def _drop_connection(self, *, invalidate: bool) -> None:
        """Give the connection back (after a failure: roll back and discard it)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if invalidate:
                # Roll back first: an open SQLite transaction would keep the write lock
                # until the connection is garbage-collected.
                with contextlib.suppress(Exception):
                    connection.rollback()
                connection.invalidate()
            else:
                connection.close()
        except Exception:  # pragma: no cover - best effort on a broken connection
            log.warning("decision log: could not release its connection", exc_info=True)

    def _notify(self, size: int, seconds: float) -> None:
        if self._on_commit is None:
            return
        try:
            self._on_commit(size, seconds)
        except Exception:
            log.exception("decision log: on_commit callback failed")

    def _resolve(self, batch: list[_Pending]) -> None:
        self._settle(batch, None)
        self._release(batch)

    def _settle(self, batch: list[_Pending], errors: list[BaseException] | None) -> None:
        """Resolve (``errors`` None) or fail each submission; one loop wake-up per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], Any]]] = {}
        for k, pending in enumerate(batch):
            error = None if errors is None else errors[k]
            if pending.future is not None:
                if not pending.live or pending.future.done():
                    continue
                if error is None:
                    pending.future.set_result(None)
                else:
                    pending.future.set_exception(error)
            elif pending.waiter is not None:
                loop, waiter = pending.waiter
                by_loop.setdefault(loop, []).append((waiter, error))
        for loop, waiters in by_loop.items():
            # RuntimeError: the loop closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_waiters, waiters)

    def _fail(self, batch: list[_Pending], exc: BaseException) -> None:
        transient = is_transient_error(exc)
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        errors: list[BaseException] = []
        for _ in batch:
            error = DecisionLogError(
                f"Decision records were not stored: {type(exc).__name__}: {first_line}",
                transient=transient,
            )
            error.__cause__ = exc
            errors.append(error)
        self._settle(batch, errors)
        self._release(batch)

    def _release(self, batch: list[_Pending]) -> None:
        with self._lock:
            for pending in batch:
                if not pending.released:
                    pending.released = True
                    self._depth -= len(pending.rows)

    def _fail_unclaimed(self) -> None:
        unclaimed: list[_Pending] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Pending):
                unclaimed.append(item)
        self._queue.put(_STOP)  # the thread may still be waiting for it
        for pending in unclaimed:
            if pending.future is not None:
                pending.live = pending.future.set_running_or_notify_cancel()
        self._fail(unclaimed, StoreUnavailableError("The decision log closed before commit."))


def _settle_waiters(waiters: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    """On the event loop: complete the waiters of one committed (or failed) batch."""
    for waiter, error in waiters:
        if waiter.done():  # cancelled: the records were written all the same
            continue
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)
