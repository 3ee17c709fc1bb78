"""Which creditops source files one request passes through, measured by tracing the calls.

    python scripts/trace_request.py [--home DIR]

Trains the Taiwan demo model into a temporary home (or uses ``--home``), logs 300 decisions,
then traces one ``POST /v1/drift/data-drift`` request end to end (route, check, stored
reports, alerts on the ``log`` channel) and prints:

* the files in which a Python function of creditops ran, grouped by package, and
* how many times the request *entered* each file (a call from another file into it).

Start-up work that happens once per process (importing modules, building the app) is not
traced, and neither is model loading (registry, bundle, features) unless ``--with-loading``
is given: the figure is what a reader following the check has to read. Used to measure the
monitoring regrouping (issue 10); the test ``tests/integration/test_architecture.py`` holds
the result to a ceiling.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "creditops"
# Loading a bundle from the registry and verifying it: shared by every use case, not part
# of the check's own path.
LOADING = ("registry/", "modeling/", "features/", "domain/", "settings.py", "errors.py")


def trace_drift_request(
    home: Path, *, with_loading: bool = False
) -> tuple[list[str], Counter[str], Counter[tuple[str, str]]]:
    """(files passed through in first-seen order, entries per file) of one drift request."""
    import pandas as pd
    from fastapi.testclient import TestClient

    from creditops.api.app import create_app
    from creditops.settings import Settings

    settings = Settings(home=home, serve={"auth_enabled": False})
    app = create_app(settings)
    frame = pd.read_csv(ROOT / "data" / "taiwan_credit_card.csv").head(300)
    features = [c for c in frame.columns if c not in ("id", "target", "_is_test")]
    apps = [
        {"application_id": f"t-{i}", "features": {k: int(row[k]) for k in features}}
        for i, row in frame.iterrows()
    ]
    order: list[str] = []
    entries: Counter[str] = Counter()
    edges: Counter[tuple[str, str]] = Counter()
    lock = threading.Lock()
    active = threading.Event()

    def profile(frame: FrameType, event: str, _: Any) -> None:
        if event != "call" or not active.is_set():
            return
        path = frame.f_code.co_filename
        if not path.startswith(str(PACKAGE)):
            return
        rel = str(Path(path).relative_to(PACKAGE))
        if not with_loading and rel.startswith(LOADING):
            return
        caller = frame.f_back.f_code.co_filename if frame.f_back else ""
        if caller.startswith(str(PACKAGE)) and caller != path:
            edges[(str(Path(caller).relative_to(PACKAGE)), rel)] += 1
        with lock:
            if rel not in entries:
                order.append(rel)
            if caller != path:
                entries[rel] += 1
            else:
                entries.setdefault(rel, 0)

    # Every thread the client and the app start from here on is profiled (the request runs
    # on the client's event-loop thread and in the thread pool); only the traced request
    # is recorded.
    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        with TestClient(app) as client:
            response = _drive(client, apps, active)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    response.raise_for_status()
    return order, entries, edges


def _drive(client: Any, apps: list[dict[str, Any]], active: threading.Event) -> Any:
    """Log the decisions, then run the traced request (the model's first check, so its
    alerts fire)."""
    for start in range(0, len(apps), 100):
        response = client.post(
            "/v1/models/taiwan/predict", json={"applications": apps[start : start + 100]}
        )
        response.raise_for_status()
    active.set()
    try:
        return client.post("/v1/drift/data-drift", json={"model": "taiwan", "since": "1h"})
    finally:
        active.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--home", type=Path, help="A home with a promoted 'taiwan' model.")
    parser.add_argument("--with-loading", action="store_true", help="Count model loading too.")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.home is None:
        from tests.factories import train_demo_model

        home = Path(tempfile.mkdtemp(prefix="trace-home-"))
        train_demo_model(home)
    else:
        home = args.home
    order, entries, edges = trace_drift_request(home, with_loading=args.with_loading)
    packages = Counter(p.split("/")[0] if "/" in p else "(top)" for p in order)
    print(f"files: {len(order)} in {len(packages)} packages; entries: {sum(entries.values())}")
    for path in order:
        print(f"  {entries[path]:3d}  {path}")
    print("calls between files (caller -> callee: count):")
    for (caller, callee), count in sorted(edges.items()):
        print(f"  {caller} -> {callee}: {count}")


if __name__ == "__main__":
    main()
