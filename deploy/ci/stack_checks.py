#!/usr/bin/env python3
"""Checks of the compose stack's monitoring after it is up (CI's compose stage).

* Prometheus scrapes the API (``up{job="creditops-api"} == 1``), has the creditops alert
  rules loaded and healthy, and returns a creditops metric;
* Grafana is healthy, has the provisioned dashboards, and its Prometheus datasource answers.

    python deploy/ci/stack_checks.py --prometheus http://localhost:9090 \
        --grafana http://localhost:3000 --grafana-auth admin:admin

Standard library only. Exit code 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"


def get_json(url: str, auth: str | None = None) -> Any:
    req = urllib.request.Request(url)  # noqa: S310 - the stack's own URLs
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def prom_query(base: str, expr: str) -> list[dict[str, Any]]:
    answer = get_json(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def eventually(name: str, check: Any, timeout: float) -> bool:
    """Retry ``check()`` (returns a detail string or raises / returns None) until it passes."""
    deadline = time.monotonic() + timeout
    last = "not tried"
    while time.monotonic() < deadline:
        try:
            detail = check()
            if detail:
                print(f"PASS  {name}: {detail}", flush=True)
                return True
            last = "condition not met yet"
        except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            last = str(exc)
        time.sleep(3)
    print(f"FAIL  {name}: {last}", flush=True)
    return False


def prometheus_checks(base: str, timeout: float) -> list[bool]:
    def scraped() -> str | None:
        up = prom_query(base, 'up{job="creditops-api"}')
        values = [float(r["value"][1]) for r in up]
        return f"{len(values)} API target(s) up" if values and min(values) == 1 else None

    def rules() -> str | None:
        groups = get_json(f"{base}/api/v1/rules")["data"]["groups"]
        ours = [g for g in groups if g["name"].startswith("creditops-")]
        bad = [r["name"] for g in ours for r in g["rules"] if r.get("health") != "ok"]
        count = sum(len(g["rules"]) for g in ours)
        return f"{count} creditops rules, all healthy" if ours and not bad else None

    def metric() -> str | None:
        found = prom_query(base, "creditops_predictions_total")
        return f"{len(found)} creditops_predictions_total series" if found else None

    return [
        eventually("prometheus scrapes the API", scraped, timeout),
        eventually("prometheus alert rules", rules, timeout),
        eventually("prometheus has creditops metrics", metric, timeout),
    ]


def grafana_checks(base: str, auth: str, timeout: float) -> list[bool]:
    wanted = {json.loads(p.read_text())["uid"] for p in DASHBOARDS.glob("*.json")}

    def health() -> str | None:
        answer = get_json(f"{base}/api/health")
        return f"database {answer.get('database')}" if answer.get("database") == "ok" else None

    def dashboards() -> str | None:
        found = {d["uid"] for d in get_json(f"{base}/api/search?type=dash-db", auth)}
        missing = wanted - found
        return f"{len(wanted)} dashboards provisioned" if not missing else None

    def datasource() -> str | None:
        url = f"{base}/api/datasources/proxy/uid/prometheus/api/v1/query?query=up"
        answer = get_json(url, auth)
        return "datasource answers" if answer.get("status") == "success" else None

    return [
        eventually("grafana health", health, timeout),
        eventually("grafana dashboards", dashboards, timeout),
        eventually("grafana prometheus datasource", datasource, timeout),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check the compose stack's monitoring.")
    parser.add_argument("--prometheus", default="http://localhost:9090")
    parser.add_argument("--grafana", default="http://localhost:3000")
    parser.add_argument("--grafana-auth", default="admin:admin", help="user:password")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    results = prometheus_checks(args.prometheus.rstrip("/"), args.timeout)
    results += grafana_checks(args.grafana.rstrip("/"), args.grafana_auth, args.timeout)
    if not all(results):
        print("stack checks FAILED", file=sys.stderr)
        return 1
    print("stack checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
