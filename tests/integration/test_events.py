"""Decision events through the transactional outbox, on BOTH store backends (a SQLite file
and a fresh PostgreSQL schema) and against REAL NATS JetStream servers:

- the shared local server at 127.0.0.1:4222 (``CREDITOPS_TEST_NATS_URL``), used with a
  stream and subjects of the test's own that are deleted afterwards;
- for the restart test, a nats-server the test starts itself on a free port with its own
  store directory, stops (SIGTERM) mid-stream and starts again, so the shared server is
  never touched.

If PostgreSQL or NATS is unreachable these tests FAIL; they do not skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema_rs
import nats
import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from creditops.services.events import (
    OutboxPublisher,
    jetstream_broker,
    outbox_backlog,
    subject_for,
)
from creditops.settings import EventSettings
from creditops.store.decision_log import DecisionLogError, DecisionLogWriter
from creditops.store.decision_records import DecisionRecord
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.migrations_api import upgrade_database
from creditops.store.outbox import OutboxRepository, event_document
from creditops.store.repositories import DecisionRepository
from creditops.store.tables import EventOutboxRow
from tests.integration.server_harness import (
    creditops_command,
    free_port,
    postgres_schema,
    service_env,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NATS_URL = os.environ.get("CREDITOPS_TEST_NATS_URL", "nats://127.0.0.1:4222")
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
DECISION_SCHEMA = json.loads((ROOT / "docs/events/decision.v1.schema.json").read_text())
MODELS = ("taiwan", "german", "home.credit")  # a dot: not allowed in a subject token
T0 = datetime(2026, 12, 4, 9, 30, 0, 123456, tzinfo=UTC)


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty store: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        database = f"sqlite:///{tmp_path / 'creditops.db'}"
        upgrade_database(database)
        yield database
        return
    with postgres_schema("creditops_events") as database:
        upgrade_database(database)
        yield database


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    eng = create_db_engine(url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@dataclass
class StreamName:
    """A stream and subject prefix of the test's own on a NATS server."""

    url: str
    stream: str
    prefix: str

    def settings(self, **overrides: Any) -> EventSettings:
        return EventSettings(
            enabled=True,
            nats_url=self.url,
            stream=self.stream,
            subject_prefix=self.prefix,
            **overrides,
        )


@pytest.fixture
def shared_stream() -> Iterator[StreamName]:
    """A fresh stream on the shared local NATS server, deleted afterwards."""
    tag = uuid.uuid4().hex[:10]
    name = StreamName(NATS_URL, f"CREDITOPS_TEST_{tag}", f"creditops-test-{tag}")
    yield name
    asyncio.run(_delete_stream(name))


async def _delete_stream(name: StreamName) -> None:
    nc = await nats.connect(name.url, connect_timeout=2, max_reconnect_attempts=1)
    try:
        await nc.jetstream().delete_stream(name.stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


def make_record(rng: random.Random, model: str, *, at: datetime = T0) -> DecisionRecord:
    return DecisionRecord(
        decision_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        application_id=f"app-{rng.randrange(10**9)}",
        model_name=model,
        model_version="3",
        policy_version="p1",
        pd=rng.random(),
        score=round(rng.uniform(300, 850), 2),
        decision=rng.choice(["approve", "review", "decline"]),
        reasons=[
            {
                "code": "R01",
                "text": "income",
                "feature": "income",
                "value": 1,
                "contribution": -0.25,
            }
        ],
        inputs={"income": rng.randrange(10_000, 200_000)},
        latency_ms=1.0,
        created_at=at,
        request_id=f"req-{rng.randrange(10**6)}",
        api_key_id=None,
        route="production",
        suspended=False,
    )


def outbox_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(EventOutboxRow).order_by(EventOutboxRow.id)).all())


async def read_stream(url: str, stream: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Every message of ``stream`` in stream order: (headers, document)."""
    nc = await nats.connect(url, connect_timeout=2)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(stream)).state
        found = []
        for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
            msg = await js.get_msg(stream, seq)
            found.append((dict(msg.headers or {}), json.loads(msg.data or b"{}")))
        return found
    finally:
        await nc.close()


# -- the outbox is written with the decisions --------------------------------------------------
def test_each_decision_gets_its_event_in_the_same_commit(engine: Engine) -> None:
    rng = random.Random(7)
    records = [make_record(rng, MODELS[i % 3]) for i in range(120)]
    writer = DecisionLogWriter(engine, max_batch=50, events=True)
    writer.start()
    try:
        futures = [writer.submit(records[i : i + 7]) for i in range(0, len(records), 7)]
        for f in futures:
            f.result(timeout=30)
        # A refused submission (a decision id already logged) leaves no event behind.
        again = writer.submit([records[0], make_record(rng, "taiwan")])
        with pytest.raises(DecisionLogError):
            again.result(timeout=30)
    finally:
        writer.close()
    rows = outbox_rows(engine)
    assert len(rows) == len(records)
    validator = jsonschema_rs.validator_for(DECISION_SCHEMA)
    by_decision = {r.decision_id: r for r in records}
    for row in rows:
        document = json.loads(row.payload)
        errors = [e.message for e in validator.iter_errors(document)]
        assert not errors, errors
        record = by_decision[document["data"]["decision_id"]]
        assert (row.event_id, row.model_name, row.event_type, row.schema_version) == (
            document["id"],
            record.model_name,
            "decision.created",
            "creditops.decision/1",
        )
        assert document["model"] == record.model_name and document["version"] == "3"
        assert document["occurred_at"] == "2026-12-04T09:30:00.123456Z"
        assert document["data"]["pd"] == record.pd and document["data"]["score"] == record.score
        assert document["data"]["reasons"] == record.reasons
        assert "inputs" not in document["data"]  # personal data stays in the decision log
        assert row.sent_at is None
    # ids follow the commit order of the submissions
    decided = [json.loads(r.payload)["data"]["decision_id"] for r in rows]
    assert decided == [r.decision_id for r in records]


def test_without_events_the_writer_writes_no_outbox_rows(engine: Engine) -> None:
    writer = DecisionLogWriter(engine)
    writer.start()
    try:
        writer.submit([make_record(random.Random(1), "taiwan")]).result(timeout=30)
    finally:
        writer.close()
    assert outbox_rows(engine) == []


def test_backlog_mark_sent_and_purge(sessions: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    events = [
        event_document(
            event_type="decision.created",
            model="taiwan",
            version="1",
            occurred_at=now - timedelta(seconds=60 - i),
            data={"i": i},
        )
        for i in range(5)
    ]
    with sessions.begin() as session:
        OutboxRepository(session).add(events)
    backlog = outbox_backlog(sessions)
    assert backlog.events == 5 and 59 <= backlog.oldest_age_s < 120
    with sessions.begin() as session:
        repo = OutboxRepository(session)
        pending = repo.unsent(3)
        assert [p.event_id for p in pending] == [e.event_id for e in events[:3]]
        assert repo.mark_sent([p.id for p in pending], at=now - timedelta(hours=2)) == 3
        assert repo.mark_sent([pending[0].id]) == 0  # already sent: unchanged
    assert outbox_backlog(sessions).events == 2
    with sessions.begin() as session:
        assert OutboxRepository(session).purge_sent(now - timedelta(hours=1)) == 3
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(EventOutboxRow)) == 2
        assert [p.event_id for p in OutboxRepository(session).unsent(10)] == [
            e.event_id for e in events[3:]
        ]


def test_unknown_event_type_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown event type 'decision\.deleted'"):
        event_document(
            event_type="decision.deleted", model="m", version=None, occurred_at=T0, data={}
        )


@pytest.mark.parametrize(
    ("event_type", "model", "subject"),
    [
        ("decision.created", "taiwan", "p.decisions.taiwan"),
        ("decision.overridden", "home.credit", "p.reviews.home_credit"),
        ("outcome.recorded", "a b*>", "p.outcomes.a_b__"),
        ("deployment.changed", "", "p.deployments._"),
    ],
    ids=["plain", "dot", "wildcards", "empty"],
)
def test_subjects(event_type: str, model: str, subject: str) -> None:
    assert subject_for("p", event_type, model) == subject


# -- publishing to the shared NATS server -------------------------------------------------------
def test_publisher_sends_every_event_once_in_order_per_model(
    engine: Engine, sessions: sessionmaker[Session], shared_stream: StreamName
) -> None:
    """Real NATS JetStream (the shared local server, a stream of this test's own)."""
    rng = random.Random(11)
    records = [make_record(rng, MODELS[rng.randrange(3)]) for _ in range(300)]
    writer = DecisionLogWriter(engine, events=True)
    writer.start()
    try:
        for i in range(0, len(records), 25):
            writer.submit(records[i : i + 25]).result(timeout=30)
    finally:
        writer.close()
    settings = shared_stream.settings(batch_size=64)
    publisher = OutboxPublisher(sessions, jetstream_broker(settings), settings)
    summary = asyncio.run(publisher.run(threading.Event(), once=True))
    assert (summary.published, summary.duplicates, summary.backlog) == (300, 0, 0)

    messages = asyncio.run(read_stream(shared_stream.url, shared_stream.stream))
    # Models are published in parallel, each model's events one after the other.
    for model in MODELS:
        sent = [d["data"]["decision_id"] for _, d in messages if d["model"] == model]
        assert sent == [r.decision_id for r in records if r.model_name == model], model
    assert len(messages) == len(records)
    validator = jsonschema_rs.validator_for(DECISION_SCHEMA)
    for headers, document in messages:
        assert validator.is_valid(document)
        assert headers["Nats-Msg-Id"] == document["id"]
        assert headers["Creditops-Event-Type"] == "decision.created"
    home = [d for _, d in messages if d["model"] == "home.credit"]
    assert home, "every model has events"

    # Sent again (as after a publisher killed before it marked them): JetStream drops them.
    with engine.begin() as conn:
        conn.execute(update(EventOutboxRow).values(sent_at=None))
    publisher = OutboxPublisher(sessions, jetstream_broker(settings), settings)
    summary = asyncio.run(publisher.run(threading.Event(), once=True))
    assert (summary.published, summary.duplicates, summary.backlog) == (0, 300, 0)
    assert len(asyncio.run(read_stream(shared_stream.url, shared_stream.stream))) == 300


def test_publish_once_fails_in_one_line_when_nats_is_down(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'creditops.db'}"
    upgrade_database(database)
    eng = create_db_engine(database)
    try:
        with session_factory(eng).begin() as session:
            OutboxRepository(session).add(
                [
                    event_document(
                        event_type="decision.created",
                        model="m",
                        version="1",
                        occurred_at=T0,
                        data={},
                    )
                ]
            )
    finally:
        eng.dispose()
    env = service_env(
        tmp_path, database, CREDITOPS_EVENTS__NATS_URL=f"nats://127.0.0.1:{free_port()}"
    )
    done = subprocess.run(
        [*creditops_command(), "publish", "--once", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "NATS not reachable" in error_lines[0], done.stderr


# -- 10,000 decisions, a NATS restart and a killed publisher -----------------------------------
class NatsServer:
    """A nats-server of the test's own (JetStream, its own store directory and port)."""

    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.store = store
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                asyncio.run(self._ping())
                return
            except Exception:
                time.sleep(0.1)
        raise AssertionError("the test's nats-server did not start")

    async def _ping(self) -> None:
        nc = await nats.connect(
            self.url, connect_timeout=1, max_reconnect_attempts=0, error_cb=_quiet
        )
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)
        self.process = None


async def _quiet(_: Exception) -> None:
    """nats-py logs a traceback per refused connection by default; the test retries."""


def _sent(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(
                select(func.count())
                .select_from(EventOutboxRow)
                .where(EventOutboxRow.sent_at.is_not(None))
            )
            or 0
        )


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_10000_decisions_survive_a_nats_restart_and_a_killed_publisher(tmp_path: Path) -> None:
    """Decisions keep being committed while `creditops publish` (a subprocess) sends them to
    a nats-server of the test's own. Mid-stream the publisher is SIGKILLed and started again,
    and the NATS server is stopped (SIGTERM) and started again on the same port and store.
    A consumer then reads the stream: every decision arrived at least once, with no gap,
    each model's events in commit order, and duplicates (if any) are dropped by event id."""
    total, models = 10_000, MODELS
    database = f"sqlite:///{tmp_path / 'creditops.db'}"
    upgrade_database(database)
    engine = create_db_engine(database)
    server = NatsServer(tmp_path / "nats")
    server.start()
    env = service_env(
        tmp_path,
        database,
        CREDITOPS_EVENTS__ENABLED="true",
        CREDITOPS_EVENTS__NATS_URL=server.url,
        CREDITOPS_EVENTS__PUBLISH_TIMEOUT_S="1",
        CREDITOPS_EVENTS__RETRY_MAX_S="0.5",
        CREDITOPS_EVENTS__BATCH_SIZE="200",
    )
    log_path = tmp_path / "publisher.log"

    def start_publisher() -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:
            return subprocess.Popen(
                [*creditops_command(), "publish"],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    rng = random.Random(2026)
    records = [
        make_record(rng, models[i % 3], at=T0 + timedelta(milliseconds=i)) for i in range(total)
    ]
    writer = DecisionLogWriter(engine, events=True)
    writer.start()
    futures: list[Future[None]] = []

    def decide() -> None:  # ~10k decisions over a few seconds, 20 per submission
        for i in range(0, total, 20):
            futures.append(writer.submit(records[i : i + 20]))
            time.sleep(0.004)

    publisher = start_publisher()
    producer = threading.Thread(target=decide)
    producer.start()
    try:
        _wait_for(lambda: _sent(engine) >= 1500, 60, "the first 1,500 events sent")
        publisher.send_signal(signal.SIGKILL)  # no clean-up, no last mark
        publisher.wait(timeout=10)
        publisher = start_publisher()
        _wait_for(lambda: _sent(engine) >= 4000, 60, "4,000 events sent")
        server.stop()  # the broker goes away mid-stream ...
        time.sleep(3.0)  # longer than the client's own reconnect attempts (about 2 s)
        server.start()  # ... and comes back on the same port with the same store
        producer.join(timeout=120)
        for f in futures:
            f.result(timeout=60)
        _wait_for(lambda: _sent(engine) == total, 120, "every event sent")
        publisher.send_signal(signal.SIGTERM)
        assert publisher.wait(timeout=30) == 0, log_path.read_text()
        messages = asyncio.run(read_stream(server.url, "CREDITOPS_EVENTS"))
    finally:
        if publisher.poll() is None:
            publisher.kill()
        writer.close()
        server.stop()
        engine.dispose()

    # The consumer: drop duplicates by event id, then check for gaps and order.
    seen: set[str] = set()
    unique: list[tuple[dict[str, str], dict[str, Any]]] = []
    for headers, document in messages:
        if document["id"] not in seen:
            seen.add(document["id"])
            unique.append((headers, document))
    arrived = [d["data"]["decision_id"] for _, d in unique]
    assert sorted(arrived) == sorted(r.decision_id for r in records), "a decision is missing"
    for model in models:  # each model's events in the order they were committed
        mine = [int(h["Creditops-Sequence"]) for h, d in unique if d["model"] == model]
        assert mine == sorted(mine), model
    log = log_path.read_text()
    assert "NATS: disconnected" in log and "publishing events failed" in log, log
    print(
        f"{len(messages)} messages for {total} decisions ({len(messages) - len(unique)} "
        "duplicates dropped by the consumer)"
    )


# -- the gauges ------------------------------------------------------------------------------
def test_outbox_gauges_follow_the_store(sessions: sessionmaker[Session]) -> None:
    from creditops.api.event_metrics import OutboxCollector

    collector = OutboxCollector(lambda: outbox_backlog(sessions), ttl_s=0)

    def gauges() -> dict[str, float]:
        return {m.name: m.samples[0].value for m in collector.collect()}

    assert gauges() == {
        "creditops_outbox_backlog": 0.0,
        "creditops_outbox_publish_lag_seconds": 0.0,
    }
    with sessions.begin() as session:
        OutboxRepository(session).add(
            [
                event_document(
                    event_type="decision.created",
                    model="m",
                    version="1",
                    occurred_at=datetime.now(UTC) - timedelta(seconds=30),
                    data={},
                )
            ]
        )
    found = gauges()
    assert found["creditops_outbox_backlog"] == 1
    assert 30 <= found["creditops_outbox_publish_lag_seconds"] < 90

    def broken() -> Any:
        raise RuntimeError("database gone")

    assert list(OutboxCollector(broken).collect()) == []  # the scrape still answers


# -- outcomes and review overrides ----------------------------------------------------------
def test_outcomes_and_overrides_get_their_events_in_their_transactions(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    from creditops.services.outcomes import OutcomeInput, record_outcomes
    from creditops.services.reviews import Verdict, submit_review

    rng = random.Random(3)
    decided = make_record(rng, "taiwan")
    in_review = replace(make_record(rng, "german"), decision="review")
    with sessions.begin() as session:
        DecisionRepository(session).add_many([decided, in_review])
    settings = EventSettings(enabled=True)
    outcome = OutcomeInput(decided.decision_id, None, True, T0)
    record_outcomes(sessions, [outcome], "test", settings)
    record_outcomes(sessions, [outcome], "test", settings)  # unchanged: no second event
    record_outcomes(sessions, [replace(outcome, defaulted=False)], "test", settings)
    record_outcomes(sessions, [outcome], "test", EventSettings())  # events off
    submit_review(
        sessions, in_review.decision_id, Verdict("approve", "MGR", "ok", "ann"), "test", settings
    )

    documents = [json.loads(r.payload) for r in outbox_rows(engine)]
    assert [(d["type"], d["model"]) for d in documents] == [
        ("outcome.recorded", "taiwan"),
        ("outcome.recorded", "taiwan"),
        ("decision.overridden", "german"),
    ]
    assert [d["data"]["change"] for d in documents[:2]] == ["created", "updated"]
    assert [d["data"]["defaulted"] for d in documents[:2]] == [True, False]
    assert documents[0]["data"]["observed_at"] == "2026-12-04T09:30:00.123456Z"
    override = documents[2]["data"]
    assert (override["original_decision"], override["final_decision"]) == ("review", "approve")
    schemas = {
        "creditops.outcome/1": json.loads(
            (ROOT / "docs/events/outcome.v1.schema.json").read_text()
        ),
        "creditops.decision/1": DECISION_SCHEMA,
    }
    for document in documents:
        validator = jsonschema_rs.validator_for(schemas[document["schema"]])
        assert not [e.message for e in validator.iter_errors(document)], document
