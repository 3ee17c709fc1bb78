"""Integration tests of the service store on BOTH backends: SQLite (a file in tmp_path) and
the real PostgreSQL (``CREDITOPS_TEST_POSTGRES_URL``, default the local server, database
``test``), each test in its own freshly created schema that is dropped afterwards.

PostgreSQL is part of the contract: if it is unreachable these tests FAIL, they do not skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, func, inspect, select, text
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.orm import Session, sessionmaker

from creditops.errors import ConfigError, InvalidInputError, NotFoundError
from creditops.store.admin_repositories import (
    ApiKeyRepository,
    AuditRepository,
    ModelControlRepository,
)
from creditops.store.decision_log import DecisionLogError, DecisionLogWriter
from creditops.store.decision_records import DecisionRecord
from creditops.store.engine import (
    StoreUnavailableError,
    check_database,
    create_db_engine,
    default_database_url,
    normalize_database_url,
    run_transaction,
    session_factory,
)
from creditops.store.migrations_api import (
    VERSION_TABLE,
    current_revision,
    downgrade_database,
    ensure_current,
    head_revision,
    schema_differences,
    upgrade_database,
)
from creditops.store.repositories import DecisionRepository, OutcomeRepository, ReviewRepository
from creditops.store.tables import DecisionRow, OutcomeRow, ReviewRow, metadata

pytestmark = pytest.mark.integration

PG_URL = os.environ.get(
    "CREDITOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgresql"]
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


# -- fixtures -----------------------------------------------------------------------------
def _pg_admin_conninfo() -> str:
    url = normalize_database_url(PG_URL)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh PostgreSQL schema (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'creditops.db'}"
        return
    schema = f"creditops_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(_pg_admin_conninfo(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required for the store tests and is not reachable at {PG_URL} "
            f"(set CREDITOPS_TEST_POSTGRES_URL): {exc}",
            pytrace=False,
        )
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{PG_URL}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    upgrade_database(url)
    eng = create_db_engine(url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def make_record(
    rng: random.Random,
    *,
    created_at: datetime = T0,
    decision: str | None = None,
    model: str = "pd_model",
    application_id: str | None = None,
) -> DecisionRecord:
    decision_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return DecisionRecord(
        decision_id=decision_id,
        application_id=application_id or f"app-{rng.randrange(10**9)}",
        model_name=model,
        model_version="3",
        policy_version="p1",
        pd=rng.random(),
        score=rng.uniform(300, 850),
        decision=decision or rng.choice(["approve", "review", "decline"]),
        reasons=[{"code": "R01", "feature": "income", "contribution": -0.25}],
        inputs={"income": rng.randrange(10_000, 200_000), "purpose": "car"},
        latency_ms=rng.uniform(0.1, 5),
        created_at=created_at,
        request_id=f"req-{rng.randrange(10**6)}",
        api_key_id=None,
        route="production",
        suspended=False,
    )


def insert_records(sessions: sessionmaker[Session], records: list[DecisionRecord]) -> None:
    with sessions.begin() as session:
        DecisionRepository(session).add_many(records)


def stored_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(DecisionRow.decision_id)).scalars())


# -- engine ---------------------------------------------------------------------------------
def test_default_url_and_normalization(tmp_path: Path) -> None:
    assert default_database_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/creditops.db"
    assert normalize_database_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_database_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(ConfigError):
        normalize_database_url("mysql://u@h/db")
    with pytest.raises(ConfigError):
        normalize_database_url("not a url")


def test_sqlite_connections_get_the_pragmas(tmp_path: Path) -> None:
    eng = create_db_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")
    try:
        with eng.connect() as conn:
            values = {
                pragma: conn.exec_driver_sql(f"PRAGMA {pragma}").scalar()
                for pragma in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
    finally:
        eng.dispose()
    assert values == {
        "journal_mode": "wal",
        "synchronous": 2,
        "busy_timeout": 30000,
        "foreign_keys": 1,
    }


def test_check_database(engine: Engine) -> None:
    check_database(engine)
    unreachable = create_db_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    try:
        with pytest.raises(StoreUnavailableError) as info:
            check_database(unreachable)
    finally:
        unreachable.dispose()
    assert info.value.code == "store_unavailable"


def test_foreign_keys_are_enforced(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(SAIntegrityError), sessions.begin() as session:
        session.add(
            OutcomeRow(
                decision_id=str(uuid.uuid4()),
                application_id="a",
                defaulted=True,
                observed_at=T0,
                recorded_at=T0,
            )
        )


# -- migrations -----------------------------------------------------------------------------
def test_migrations_up_down_up_match_metadata(url: str) -> None:
    assert current_revision(url) is None
    upgrade_database(url, "0004")
    eng = create_db_engine(url)
    try:  # records made before the chain existed are chained by the migration
        with eng.begin() as conn:
            for i in range(3):
                conn.execute(
                    text(
                        "INSERT INTO audit_log (at, actor, action, target, outcome, details) "
                        "VALUES (:at, 'old', 'key.create', :t, 'ok', :d)"
                    ),
                    {"at": T0.replace(tzinfo=None), "t": f"k{i}", "d": f'{{"n": {i}}}'},
                )
    finally:
        eng.dispose()
    upgrade_database(url)
    assert current_revision(url) == head_revision() == "0006"
    assert schema_differences(url) == []
    eng = create_db_engine(url)
    try:
        with session_factory(eng).begin() as session:
            AuditRepository(session).add("new", "model.promote", "taiwan:2", "ok", {"a": 1})
        with session_factory(eng)() as session:
            verified = AuditRepository(session).verify()
        assert verified["ok"] and verified["records"] == 4, verified
    finally:
        eng.dispose()

    downgrade_database(url, "0005")  # the event outbox goes
    eng = create_db_engine(url)
    try:
        assert "event_outbox" not in set(inspect(eng).get_table_names())
    finally:
        eng.dispose()
    downgrade_database(url, "0004")  # the chain goes
    eng = create_db_engine(url)
    try:
        assert "audit_head" not in set(inspect(eng).get_table_names())
    finally:
        eng.dispose()
    downgrade_database(url, "0003")  # one step back: the deployment tables go
    assert current_revision(url) == "0003"
    eng = create_db_engine(url)
    try:
        names = set(inspect(eng).get_table_names())
        assert not {"deployments", "serving_processes", "shadow_decisions"} & names
        assert "deployment_id" not in {c["name"] for c in inspect(eng).get_columns("decisions")}
    finally:
        eng.dispose()
    downgrade_database(url, "0002")  # one step back: the job tables go
    assert current_revision(url) == "0002"
    eng = create_db_engine(url)
    try:
        names = set(inspect(eng).get_table_names())
        assert "jobs" not in names and "retrain_triggers" not in names
        assert "monitoring_reports" in names
    finally:
        eng.dispose()
    downgrade_database(url, "0001")  # and the monitoring tables
    assert current_revision(url) == "0001"
    eng = create_db_engine(url)
    try:
        assert "monitoring_reports" not in set(inspect(eng).get_table_names())
    finally:
        eng.dispose()

    downgrade_database(url, "base")
    assert current_revision(url) is None
    eng = create_db_engine(url)
    try:
        assert set(inspect(eng).get_table_names()) <= {VERSION_TABLE}
    finally:
        eng.dispose()

    upgrade_database(url)
    assert current_revision(url) == "0006"
    assert schema_differences(url) == []
    eng = create_db_engine(url)
    try:
        names = set(inspect(eng).get_table_names())
        with eng.begin() as conn:  # a hand-made change must be detected
            conn.execute(text("ALTER TABLE decisions ADD COLUMN extra INTEGER"))
    finally:
        eng.dispose()
    assert names == set(metadata.tables) | {VERSION_TABLE}
    diffs = schema_differences(url)
    assert [d[0] for d in diffs] == ["remove_column"]


def test_concurrent_ensure_current_is_safe(url: str) -> None:
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            ensure_current(url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert current_revision(url) == head_revision()


def test_ensure_current_retries_a_transient_lock_and_nothing_else(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that meets "database is locked" at start-up retries; other errors surface."""
    from creditops.store import migrations_api

    real_upgrade = migrations_api.upgrade_database
    calls: list[str] = []

    def locked(message: str) -> StoreUnavailableError:
        cause = SAOperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError(message))
        error = StoreUnavailableError(f"Cannot migrate the service database: {message}")
        error.__cause__ = cause
        return error

    def flaky_upgrade(url: str, revision: str = "head") -> None:
        calls.append(revision)
        if len(calls) <= 2:
            raise locked("database is locked")
        real_upgrade(url, revision)

    monkeypatch.setattr(migrations_api, "upgrade_database", flaky_upgrade)
    downgrade_database(sqlite_url, "base")
    ensure_current(sqlite_url)
    assert len(calls) == 3 and current_revision(sqlite_url) == head_revision()

    def broken_upgrade(url: str, revision: str = "head") -> None:
        calls.append(revision)
        raise locked("no such table: decisions")

    calls.clear()
    monkeypatch.setattr(migrations_api, "upgrade_database", broken_upgrade)
    with pytest.raises(StoreUnavailableError, match="no such table"):
        ensure_current(sqlite_url)
    assert len(calls) == 1  # not transient: no retry


def test_unknown_revision_is_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInputError):
        upgrade_database(url, "9999")


# -- repositories ---------------------------------------------------------------------------
def test_decision_round_trip_json_and_aware_datetimes(sessions: sessionmaker[Session]) -> None:
    rng = random.Random(1)
    cet = timezone(timedelta(hours=1))
    record = make_record(rng, created_at=T0.astimezone(cet))
    record = DecisionRecord(
        **{
            **record.as_row(),
            "reasons": [
                {"code": "R01", "text": "Einkommen zu niedrig – ä", "value": None},
                {"code": "R02", "contribution": 0.125},
            ],
            "inputs": {
                "income": 52000.5,
                "missing": float("nan"),
                "flags": [1, 2],
                "nested": {"a": "b"},
            },
            "api_key_id": "k1",
            "suspended": True,
        }
    )
    insert_records(sessions, [record])
    with sessions() as session:
        row = DecisionRepository(session).get(record.decision_id)
        assert row is not None
        assert row.created_at == T0 and row.created_at.tzinfo == UTC
        assert row.created_at.microsecond == T0.microsecond
        assert row.reasons == record.reasons
        # JSON has no NaN: a missing value is stored as null on both backends.
        assert row.inputs == {**record.inputs, "missing": None}
        assert (row.pd, row.score, row.latency_ms) == (record.pd, record.score, record.latency_ms)
        assert (row.api_key_id, row.suspended, row.route) == ("k1", True, "production")
        assert DecisionRepository(session).get(str(uuid.uuid4())) is None


def test_decision_record_validation() -> None:
    rng = random.Random(2)
    good = make_record(rng).as_row()
    for bad in (
        {"created_at": datetime(2026, 1, 1)},
        {"decision": "maybe"},
        {"decision_id": "not-a-uuid"},
    ):
        with pytest.raises(ValueError):
            DecisionRecord(**{**good, **bad})


def test_get_by_application_and_count(sessions: sessionmaker[Session]) -> None:
    rng = random.Random(3)
    records = [
        make_record(rng, application_id="A", created_at=T0 + timedelta(minutes=2)),
        make_record(rng, application_id="A", created_at=T0, model="other"),
        make_record(rng, application_id="B", created_at=T0 + timedelta(minutes=1)),
    ]
    insert_records(sessions, records)
    with sessions() as session:
        repo = DecisionRepository(session)
        found = repo.get_by_application("A")
        assert [r.decision_id for r in found] == [records[1].decision_id, records[0].decision_id]
        assert repo.count() == 3
        assert repo.count(since=T0 + timedelta(minutes=1)) == 2
        assert repo.count(model="other") == 1
        assert repo.count(since=T0 + timedelta(minutes=1), model="other") == 0


def test_outcome_recording_is_idempotent(sessions: sessionmaker[Session]) -> None:
    rng = random.Random(4)
    record = make_record(rng)
    insert_records(sessions, [record])
    observed = T0 + timedelta(days=90)

    def record_outcome(defaulted: bool, at: datetime) -> str:
        with sessions.begin() as session:
            return OutcomeRepository(session).record(
                record.decision_id, record.application_id, defaulted, at
            )

    assert record_outcome(True, observed) == "created"
    assert record_outcome(True, observed) == "unchanged"
    # The same instant in another timezone is the same outcome.
    assert record_outcome(True, observed.astimezone(timezone(timedelta(hours=-5)))) == "unchanged"
    assert record_outcome(False, observed) == "updated"
    assert record_outcome(False, observed) == "unchanged"
    assert record_outcome(False, observed + timedelta(days=1)) == "updated"
    with sessions() as session:
        stored = OutcomeRepository(session).get(record.decision_id)
        assert stored is not None
        assert (stored.defaulted, stored.observed_at) == (False, observed + timedelta(days=1))
        assert session.scalar(select(func.count()).select_from(OutcomeRow)) == 1
    with pytest.raises(NotFoundError), sessions.begin() as session:
        OutcomeRepository(session).record(str(uuid.uuid4()), "x", True, observed)
    with pytest.raises(InvalidInputError), sessions.begin() as session:
        OutcomeRepository(session).record(record.decision_id, "other-app", True, observed)


def test_purge_removes_only_older_decisions_with_their_children(
    sessions: sessionmaker[Session],
) -> None:
    rng = random.Random(5)
    cutoff = T0 + timedelta(days=10)
    old = [
        make_record(rng, created_at=T0 + timedelta(days=i), decision="review") for i in range(10)
    ]
    at_cutoff = make_record(rng, created_at=cutoff, decision="review")
    new = [at_cutoff] + [
        make_record(rng, created_at=cutoff + timedelta(hours=i + 1), decision="review")
        for i in range(5)
    ]
    insert_records(sessions, old + new)
    with sessions.begin() as session:
        for record in (old[0], old[5], new[0], new[3]):
            OutcomeRepository(session).record(
                record.decision_id, record.application_id, True, cutoff
            )
            ReviewRepository(session).add(record.decision_id, "decline", "alice", at=cutoff)
    with sessions.begin() as session:
        assert DecisionRepository(session).purge_before(cutoff) == len(old)
    with sessions() as session:
        remaining = set(session.scalars(select(DecisionRow.decision_id)))
        assert remaining == {r.decision_id for r in new}
        outcomes = set(session.scalars(select(OutcomeRow.decision_id)))
        reviews = set(session.scalars(select(ReviewRow.decision_id)))
        assert outcomes == reviews == {new[0].decision_id, new[3].decision_id}
    with sessions.begin() as session:
        assert DecisionRepository(session).purge_before(cutoff) == 0


@pytest.mark.parametrize(
    ("since_minutes", "model", "chunk_size"),
    [(None, None, 16), (None, None, 1), (7, None, 16), (None, "m1", 25), (3, "m2", 300)],
    ids=["all", "chunk-of-one", "since", "model", "since-model-one-chunk"],
)
def test_iter_since_streams_every_row_once_in_keyset_order(
    sessions: sessionmaker[Session], since_minutes: int | None, model: str | None, chunk_size: int
) -> None:
    rng = random.Random(6)
    # Only 10 distinct timestamps: many ties, which the decision_id tie-breaker must handle.
    records = [
        make_record(
            rng,
            created_at=T0 + timedelta(minutes=rng.randrange(10)),
            model=rng.choice(["m1", "m2"]),
        )
        for _ in range(157)
    ]
    insert_records(sessions, records)
    since = None if since_minutes is None else T0 + timedelta(minutes=since_minutes)
    expected = sorted(
        (
            (r.created_at, r.decision_id)
            for r in records
            if (since is None or r.created_at >= since) and (model is None or r.model_name == model)
        ),
    )
    with sessions() as session:
        repo = DecisionRepository(session)
        chunks = list(repo.iter_since(since, model, chunk_size))
        got = [(row.created_at, row.decision_id) for chunk in chunks for row in chunk]
        assert repo.count(since, model) == len(expected)
    assert got == expected
    assert all(0 < len(chunk) <= chunk_size for chunk in chunks)
    assert len(chunks) == -(-len(expected) // chunk_size)


def test_pending_reviews_and_override_rate(sessions: sessionmaker[Session]) -> None:
    rng = random.Random(7)
    refer = [
        make_record(rng, created_at=T0 + timedelta(minutes=i), decision="review") for i in range(6)
    ]
    other = [make_record(rng, decision="approve"), make_record(rng, decision="decline")]
    insert_records(sessions, refer + other)
    with sessions() as session:
        assert ReviewRepository(session).override_rate() is None
    with sessions.begin() as session:
        reviews = ReviewRepository(session)
        reviews.add(refer[1].decision_id, "approve", "bob", at=T0)
        reviews.add(
            refer[3].decision_id,
            "decline",
            "bob",
            override_reason_code="FRAUD",
            note="docs",
            at=T0 + timedelta(days=1),
        )
        reviews.add(refer[3].decision_id, "approve", "carol", at=T0 + timedelta(days=2))
        reviews.add(other[1].decision_id, "approve", "carol", at=T0 + timedelta(days=2))
        with pytest.raises(InvalidInputError):
            reviews.add(refer[0].decision_id, "review", "bob")
        with pytest.raises(NotFoundError):
            reviews.add(str(uuid.uuid4()), "approve", "bob")
    with sessions() as session:
        repo = DecisionRepository(session)
        pending = [r.decision_id for r in repo.pending_reviews(limit=10)]
        assert pending == [refer[i].decision_id for i in (0, 2, 4, 5)]
        assert [r.decision_id for r in repo.pending_reviews(limit=2, offset=1)] == pending[1:3]
        reviews = ReviewRepository(session)
        assert reviews.override_rate() == pytest.approx(1 / 4)
        assert reviews.override_rate(since=T0 + timedelta(hours=1)) == pytest.approx(1 / 3)
        assert reviews.override_rate(since=T0 + timedelta(days=30)) is None
        history = reviews.for_decision(refer[3].decision_id)
        assert [(r.final_decision, r.reviewer) for r in history] == [
            ("decline", "bob"),
            ("approve", "carol"),
        ]
        original = repo.get(refer[3].decision_id)
        assert original is not None and original.decision == "review"  # never replaced


def test_api_keys(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        keys = ApiKeyRepository(session)
        keys.add("k1", "first", "a" * 64, ["predict"], created_at=T0)
        keys.add("k2", "second", "b" * 64, ["predict", "admin"], created_at=T0 + timedelta(1))
    with sessions.begin() as session:
        keys = ApiKeyRepository(session)
        active = keys.get_active_by_hash("b" * 64)
        assert active is not None and active.key_id == "k2"
        assert active.scopes == ["predict", "admin"]
        assert keys.get_active_by_hash("c" * 64) is None
        assert keys.revoke("k1", at=T0 + timedelta(2)) is True
        assert keys.revoke("k1") is False
        assert keys.revoke("nope") is False
        keys.touch("k2", T0 + timedelta(3))
    with sessions() as session:
        keys = ApiKeyRepository(session)
        assert keys.get_active_by_hash("a" * 64) is None
        listed = keys.list()
        assert [k.key_id for k in listed] == ["k1", "k2"]
        assert listed[0].revoked_at == T0 + timedelta(2)
        assert listed[1].last_used_at == T0 + timedelta(3) and listed[1].revoked_at is None
    with pytest.raises(SAIntegrityError), sessions.begin() as session:
        ApiKeyRepository(session).add("k3", "dup hash", "b" * 64, [])


def test_audit_log(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        audit = AuditRepository(session)
        for i, action in enumerate(["key.create", "model.suspend", "key.create", "key.revoke"]):
            audit.add("cli:alice", action, f"t{i}", "ok", {"i": i}, at=T0 + timedelta(i))
        with pytest.raises(InvalidInputError):
            audit.add("cli:alice", "x", "y", "maybe")
    with sessions() as session:
        audit = AuditRepository(session)
        assert [r.target for r in audit.list()] == ["t3", "t2", "t1", "t0"]
        assert [r.target for r in audit.list(limit=2)] == ["t3", "t2"]
        created = audit.list(action="key.create")
        assert [(r.target, r.details, r.at) for r in created] == [
            ("t2", {"i": 2}, T0 + timedelta(2)),
            ("t0", {"i": 0}, T0),
        ]


def test_model_controls(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        controls = ModelControlRepository(session)
        assert controls.get("pd") is None
        row = controls.set("pd", True, "drift", "cli:alice", at=T0)
        assert (row.suspended, row.reason, row.updated_by, row.updated_at) == (
            True,
            "drift",
            "cli:alice",
            T0,
        )
        controls.set("other", False, "", "cli:alice", at=T0)
    with sessions.begin() as session:
        row = ModelControlRepository(session).set(
            "pd", False, "fixed", "key:k1", at=T0 + timedelta(1)
        )
        assert (row.suspended, row.reason, row.updated_by) == (False, "fixed", "key:k1")
    with sessions() as session:
        listed = ModelControlRepository(session).list()
        assert [(r.model_name, r.suspended, r.updated_at) for r in listed] == [
            ("other", False, T0),
            ("pd", False, T0 + timedelta(1)),
        ]


# -- group-commit writer --------------------------------------------------------------------
class CommitLog:
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, size: int, seconds: float) -> None:
        assert seconds >= 0
        with self._lock:
            self.sizes.append(size)


def run_threads(n: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)


def test_writer_groups_concurrent_submissions_and_loses_nothing(engine: Engine) -> None:
    commits = CommitLog()
    writer = DecisionLogWriter(engine, max_batch=64, max_wait_ms=2.0, on_commit=commits)
    writer.start()
    acked: list[list[str]] = [[] for _ in range(8)]

    def client(i: int) -> None:
        rng = random.Random(100 + i)
        futures: list[tuple[str, Future[None]]] = []
        for _ in range(200):
            record = make_record(rng)
            futures.append((record.decision_id, writer.submit([record])))
        for decision_id, future in futures:
            future.result(timeout=30)
            acked[i].append(decision_id)

    try:
        run_threads(8, client)
    finally:
        writer.close()
    all_acked = [d for ids in acked for d in ids]
    assert len(all_acked) == 1600
    assert sorted(stored_ids(engine)) == sorted(all_acked)
    assert sum(commits.sizes) == 1600
    assert max(commits.sizes) <= 64
    assert len(commits.sizes) < 1600 / 4, commits.sizes
    assert writer.queue_depth() == 0


def test_writer_groups_waiting_requests(engine: Engine) -> None:
    """Requests that each wait for their own commit (as the API does) still share commits."""
    commits = CommitLog()
    writer = DecisionLogWriter(engine, max_wait_ms=2.0, on_commit=commits)
    writer.start()

    def client(i: int) -> None:
        rng = random.Random(200 + i)
        for _ in range(40):
            writer.submit([make_record(rng)]).result(timeout=30)

    try:
        run_threads(8, client)
    finally:
        writer.close()
    assert sum(commits.sizes) == 320 == len(stored_ids(engine))
    assert len(commits.sizes) < 320 * 0.75, commits.sizes


def test_writer_isolates_a_refused_submission(engine: Engine) -> None:
    rng = random.Random(8)
    existing = make_record(rng)
    writer = DecisionLogWriter(engine, max_wait_ms=200.0)
    writer.start()
    try:
        writer.submit([existing]).result(timeout=10)
        dup = make_record(rng)
        good_1, good_2 = [make_record(rng)], [make_record(rng), make_record(rng)]
        # Submitted together, so they share a batch (max_wait 200 ms).
        futures = {
            "good_1": writer.submit(good_1),
            "dup_within": writer.submit([dup, dup]),
            "dup_existing": writer.submit([make_record(rng), existing]),
            "good_2": writer.submit(good_2),
        }
        for name in ("dup_within", "dup_existing"):
            error = futures[name].exception(timeout=10)
            assert isinstance(error, DecisionLogError), name
            assert isinstance(error.__cause__, SAIntegrityError)
            assert error.transient is False and error.code == "decision_log_failed"
        futures["good_1"].result(timeout=10)
        futures["good_2"].result(timeout=10)
    finally:
        writer.close()
    expected = {r.decision_id for r in [existing, *good_1, *good_2]}
    assert set(stored_ids(engine)) == expected  # nothing of the refused submissions


def test_writer_fails_futures_when_the_table_is_missing(url: str) -> None:
    eng = create_db_engine(url)  # never migrated: no decisions table
    writer = DecisionLogWriter(eng, retries=2, retry_backoff_s=0.01)
    writer.start()
    try:
        future = writer.submit([make_record(random.Random(9))])
        error = future.exception(timeout=10)
        assert isinstance(error, DecisionLogError)
        assert error.transient is False
        assert writer.queue_depth() == 0
    finally:
        writer.close()
        eng.dispose()


def test_writer_lifecycle(engine: Engine) -> None:
    rng = random.Random(10)
    writer = DecisionLogWriter(engine, max_wait_ms=50.0)
    with pytest.raises(StoreUnavailableError):
        writer.submit([make_record(rng)])  # not started
    writer.start()
    empty = writer.submit([])
    assert empty.done() and empty.result() is None
    records = [make_record(rng) for _ in range(300)]
    futures = [writer.submit([r]) for r in records]
    writer.close()  # flushes what was queued
    assert all(f.done() and f.exception() is None for f in futures)
    assert sorted(stored_ids(engine)) == sorted(r.decision_id for r in records)
    with pytest.raises(StoreUnavailableError):
        writer.submit([make_record(rng)])
    writer.close()  # idempotent


def test_writer_large_submission_is_committed_unsplit(engine: Engine) -> None:
    commits = CommitLog()
    writer = DecisionLogWriter(engine, max_batch=10, on_commit=commits)
    writer.start()
    rng = random.Random(11)
    try:
        writer.submit([make_record(rng) for _ in range(25)]).result(timeout=10)
    finally:
        writer.close()
    assert commits.sizes == [25]


def test_async_write(engine: Engine) -> None:
    writer = DecisionLogWriter(engine)
    writer.start()
    rng = random.Random(12)
    records = [[make_record(rng), make_record(rng)] for _ in range(50)]

    async def main() -> None:
        await asyncio.gather(*(writer.write(batch) for batch in records))

    try:
        asyncio.run(main())
    finally:
        writer.close()
    assert len(stored_ids(engine)) == 100


# -- SQLite under contention ----------------------------------------------------------------
@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    upgrade_database(url)
    return url


def hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Hold SQLite's write lock from another connection for ``seconds``."""
    ready = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        ready.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait(5)
    return thread


def test_writer_splits_at_sqlite_variable_limit_and_keeps_a_submission_atomic(
    sqlite_url: str,
) -> None:
    """A batch goes to SQLite as multi-row INSERTs; past the variable limit it takes several
    statements in one transaction, and every value round-trips as the ORM would store it."""
    eng = create_db_engine(sqlite_url)
    columns = len(DecisionRow.__table__.columns)

    @event.listens_for(eng, "connect")
    def two_rows_per_statement(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 2 * columns + 1)

    commits = CommitLog()
    writer = DecisionLogWriter(eng, on_commit=commits)
    writer.start()
    rng = random.Random(21)
    records = [make_record(rng, created_at=T0 + timedelta(seconds=i)) for i in range(5)]
    try:
        writer.submit(records).result(timeout=10)  # statements of 2, 2 and 1 rows
        newcomers = [make_record(rng) for _ in range(4)]
        error = writer.submit([*newcomers, records[0]]).exception(timeout=10)
    finally:
        writer.close()
    assert commits.sizes == [5]
    assert isinstance(error, DecisionLogError) and error.transient is False
    assert isinstance(error.__cause__, SAIntegrityError)
    assert sorted(stored_ids(eng)) == sorted(r.decision_id for r in records)  # none of 4 new
    with session_factory(eng)() as session:
        for record in records:
            row = DecisionRepository(session).get(record.decision_id)
            assert row is not None
            stored = {name: getattr(row, name) for name in record.as_row()}
            assert stored == record.as_row()
    eng.dispose()


def test_writer_retries_while_sqlite_is_busy(sqlite_url: str, tmp_path: Path) -> None:
    eng = create_db_engine(sqlite_url, sqlite_busy_timeout_s=0.05)
    writer = DecisionLogWriter(eng, retries=6, retry_backoff_s=0.05)
    writer.start()
    rng = random.Random(13)
    try:
        holder = hold_write_lock(tmp_path / "shared.db", 0.4)
        record = make_record(rng)
        writer.submit([record]).result(timeout=10)  # succeeds after retries
        holder.join()
        assert stored_ids(eng) == [record.decision_id]

        # When the lock outlasts every retry, the future fails (transient) instead of hanging.
        failing = DecisionLogWriter(eng, retries=1, retry_backoff_s=0.01)
        failing.start()
        holder = hold_write_lock(tmp_path / "shared.db", 1.0)
        error = failing.submit([make_record(rng)]).exception(timeout=10)
        failing.close()
        holder.join()
        assert isinstance(error, DecisionLogError) and error.transient is True
        assert "locked" in str(error.__cause__)
        assert len(stored_ids(eng)) == 1
    finally:
        writer.close()
        eng.dispose()


def test_run_transaction_retries_while_sqlite_is_busy(sqlite_url: str, tmp_path: Path) -> None:
    eng = create_db_engine(sqlite_url, sqlite_busy_timeout_s=0.05)
    factory = session_factory(eng)
    attempts: list[int] = []

    def work(session: Session) -> int:
        attempts.append(1)
        return AuditRepository(session).add("cli:t", "x.y", "t", "ok").id

    try:
        holder = hold_write_lock(tmp_path / "shared.db", 0.3)
        row_id = run_transaction(factory, work, attempts=8, backoff_s=0.05)
        holder.join()
        assert row_id == 1 and len(attempts) > 1
        holder = hold_write_lock(tmp_path / "shared.db", 0.6)
        with pytest.raises(StoreUnavailableError):
            run_transaction(factory, work, attempts=2, backoff_s=0.01)
        holder.join()
    finally:
        eng.dispose()


CHILD = textwrap.dedent(
    """
    import json, sys, threading, time, uuid
    from datetime import UTC, datetime
    from creditops.store.decision_log import DecisionLogWriter
    from creditops.store.decision_records import DecisionRecord
    from creditops.store.engine import create_db_engine

    url, start_at, seconds, tag = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    engine = create_db_engine(url)
    writer = DecisionLogWriter(engine)
    writer.start()
    acked, errors, lock = [], [], threading.Lock()

    def record():
        return DecisionRecord(
            decision_id=str(uuid.uuid4()), application_id=tag, model_name="m",
            model_version="1", policy_version="p", pd=0.1, score=600.0, decision="approve",
            reasons=[], inputs={"x": 1}, latency_ms=1.0, created_at=datetime.now(UTC),
            request_id=tag, api_key_id=None, route="production", suspended=False)

    def client(i):
        n = 0
        while time.time() < start_at + seconds:
            records = [record() for _ in range(1 + n % 3)]
            n += 1
            try:
                writer.submit(records).result(timeout=60)
            except Exception as exc:
                with lock:
                    errors.append(repr(exc))
                continue
            with lock:
                acked.extend(r.decision_id for r in records)

    time.sleep(max(0.0, start_at - time.time()))
    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    engine.dispose()
    print(json.dumps({"acked": acked, "errors": errors}))
    """
)


def test_two_processes_share_one_sqlite_file(sqlite_url: str) -> None:
    start_at = time.time() + 3.0  # both children have imported everything by then
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, sqlite_url, str(start_at), "2.0", f"proc{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    # Meanwhile this process runs read-then-write transactions on the same file (the kind
    # that deadlocks on a lock upgrade without BEGIN IMMEDIATE).
    eng = create_db_engine(sqlite_url)
    factory = session_factory(eng)
    audits = 0
    time.sleep(max(0.0, start_at - time.time()))
    while time.time() < start_at + 2.0:
        with factory.begin() as session:
            seen = DecisionRepository(session).count()
            AuditRepository(session).add("test", "probe", "t", "ok", {"seen": seen})
        audits += 1
    results: list[dict[str, Any]] = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert "locked" not in err.lower(), err
        results.append(json.loads(out))
    try:
        with eng.connect() as conn:
            rows = conn.execute(
                select(DecisionRow.decision_id, DecisionRow.application_id, DecisionRow.created_at)
            )
            by_proc: dict[str, set[str]] = {}
            spans: dict[str, list[datetime]] = {}
            for decision_id, tag, created in rows:
                by_proc.setdefault(tag, set()).add(decision_id)
                spans.setdefault(tag, []).append(created)
        with factory() as session:
            assert len(AuditRepository(session).list(limit=10**6)) == audits
    finally:
        eng.dispose()
    for i, result in enumerate(results):
        assert result["errors"] == []
        assert len(result["acked"]) > 0
        assert by_proc[f"proc{i}"] == set(result["acked"])
        assert len(result["acked"]) == len(set(result["acked"]))
    # both really wrote during the overlap (a count floor would depend on the machine's load)
    first, second = (spans[f"proc{i}"] for i in range(2))
    assert max(min(first), min(second)) < min(max(first), max(second))
