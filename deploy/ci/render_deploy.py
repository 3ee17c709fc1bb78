#!/usr/bin/env python3
"""Deploy to Render through a deploy hook, wait for the deploy, roll back to a previous one.

The CI pipeline's deploy stage (.github/workflows/ci.yml) runs:

    python deploy/ci/render_deploy.py live              # the deploy serving now -> previous
    python deploy/ci/render_deploy.py trigger           # POST the deploy hook -> new deploy
    python deploy/ci/render_deploy.py wait NEW_ID       # until live (exit 1 if it failed)
    python deploy/ci/smoke.py https://...               # post-deploy smoke test
    python deploy/ci/render_deploy.py rollback PREV_ID  # only if the smoke test failed

Environment: RENDER_DEPLOY_HOOK_URL (the service's deploy hook, a secret), and for
``live``, ``wait`` and ``rollback`` RENDER_API_KEY and RENDER_SERVICE_ID (Render's REST
API, https://api.render.com/v1; RENDER_API_URL overrides the address, for tests). Each
command prints its result and, on GitHub Actions, also writes ``deploy_id=...`` to
$GITHUB_OUTPUT. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

API = os.environ.get("RENDER_API_URL", "https://api.render.com/v1").rstrip("/")
LIVE = "live"
FAILED = {"build_failed", "update_failed", "canceled", "deactivated", "pre_deploy_failed"}


class RenderError(Exception):
    pass


def _env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise RenderError(f"{name} is not set")
    return value


def _call(method: str, url: str, payload: Any = None, *, api: bool = True) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - https URLs
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if api:
        req.add_header("Authorization", f"Bearer {_env('RENDER_API_KEY')}")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300]
        raise RenderError(f"{method} {url.split('?')[0]}: HTTP {exc.code} {detail!r}") from None
    except urllib.error.URLError as exc:
        raise RenderError(f"{method} {url.split('?')[0]}: {exc.reason}") from exc
    return json.loads(body) if body.strip() else None


def _service_url(path: str = "") -> str:
    return f"{API}/services/{_env('RENDER_SERVICE_ID')}{path}"


def _deploy_of(item: Any) -> dict[str, Any]:
    """List entries are ``{"deploy": {...}, "cursor": ...}``; single answers are the deploy."""
    if isinstance(item, dict):
        inner = item.get("deploy")
        found: dict[str, Any] = inner if isinstance(inner, dict) else item
        return found
    raise RenderError(f"unexpected answer from Render: {item!r:.300}")


def live_deploy() -> str:
    items = _call("GET", _service_url("/deploys?limit=20"))
    for item in items or []:
        deploy = _deploy_of(item)
        if deploy.get("status") == LIVE:
            return str(deploy["id"])
    raise RenderError("the service has no live deploy")


def trigger() -> str:
    answer = _call("POST", _env("RENDER_DEPLOY_HOOK_URL"), api=False)
    deploy = _deploy_of(answer) if answer else {}
    if deploy.get("id"):
        return str(deploy["id"])
    # Older hooks answer without a body: the newest deploy is ours.
    items = _call("GET", _service_url("/deploys?limit=1"))
    if not items:
        raise RenderError("the deploy hook answered, but no deploy was found")
    return str(_deploy_of(items[0])["id"])


def wait(deploy_id: str, timeout: float, interval: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    status = "unknown"
    while time.monotonic() < deadline:
        status = str(_deploy_of(_call("GET", _service_url(f"/deploys/{deploy_id}"))).get("status"))
        print(f"deploy {deploy_id}: {status}", flush=True)
        if status == LIVE:
            return status
        if status in FAILED:
            raise RenderError(f"deploy {deploy_id} ended as {status}")
        time.sleep(interval)
    raise RenderError(f"deploy {deploy_id} not live after {timeout:.0f}s (last: {status})")


def rollback(deploy_id: str, timeout: float, interval: float = 10.0) -> str:
    answer = _call("POST", _service_url("/rollback"), {"deployId": deploy_id})
    new_id = str(_deploy_of(answer).get("id") or "")
    if not new_id:
        raise RenderError(f"rollback to {deploy_id} was not accepted: {answer!r:.300}")
    print(f"rolling back to {deploy_id} as deploy {new_id}", flush=True)
    wait(new_id, timeout, interval)
    return new_id


def _output(deploy_id: str) -> None:
    print(deploy_id)
    path = os.environ.get("GITHUB_OUTPUT")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"deploy_id={deploy_id}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render deploys for the CI pipeline.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("live", help="print the id of the deploy that is live now")
    sub.add_parser("trigger", help="POST the deploy hook; print the new deploy's id")
    for name in ("wait", "rollback"):
        cmd = sub.add_parser(name, help=f"{name} a deploy (by id)")
        cmd.add_argument("deploy_id")
        cmd.add_argument("--timeout", type=float, default=1200.0, help="seconds")
        cmd.add_argument("--interval", type=float, default=10.0, help="poll every, seconds")
    args = parser.parse_args(argv)
    try:
        if args.command == "live":
            _output(live_deploy())
        elif args.command == "trigger":
            _output(trigger())
        elif args.command == "wait":
            wait(args.deploy_id, args.timeout, args.interval)
        else:
            _output(rollback(args.deploy_id, args.timeout, args.interval))
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
