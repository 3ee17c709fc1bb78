"""Issue 4's acceptance: a real server and a real worker, real SMTP and webhook receivers.

Calm traffic raises no alert; shifted traffic raises exactly one data-drift alert by e-mail
and by webhook (and nothing more while the episode lasts); outcomes showing worse
performance raise a performance alert; everything is readable from the reports endpoint and
/metrics.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from aiosmtpd.controller import Controller

from tests.factories import train_demo_model
from tests.integration.server_harness import (
    create_key,
    creditops_command,
    free_port,
    running_server,
    service_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content.decode("utf8", errors="replace"))
        return "250 OK"


@pytest.fixture()
def smtp() -> Iterator[tuple[int, Mailbox]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, box
    finally:
        controller.stop()


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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/slack", received
    finally:
        server.shutdown()


def features(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            k: (int(v) if float(v).is_integer() else float(v))
            for k, v in row.items()
            if k not in ("id", "target", "_is_test")
        }
        for row in frame.to_dict("records")
    ]


def send(client: Any, frame: pd.DataFrame, prefix: str) -> list[dict[str, Any]]:
    rows = features(frame)
    out = []
    for start in range(0, len(rows), 100):
        batch = [
            {"application_id": f"{prefix}-{start + i}", "features": f}
            for i, f in enumerate(rows[start : start + 100])
        ]
        response = client.post("/v1/models/taiwan/predict", json={"applications": batch})
        assert response.status_code == 200, response.text
        out += response.json()["decisions"]
    return out


def wait_for_checks(client: Any, count: int, timeout: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reports = client.get("/v1/drift/reports", params={"kind": "check", "limit": 100}).json()
        if len(reports) >= count:
            return reports
        time.sleep(0.5)
    raise AssertionError(f"the worker did not store {count} checks in {timeout}s")


def alerts_of(mailbox: Mailbox, hooks: list[dict[str, Any]], word: str) -> tuple[int, int]:
    mails = [m for m in mailbox.messages if word in m.lower()]
    posts = [h for h in hooks if word in json.dumps(h).lower()]
    return len(mails), len(posts)


def test_worker_alerts_once_per_episode(tmp_path: Path, smtp, webhook) -> None:  # type: ignore[no-untyped-def]
    smtp_port, mailbox = smtp
    hook_url, hooks = webhook
    home = tmp_path / "home"
    train_demo_model(home)
    database = f"sqlite:///{home / 'creditops.db'}"
    extra = {
        "CREDITOPS_ALERTS__CHANNELS": "email,slack",
        "CREDITOPS_ALERTS__EMAIL__HOST": "127.0.0.1",
        "CREDITOPS_ALERTS__EMAIL__PORT": str(smtp_port),
        "CREDITOPS_ALERTS__EMAIL__USE_TLS": "false",
        "CREDITOPS_ALERTS__EMAIL__FROM_ADDR": "creditops@example.org",
        "CREDITOPS_ALERTS__EMAIL__TO_ADDRS": "risk@example.org",
        "CREDITOPS_ALERTS__SLACK_WEBHOOK_URL": hook_url,
        "CREDITOPS_MONITOR__TICK_SECONDS": "0.5",
        "CREDITOPS_MONITOR__EVERY_HOURS": "1000",
        "CREDITOPS_MONITOR__EVERY_PREDICTIONS": "300",
        "CREDITOPS_MONITOR__PERFORMANCE_WINDOW": "300",
        "CREDITOPS_MONITOR__MIN_ROWS": json.dumps(
            {"data_drift": 100, "prediction_drift": 100, "performance": 50, "fairness": 100}
        ),
        "CREDITOPS_MONITOR__FAIRNESS_MIN_RATIO": "0.5",
        # drifted share weighted by feature importance: a shift in the model's main inputs
        # matters more than one in a feature it barely uses
        "CREDITOPS_MONITOR__DRIFT": '{"weighted": true}',
        "CREDITOPS_SERVE__AUTH_ENABLED": "false",
        "CREDITOPS_RETRAIN__TRIGGERS": "[]",  # this test is about alerts; retraining has its own
    }
    env = service_env(home, database, **extra)
    test_split = pd.read_csv(DATA / "taiwan_credit_card.csv")
    test_split = test_split[test_split["_is_test"]].reset_index(drop=True)
    create_key(env, home, "unused", ["read"])  # the store exists before the worker starts

    with running_server(home, database, tmp_path / "server.log", extra_env=extra) as server:
        client = server.client()
        send(client, test_split.sample(400, random_state=1), "calm")
        worker_log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen(
            [*creditops_command(), "worker"],
            env=env,
            cwd=home,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        try:
            checks = wait_for_checks(client, 1)
            assert checks[0]["level"] in ("ok", "warning")
            first = client.get(f"/v1/drift/reports/{checks[0]['report_id']}").json()
            assert first["result"]["should_retrain"] is False
            assert alerts_of(mailbox, hooks, "data drift") == (0, 0)

            shifted = test_split.sample(400, random_state=2).copy()
            shifted["pay_0"] = np.minimum(shifted["pay_0"] + 2, 8)
            shifted["limit_bal"] = (shifted["limit_bal"] * 0.3).round()
            decisions = send(client, shifted, "shift-a")
            second = wait_for_checks(client, 2)[0]
            time.sleep(1.0)
            assert alerts_of(mailbox, hooks, "data drift") == (1, 1), second
            assert alerts_of(mailbox, hooks, "prediction drift") == (1, 1)
            sent = len(mailbox.messages)

            more = test_split.sample(400, random_state=3).copy()
            more["pay_0"] = np.minimum(more["pay_0"] + 2, 8)
            more["limit_bal"] = (more["limit_bal"] * 0.3).round()
            decisions += send(client, more, "shift-b")
            wait_for_checks(client, 3)
            time.sleep(1.0)
            assert alerts_of(mailbox, hooks, "data drift") == (1, 1)  # same episode: no repeat
            assert len(mailbox.messages) == sent

            outcomes = [
                {"decision_id": d["decision_id"], "defaulted": d["decision"] == "approve"}
                for d in decisions[:300]
            ]
            assert client.post("/v1/feedback", json={"outcomes": outcomes}).status_code == 200
            send(client, test_split.sample(300, random_state=4), "after-labels")
            wait_for_checks(client, 4)
            time.sleep(1.0)
            mails, posts = alerts_of(mailbox, hooks, "performance")
            assert mails == 1 and posts == 1

            reports = client.get("/v1/drift/reports", params={"limit": 100}).json()
            kinds = {r["kind"] for r in reports}
            assert {"data_drift", "prediction_drift", "performance", "fairness"} <= kinds
            latest_perf = next(r for r in reports if r["kind"] == "performance")
            assert latest_perf["level"] == "critical"
            time.sleep(10.5)  # the gauges' cache
            metrics = client.get("/metrics").text
            assert 'creditops_drift_level{model="taiwan"}' in metrics
            assert 'creditops_performance_drop_ratio{metric="auc",model="taiwan"}' in metrics
        finally:
            worker.terminate()
            worker.wait(20)
            worker_log.close()
    log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in log, log[-3000:]
