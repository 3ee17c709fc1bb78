"""The tamper-evident audit trail on both databases: a record edited, removed, reordered
or cut from the end is named by verify; concurrent writers never fork the chain."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from creditops.store.admin_repositories import AuditRepository
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.migrations_api import upgrade_database
from tests.integration.server_harness import postgres_schema

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        found = f"sqlite:///{tmp_path / 'audit.db'}"
        upgrade_database(found)
        yield found
    else:
        with postgres_schema("creditops_audit") as found:
            upgrade_database(found)
            yield found


def verify(url: str) -> dict[str, object]:
    engine = create_db_engine(url)
    try:
        with session_factory(engine)() as session:
            return AuditRepository(session).verify()
    finally:
        engine.dispose()


def execute(url: str, sql: str) -> None:
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def test_verify_names_the_first_tampered_record(url: str) -> None:
    engine = create_db_engine(url)
    sessions = session_factory(engine)
    for i in range(6):
        with sessions.begin() as session:
            AuditRepository(session).add("ops", "deployment.step", "taiwan", "ok", {"step": i})
    engine.dispose()
    first = verify(url)
    assert first["ok"] and first["records"] == 6
    execute(url, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    broken = verify(url)
    assert not broken["ok"] and broken["first_bad"]["seq"] == 3  # type: ignore[index]
    assert "changed" in broken["first_bad"]["problem"]  # type: ignore[index]
    execute(url, "UPDATE audit_log SET actor = 'ops' WHERE seq = 3")
    assert verify(url)["ok"]
    execute(url, "DELETE FROM audit_log WHERE seq = 4")
    gap = verify(url)
    assert gap["first_bad"]["seq"] == 5 and "missing" in gap["first_bad"]["problem"]  # type: ignore[index]


def test_removing_the_newest_records_is_seen_by_the_head(url: str) -> None:
    engine = create_db_engine(url)
    sessions = session_factory(engine)
    for i in range(4):
        with sessions.begin() as session:
            AuditRepository(session).add("ops", "model.promote", "taiwan", "ok", {"i": i})
    engine.dispose()
    execute(url, "DELETE FROM audit_log WHERE seq = 4")
    cut = verify(url)
    assert not cut["ok"] and "removed" in cut["first_bad"]["problem"]  # type: ignore[index]


def test_concurrent_writers_never_fork_the_chain(url: str) -> None:
    engine = create_db_engine(url)
    sessions = session_factory(engine)
    errors: list[BaseException] = []

    def write(name: str) -> None:
        for i in range(40):
            try:
                with sessions.begin() as session:
                    AuditRepository(session).add(name, "key.use", "k", "ok", {"i": i})
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"w{t}",)) for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    assert not errors, errors[:3]
    result = verify(url)
    assert result["ok"] and result["records"] == 120, result
