#!/usr/bin/env python3
"""Smoke test of a running decision service: health, readiness, one prediction, metrics, docs.

Used after every deployment (CI's post-deploy stage, against Render) and against the compose
stack. Standard library only, so it runs on any machine with Python 3.9+.

    python deploy/ci/smoke.py http://localhost:8000 --key "$KEY"
    SMOKE_API_KEY=... python deploy/ci/smoke.py https://creditops-api.onrender.com

The key needs the scope ``predict`` (and ``monitor`` when /metrics is not public). The
prediction is a real, logged decision: its application id starts with ``smoke-`` so that
analysts can leave such records out. Exit code 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

# A Taiwan demo applicant (the README's example).
SAMPLE_FEATURES: dict[str, Any] = {
    "limit_bal": 20000, "sex": 2, "education": 2, "marriage": 1, "age": 24,
    "pay_0": 2, "pay_2": 2, "pay_3": -1, "pay_4": -1, "pay_5": -2, "pay_6": -2,
    "bill_amt1": 3913, "bill_amt2": 3102, "bill_amt3": 689, "bill_amt4": 0, "bill_amt5": 0,
    "bill_amt6": 0, "pay_amt1": 0, "pay_amt2": 689, "pay_amt3": 0, "pay_amt4": 0,
    "pay_amt5": 0, "pay_amt6": 0,
}  # fmt: skip
DECISIONS = {"approve", "review", "decline"}


@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class Client:
    def __init__(self, base_url: str, key: str | None, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout

    def request(self, method: str, path: str, payload: Any = None, auth: bool = True) -> Answer:
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)  # noqa: S310
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth and self.key:
            req.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:  # noqa: S310
                return Answer(response.status, response.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.read())


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def record(self, name: str, ok: bool, detail: str) -> bool:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
        if not ok:
            self.failed.append(name)
        return ok


def wait_ready(client: Client, model: str, timeout: float, checks: Checks) -> bool:
    """Poll /ready until it answers 200 with ``model`` loaded (a deploy may still be rolling)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = client.request("GET", "/ready", auth=False)
            if answer.status == 200:
                models = answer.json().get("models", {})
                if model in models:
                    return checks.record("ready", True, f"{model} version {models[model]} loaded")
                last = f"ready but {model!r} not loaded (models: {sorted(models)})"
            else:
                last = f"HTTP {answer.status}: {answer.body[:200]!r}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(3)
    return checks.record("ready", False, f"not ready after {timeout:.0f}s ({last})")


def check_predict(client: Client, model: str, checks: Checks) -> None:
    application_id = f"smoke-{uuid.uuid4().hex[:12]}"
    payload = {"application_id": application_id, "features": SAMPLE_FEATURES}
    answer = client.request("POST", f"/v1/models/{model}/predict", payload)
    if answer.status != 200:
        checks.record("predict", False, f"HTTP {answer.status}: {answer.body[:300]!r}")
        return
    body = answer.json()
    pd = body.get("pd")
    ok = (
        isinstance(pd, float)
        and 0.0 <= pd <= 1.0
        and body.get("decision") in DECISIONS
        and body.get("application_id") == application_id
        and bool(body.get("decision_id"))
    )
    detail = f"pd={pd} decision={body.get('decision')} decision_id={body.get('decision_id')}"
    checks.record("predict", ok, detail)


def check_metrics(client: Client, model: str, checks: Checks) -> None:
    answer = client.request("GET", "/metrics")
    text = answer.body.decode("utf-8", errors="replace")
    ok = answer.status == 200 and "creditops_predictions_total{" in text
    ok = ok and f'model="{model}"' in text
    detail = f"HTTP {answer.status}, {len(text.splitlines())} lines"
    checks.record("metrics", ok, detail if ok else f"{detail}; no prediction counter of {model}")


def check_docs(client: Client, model: str, checks: Checks) -> None:
    docs = client.request("GET", "/docs", auth=False)
    checks.record("docs", docs.status == 200 and b"swagger" in docs.body.lower(),
                  f"HTTP {docs.status}")  # fmt: skip
    spec = client.request("GET", "/openapi.json", auth=False)
    paths = spec.json().get("paths", {}) if spec.status == 200 else {}
    route = f"/v1/models/{model}/predict"
    documented = route in paths
    checks.record("openapi", documented, f"HTTP {spec.status}, {route} documented: {documented}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Smoke-test a creditops decision service.")
    parser.add_argument("base_url", help="e.g. http://localhost:8000")
    parser.add_argument("--key", default=os.environ.get("SMOKE_API_KEY"),
                        help="API key (default: $SMOKE_API_KEY)")  # fmt: skip
    parser.add_argument("--model", default=os.environ.get("SMOKE_MODEL", "taiwan"))
    parser.add_argument("--timeout", type=float, default=300.0, help="readiness wait, seconds")
    args = parser.parse_args(argv)

    client = Client(args.base_url, args.key)
    checks = Checks()
    health = client.request("GET", "/health", auth=False) if _reachable(client) else None
    checks.record("health", health is not None and health.status == 200,
                  f"HTTP {health.status}" if health else "unreachable")  # fmt: skip
    if wait_ready(client, args.model, args.timeout, checks):
        check_predict(client, args.model, checks)
        check_metrics(client, args.model, checks)
        check_docs(client, args.model, checks)
    if checks.failed:
        print(f"smoke test FAILED: {', '.join(checks.failed)}", file=sys.stderr)
        return 1
    print("smoke test passed")
    return 0


def _reachable(client: Client, attempts: int = 20) -> bool:
    for _ in range(attempts):
        try:
            client.request("GET", "/health", auth=False)
            return True
        except (urllib.error.URLError, OSError):
            time.sleep(3)
    return False


if __name__ == "__main__":
    sys.exit(main())
