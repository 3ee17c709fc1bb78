"""Regression tests of the hardening findings on real processes (issue 11): the API's slow
lane under a webhook that never answers, request ids on PostgreSQL, the CLI's answers to
bad windows and retention periods, safe exports, and owner-only local state."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sqlalchemy import select

from creditops.store.engine import create_db_engine, session_factory
from creditops.store.tables import DecisionRow
from tests.factories import train_demo_model
from tests.integration.server_harness import (
    HOST,
    create_key,
    creditops_command,
    postgres_schema,
    run_cli,
    running_server,
    service_env,
)

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hardening") / "home"
    train_demo_model(path, mlflow_uri=None)
    return path


@pytest.fixture(scope="module")
def applicant() -> dict[str, Any]:
    row = pd.read_csv(DATA / "taiwan_credit_card.csv", nrows=1).iloc[0]
    return {k: int(v) for k, v in row.items() if k not in ("id", "target", "_is_test")}


class HangingServer:
    """Accepts TCP connections and never answers: a webhook receiver that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((HOST, 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:  # closed under us: the test is over
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture()
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


def test_a_hanging_webhook_cannot_starve_the_api(
    home: Path, tmp_path: Path, hanging: HangingServer, applicant: dict[str, Any]
) -> None:
    """45 concurrent test alerts against a webhook that never answers (the finding): the
    slow lane runs 4 and queues 4, refuses the rest at once, and /ready and feedback stay
    fast meanwhile (before the fix they waited behind the alerts for the whole timeout)."""
    url = f"sqlite:///{tmp_path / 'slow.db'}"
    extra = {
        "CREDITOPS_ALERTS__CHANNELS": "webhook",
        "CREDITOPS_ALERTS__WEBHOOK_URL": f"http://{HOST}:{hanging.port}/hook",
        "CREDITOPS_ALERTS__TIMEOUT_S": "4",
        "CREDITOPS_ALERTS__MAX_ATTEMPTS": "1",
        "CREDITOPS_ALERTS__MAX_TOTAL_S": "4",
        "CREDITOPS_SERVE__SLOW_THREADS": "4",
        "CREDITOPS_SERVE__SLOW_QUEUE": "4",
    }
    env = service_env(home, url, **extra)
    admin = create_key(env, tmp_path, "admin", ["admin"]).key
    with running_server(home, url, tmp_path / "slow.log", extra_env=extra) as server:
        with server.client(admin) as client:
            decision = client.post(
                "/v1/models/taiwan/predict",
                json={"application_id": "slow-1", "features": applicant},
            ).json()

        def test_alert(_: int) -> int:
            with server.client(admin, timeout=60) as c:
                return c.post("/v1/alerts/test", json={}).status_code

        with ThreadPoolExecutor(max_workers=45) as pool:
            alerts = [pool.submit(test_alert, i) for i in range(45)]
            time.sleep(1.0)  # the lane is full and the queue too
            timings = []
            with server.client(admin) as client:
                for i in range(5):
                    started = time.monotonic()
                    ready = client.get("/ready")
                    feedback = client.post(
                        "/v1/feedback",
                        json={
                            "outcomes": [
                                {"decision_id": decision["decision_id"], "defaulted": i % 2 == 0}
                            ]
                        },
                    )
                    timings.append(time.monotonic() - started)
                    assert ready.status_code == 200 and feedback.status_code == 200
            statuses = Counter(f.result() for f in alerts)
    seconds = [round(t, 3) for t in timings]
    print(f"\n/ready + feedback under 45 hanging alerts: {seconds} s; {dict(statuses)}")
    assert max(timings) < 1.0, timings
    assert statuses[503] == 45 - 8, statuses  # 4 running + 4 waiting; the rest refused
    assert statuses[200] == 8, statuses  # answered with the failed delivery, not an error
    assert len(hanging.accepted) <= 8


def test_long_request_ids_never_fail_a_decision_on_postgresql(
    home: Path, tmp_path: Path, applicant: dict[str, Any]
) -> None:
    with postgres_schema("creditops_hardening") as url:
        env = service_env(home, url)
        key = create_key(env, tmp_path, "client", ["predict"]).key
        with running_server(home, url, tmp_path / "pg.log") as server:
            with server.client(key) as client:
                batch = {
                    "applications": [
                        {"application_id": f"long-{i}", "features": applicant} for i in range(50)
                    ]
                }
                answer = client.post(
                    "/v1/models/taiwan/predict", json=batch, headers={"X-Request-ID": "r" * 200}
                )
            assert answer.status_code == 200, answer.text
            first = answer.json()["decisions"][0]["decision_id"]
        engine = create_db_engine(url)
        try:
            with session_factory(engine)() as session:
                ids = set(session.scalars(select(DecisionRow.request_id)).all())
        finally:
            engine.dispose()
    assert ids == {first}  # replaced by the first decision's id, for the whole batch


BAD_CLI = {
    "export since overflow": [
        "decisions",
        "export",
        "--output",
        "x.csv",
        "--since",
        "999999999999d",
    ],
    "export since digit": ["decisions", "export", "--output", "x.csv", "--since", "²h"],
    "purge retention overflow": ["decisions", "purge", "--retention-days", "99999999999"],
    "purge retention zero": ["decisions", "purge", "--retention-days", "0"],
    "drift since": ["drift", "--name", "taiwan", "--since", "0001-01-01T00:00:00"],
}


@pytest.mark.parametrize("args", BAD_CLI.values(), ids=BAD_CLI)
def test_bad_windows_and_periods_get_one_error_line(
    home: Path, tmp_path: Path, args: list[str]
) -> None:
    env = service_env(home, f"sqlite:///{tmp_path / 'cli.db'}")
    done = run_cli(args, env, cwd=tmp_path, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_exports_are_safe(home: Path, tmp_path: Path, applicant: dict[str, Any]) -> None:
    url = f"sqlite:///{tmp_path / 'export.db'}"
    env = service_env(home, url)
    key = create_key(env, tmp_path, "client", ["predict"]).key
    evil = '=HYPERLINK("http://evil.test","open")'
    with running_server(home, url, tmp_path / "export.log") as server, server.client(key) as client:
        answer = client.post(
            "/v1/models/taiwan/predict", json={"application_id": evil, "features": applicant}
        )
        assert answer.status_code == 200, answer.text
    target = tmp_path / "out" / "decisions.csv"
    export = ["decisions", "export", "--format", "csv", "--output", str(target)]
    run_cli(export, env, cwd=tmp_path)
    text = target.read_text()
    assert "'=HYPERLINK" in text and ',"=HYPERLINK' not in text and ",=HYPERLINK" not in text
    assert pd.read_csv(target)["application_id"].tolist() == ["'" + evil]
    # an existing file is refused without --force and left as it was
    target.write_text("keep me")
    again = run_cli(export, env, cwd=tmp_path, check=False)
    assert again.returncode == 2 and "--force" in again.stderr
    assert target.read_text() == "keep me"
    # with --force a symbolic link is replaced, the file it points at is not written
    victim = tmp_path / "victim.txt"
    victim.write_text("secret")
    link = tmp_path / "out" / "link.csv"
    link.symlink_to(victim)
    forced = ["decisions", "export", "--format", "csv", "--output", str(link), "--force"]
    run_cli(forced, env, cwd=tmp_path)
    assert victim.read_text() == "secret"
    assert not link.is_symlink() and "decision_id" in link.read_text()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no debris
    # Parquet is untouched
    parquet = tmp_path / "out" / "decisions.parquet"
    run_cli(["decisions", "export", "--output", str(parquet)], env, cwd=tmp_path)
    assert pd.read_parquet(parquet)["application_id"].tolist() == [evil]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_local_state_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """Under the usual umask 022, a new home is 0700 and its databases 0600; an existing
    home that an older version left open is closed up."""
    fresh = tmp_path / "fresh"
    env = service_env(fresh, f"sqlite:///{fresh / 'creditops.db'}")
    env.pop("CREDITOPS_DATABASE_URL")  # the default: SQLite under the home

    def cli(*args: str) -> None:
        done = subprocess.run(
            ["sh", "-c", 'umask 022 && exec "$@"', "sh", *creditops_command(), *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    cli("keys", "create", "--name", "x", "--scopes", "read")
    cli("models", "list", "--json")  # opens (creates) the MLflow store
    assert _mode(fresh) == 0o700
    for name in ("creditops.db", "mlflow.db"):
        assert (fresh / name).exists() and _mode(fresh / name) == 0o600, name
    # an old, open home
    os.chmod(fresh, 0o755)
    os.chmod(fresh / "creditops.db", 0o644)
    cli("keys", "list")
    assert _mode(fresh) == 0o700 and _mode(fresh / "creditops.db") == 0o600


def test_the_slow_lane_answers_busy_with_retry_after(
    home: Path, tmp_path: Path, hanging: HangingServer
) -> None:
    extra = {
        "CREDITOPS_ALERTS__CHANNELS": "webhook",
        "CREDITOPS_ALERTS__WEBHOOK_URL": f"http://{HOST}:{hanging.port}/hook",
        "CREDITOPS_ALERTS__TIMEOUT_S": "3",
        "CREDITOPS_ALERTS__MAX_ATTEMPTS": "1",
        "CREDITOPS_SERVE__SLOW_THREADS": "1",
        "CREDITOPS_SERVE__SLOW_QUEUE": "0",
    }
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    admin = create_key(service_env(home, url, **extra), tmp_path, "admin", ["admin"]).key
    with (
        running_server(home, url, tmp_path / "busy.log", extra_env=extra) as server,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        first = pool.submit(
            lambda: httpx.post(
                f"{server.base_url}/v1/alerts/test",
                json={},
                headers={"Authorization": f"Bearer {admin}"},
                timeout=30,
            )
        )
        time.sleep(0.5)
        with server.client(admin) as client:
            busy = client.post("/v1/alerts/test", json={})
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
        assert busy.json()["code"] == "busy"
        done = first.result()
    assert done.status_code == 200 and done.json()[0]["ok"] is False
