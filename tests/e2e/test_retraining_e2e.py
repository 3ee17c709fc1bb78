"""Issue 12's acceptance, with real processes: a server, a worker (killed with SIGKILL in
the middle of a job and restarted), a webhook receiver, both databases.

Shifted applicants with their outcomes go through the API; the worker's check finds the
drift, alerts and queues a retraining job, which registers version 2 with its lineage and
(its gate passing) puts it in staging. With a gate it cannot meet, the next version gets no
alias and its failing checks are listed. A retraining with unchanged data registers
nothing. A worker killed during training leaves a failed job, and the next job runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from creditops.services.context import AppContext
from creditops.settings import Settings
from tests.factories import train_demo_model
from tests.integration.server_harness import (
    create_key,
    creditops_command,
    postgres_schema,
    running_server,
    service_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DATA = Path(__file__).resolve().parents[2] / "data"
FEATURES = [
    c
    for c in pd.read_csv(DATA / "taiwan_credit_card.csv", nrows=1).columns
    if c not in ("id", "target", "_is_test")
]
PASSABLE = """name: e2e-pass
metrics: {min: {auc: 0.60}}
require_monotonicity: true
champion: {enabled: true, mode: non_inferior, tolerance: 0.05, alpha: 0.05}
"""
IMPOSSIBLE = """name: e2e-impossible
metrics: {min: {auc: 0.99, ks: 0.95}}
champion: {enabled: true, mode: improve, min_gain: 0.2}
"""


@pytest.fixture()
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()


@contextmanager
def worker(env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*creditops_command(), "worker"],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def shifted(n: int, seed: int) -> pd.DataFrame:
    frame = pd.read_csv(DATA / "taiwan_credit_card.csv")
    rows = frame.sample(n, random_state=seed, replace=n > len(frame)).copy()
    rows["pay_0"] = np.minimum(rows["pay_0"] + 2, 8)
    rows["limit_bal"] = (rows["limit_bal"] * 0.3).round()
    return rows


def send_with_outcomes(client: Any, rows: pd.DataFrame, prefix: str) -> None:
    for start in range(0, len(rows), 50):
        chunk = rows.iloc[start : start + 50]
        apps = [
            {
                "application_id": f"{prefix}-{start + i}",
                "features": {f: int(row[f]) for f in FEATURES},
            }
            for i, (_, row) in enumerate(chunk.iterrows())
        ]
        answer = client.post("/v1/models/taiwan/predict", json={"applications": apps})
        assert answer.status_code == 200, answer.text
        outcomes = [
            {"decision_id": d["decision_id"], "defaulted": bool(t)}
            for d, t in zip(answer.json()["decisions"], chunk["target"], strict=True)
        ]
        assert client.post("/v1/feedback", json={"outcomes": outcomes}).status_code == 200


def wait_for_job(client: Any, *, done: int, timeout: float = 300) -> list[dict[str, Any]]:
    """The jobs once ``done`` of them have finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = client.get("/v1/jobs").json()
        if sum(j["state"] in ("succeeded", "failed", "cancelled") for j in jobs) >= done:
            return list(jobs)
        time.sleep(1.0)
    raise AssertionError(f"no {done} finished jobs after {timeout} s: {jobs}")


def versions(home: Path, url: str) -> dict[str, Any]:
    ctx = AppContext(Settings(home=home, database_url=url))
    return {v.version: v for v in ctx.registry.list_versions("taiwan")}


def environment(home: Path, url: str, hook: str, profile: Path) -> dict[str, str]:
    return service_env(
        home,
        url,
        CREDITOPS_SERVE__AUTH_ENABLED="false",
        CREDITOPS_ALERTS__CHANNELS="webhook",
        CREDITOPS_ALERTS__WEBHOOK_URL=hook,
        CREDITOPS_MONITOR__TICK_SECONDS="0.5",
        CREDITOPS_MONITOR__EVERY_PREDICTIONS="100000",
        # the drifted share weighted by importance: pay_0 and limit_bal carry the model
        CREDITOPS_MONITOR__DRIFT='{"weighted": true}',
        CREDITOPS_RETRAIN__TRIGGERS='["drift"]',
        CREDITOPS_RETRAIN__DRIFT_SUSTAINED_HOURS="0",
        CREDITOPS_RETRAIN__GATE_PROFILE=str(profile),
    )


@contextmanager
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'e2e.db'}"
    else:
        with postgres_schema("creditops_retrain") as url:
            yield url


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_drift_to_a_staged_candidate(
    tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]], backend: str
) -> None:
    hook, received = webhook
    home = tmp_path / "home"
    train_demo_model(home, mlflow_uri=None)
    profile = tmp_path / "pass.yaml"
    profile.write_text(PASSABLE)
    with database(backend, tmp_path) as url:
        env = environment(home, url, hook, profile)
        with (
            running_server(home, url, tmp_path / "server.log", extra_env=env) as server,
            server.client() as client,
        ):
            send_with_outcomes(client, shifted(5000, 7), "shift")
            with worker(env, tmp_path, tmp_path / "worker.log"):
                jobs = wait_for_job(client, done=1)
            triggers = client.get("/v1/retrain/triggers").json()
        job = jobs[0]
        assert job["state"] == "succeeded", job
        assert job["trigger"]["kind"] == "drift" and triggers[0]["job_id"] == job["job_id"]
        result = job["result"]
        assert result["registered"] and result["gate_passed"] and result["alias"] == "staging"
        assert result["rows"]["production_matured"] == 5000
        assert result["rows"]["production_out_of_time"] == 1000
        v2 = versions(home, url)[result["version"]]
        assert v2.tags["parent_version"] == "1" and v2.tags["trigger_kind"] == "drift"
        assert v2.tags["retrain_job_id"] == job["job_id"] and "staging" in v2.aliases
        assert json.loads(v2.tags["rows_by_source"])["production_training"] == 4000
        titles = [m.get("title", "") for m in received]
        assert "Data drift on taiwan" in titles
        assert {"Retraining started", "Retraining passed"} <= set(titles)


def test_failing_gate_unchanged_data_and_a_killed_worker(
    tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    hook, received = webhook
    home = tmp_path / "home"
    train_demo_model(home, mlflow_uri=None)
    impossible = tmp_path / "impossible.yaml"
    impossible.write_text(IMPOSSIBLE)
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    env = environment(home, url, hook, impossible)
    env["CREDITOPS_RETRAIN__TRIGGERS"] = "[]"  # manual requests only
    key = create_key(env, tmp_path, "ops", ["retrain", "read"]).key
    log = tmp_path / "worker.log"
    with running_server(home, url, tmp_path / "server.log", extra_env=env) as server:
        with server.client() as client:
            send_with_outcomes(client, shifted(2000, 8), "more")
        with server.client(key) as client, worker(env, tmp_path, log):
            # a gate it cannot meet: registered without an alias, failing checks listed
            queued = client.post("/v1/models/retrain", json={"model": "taiwan", "reason": "e2e"})
            assert queued.status_code == 202 and queued.json()["outcome"] == "job_queued"
            first = wait_for_job(client, done=1)[0]
            assert first["state"] == "succeeded" and first["result"]["gate_passed"] is False
            assert {"auc", "ks", "champion_auc_gain"} <= set(first["result"]["failed_checks"])
            assert versions(home, url)[first["result"]["version"]].aliases == ()
            assert any(m.get("title") == "Retraining failed" for m in received)
            # within the cool-down nothing is queued, but the trigger is recorded
            again = client.post("/v1/models/retrain", json={"model": "taiwan"}).json()
            assert again["outcome"] == "debounced" and "cool-down" in again["detail"]
            # forced with unchanged data and settings: nothing registered, the same version
            forced = {"model": "taiwan", "reason": "unchanged", "force": True}
            assert client.post("/v1/models/retrain", json=forced).status_code == 202
            second = wait_for_job(client, done=2)[0]
            assert second["result"] == {
                "registered": False,
                "version": first["result"]["version"],
                "summary": second["result"]["summary"],
            }
    # a worker killed with SIGKILL during training
    with running_server(home, url, tmp_path / "server2.log", extra_env=env) as server:
        with server.client() as client:
            send_with_outcomes(client, shifted(300, 9), "late")
        with server.client(key) as client:
            forced = {"model": "taiwan", "reason": "killed", "force": True}
            job_id = client.post("/v1/models/retrain", json=forced).json()["job_id"]
            with worker(env, tmp_path, log) as proc:
                deadline = time.monotonic() + 120
                while client.get(f"/v1/jobs/{job_id}").json()["stage"] != "train":
                    assert time.monotonic() < deadline, "the job never reached training"
                    time.sleep(0.1)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
            assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "running"  # left behind
            with worker(env, tmp_path, log):
                deadline = time.monotonic() + 60
                while (killed := client.get(f"/v1/jobs/{job_id}").json())["state"] == "running":
                    assert time.monotonic() < deadline
                    time.sleep(0.5)
                assert killed["state"] == "failed"
                assert "worker running it stopped" in killed["result"]["reason"]
                assert "during stage train" in killed["result"]["reason"]
                retry = client.post("/v1/models/retrain", json=forced).json()
                assert retry["outcome"] == "job_queued"
                jobs = wait_for_job(client, done=4)
            assert next(j for j in jobs if j["job_id"] == retry["job_id"])["state"] == "succeeded"
