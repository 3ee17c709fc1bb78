"""Several API processes and workers on one PostgreSQL database, as in production (issue 16,
"Several API processes"): two `creditops serve` processes and two `creditops worker`
processes, all real, on the local PostgreSQL server.

Checked: every acknowledged decision is logged exactly once, whichever process answered;
the scheduled monitoring check runs once per interval, not once per worker; a kill switch
set through one API process holds in the other within its re-read interval.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from creditops.store.engine import create_db_engine, session_factory
from creditops.store.tables import DecisionRow, MonitoringReportRow
from tests.api.test_api import applicant
from tests.e2e.test_retraining_e2e import worker
from tests.factories import train_demo_model
from tests.integration.server_harness import postgres_schema, running_server, service_env

pytestmark = pytest.mark.integration

DECISIONS = 400  # split over the two API processes, singles and batches
TICK_S = "0.5"  # each worker's scheduler pass
WATCH_S = 12.0  # how long both workers tick after the first check


@pytest.fixture()
def url() -> Iterator[str]:
    with postgres_schema("creditops_replicas") as found:
        yield found


def _send(client: httpx.Client, prefix: str, n: int) -> list[str]:
    """``n`` decisions (half singles, half in batches of 20); the acknowledged ids."""
    features = applicant(2)["features"]
    acknowledged = []
    for i in range(n // 2):
        body = {"application_id": f"{prefix}-s{i}", "features": features}
        answer = client.post("/v1/models/taiwan/predict", json=body)
        assert answer.status_code == 200, answer.text
        acknowledged.append(answer.json()["decision_id"])
    for start in range(0, n - n // 2, 20):
        apps = [
            {"application_id": f"{prefix}-b{start + j}", "features": features}
            for j in range(min(20, n - n // 2 - start))
        ]
        answer = client.post("/v1/models/taiwan/predict", json={"applications": apps})
        assert answer.status_code == 200, answer.text
        acknowledged += [d["decision_id"] for d in answer.json()["decisions"]]
    return acknowledged


def test_two_api_processes_and_two_workers_on_postgresql(tmp_path: Path, url: str) -> None:
    home = tmp_path / "home"
    train_demo_model(home, mlflow_uri=None)
    env = service_env(
        home,
        url,
        CREDITOPS_SERVE__AUTH_ENABLED="false",
        CREDITOPS_MONITOR__TICK_SECONDS=TICK_S,
        CREDITOPS_MONITOR__EVERY_HOURS="1",  # the first check is due at once, the next in 1 h
        CREDITOPS_MONITOR__EVERY_PREDICTIONS="1000000",
        CREDITOPS_RETRAIN__TRIGGERS="[]",
        CREDITOPS_ALERTS__CHANNELS="log",
    )
    sessions = session_factory(create_db_engine(url))
    with ExitStack() as stack:
        servers = [
            stack.enter_context(running_server(home, url, tmp_path / f"api{i}.log", extra_env=env))
            for i in range(2)
        ]
        one, two = (stack.enter_context(s.client()) for s in servers)

        # every acknowledged decision is logged exactly once, whichever process answered
        acknowledged = _send(one, "one", DECISIONS // 2) + _send(two, "two", DECISIONS // 2)
        assert len(set(acknowledged)) == DECISIONS
        with sessions() as session:
            logged = Counter(session.scalars(select(DecisionRow.decision_id)).all())
        assert set(logged) == set(acknowledged)
        assert max(logged.values()) == 1

        # two workers: the scheduled check of the model runs once in the interval
        for i in range(2):
            stack.enter_context(worker(env, tmp_path, tmp_path / f"worker{i}.log"))
        deadline = time.monotonic() + 90
        while _checks(sessions) == 0:
            assert time.monotonic() < deadline, "no scheduled check within 90 s"
            time.sleep(0.5)
        time.sleep(WATCH_S)  # both workers keep ticking every 0.5 s
        assert _checks(sessions) == 1
        logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
        assert sum(log.count("checked taiwan (schedule)") for log in logs) == 1, logs

        # the kill switch set through one process holds in the other within its re-read
        suspended = one.post("/v1/models/taiwan/suspend", json={"reason": "replica test"})
        assert suspended.status_code == 200, suspended.text
        set_at = time.monotonic()
        body = {"application_id": "after-suspend", "features": applicant(2)["features"]}
        while True:
            answer = two.post("/v1/models/taiwan/predict", json=body).json()
            if answer["suspended"]:
                break
            assert time.monotonic() - set_at < 5.0, "the other process did not see the switch"
            time.sleep(0.1)
        held_after = time.monotonic() - set_at
        assert answer["decision"] == "review"
        assert held_after <= 1.0 + 2.0  # the controls' 1 s re-read plus a request's slack
        assert one.post("/v1/models/taiwan/resume").status_code == 200


def _checks(sessions: object) -> int:
    with sessions() as session:  # type: ignore[operator]
        count = session.scalar(
            select(func.count())
            .select_from(MonitoringReportRow)
            .where(MonitoringReportRow.model_name == "taiwan", MonitoringReportRow.kind == "check")
        )
    return int(count or 0)
