"""Which creditops source files one drift check passes through, measured by tracing calls.

    .venv/bin/python scripts/trace_request.py [--home DIR] [--all]

Trains the Taiwan demo model into a temporary home (or uses ``--home``, a home with a
promoted ``taiwan`` model), logs 300 decisions through the API, then traces one
``POST /v1/drift/data-drift`` request (the model's first check, so its alerts fire on the
``log`` channel) from the route to its stored reports and alerts, in every thread, and
prints:

* **files**: the source files in which a Python function of creditops ran, and how many
  times the request *entered* each one (a call from another file into it);
* **passed through**: the files that call on into another creditops file: the ones a
  reader follows the check through, as opposed to the leaves where one can stop reading;
* **calls back up**: calls from a lower layer of the house into a higher one (none should
  exist: imports point down, and so must calls made through callbacks).

By default the figures leave out what every request or use case shares and a reader of
the check does not follow: the HTTP edge (``api/app.py``, ``fastpath``, ``security``,
``deps``, ``metrics``, ``offload``), the database plumbing (``store/engine.py``,
``store/tables.py``)
and loading the model bundle (``registry/``, ``modeling/``, ``features/``, ``domain/``,
``settings.py``, ``errors.py``); ``--all`` counts them too. The test
``tests/integration/test_architecture.py`` holds the figures to a ceiling.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "creditops"
SHARED = (
    "api/app.py",
    "api/fastpath.py",
    "api/security.py",
    "api/deps.py",
    "api/metrics.py",
    "api/offload.py",
    "store/engine.py",
    "store/tables.py",
    "registry/",
    "modeling/",
    "features/",
    "domain/",
    "settings.py",
    "errors.py",
)
# The house's layers, top first (docs/architecture.md): a call may go to the same layer or
# down, never up.
LAYERS = (
    ("cli.py", "cli_operations.py", "cli_support.py", "worker.py", "api/"),
    ("services/",),
    ("settings.py",),
    ("alerts/", "registry/", "store/", "reporting/"),
    ("monitoring/",),
    ("modeling/",),
    ("features/",),
    ("domain/",),
    ("errors.py",),
)


def layer_of(path: str) -> int:
    for depth, prefixes in enumerate(LAYERS):
        if path.startswith(prefixes):
            return depth
    return len(LAYERS)


@dataclass
class Trace:
    """What one traced request ran: files in first-seen order, entries per file, and the
    calls between files (caller, callee) with their counts."""

    order: list[str] = field(default_factory=list)
    entries: Counter[str] = field(default_factory=Counter)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)

    def restricted(self, *, everything: bool) -> Trace:
        """The trace without the shared files (see the module docstring), unless
        ``everything``."""
        if everything:
            return self
        keep = [p for p in self.order if not p.startswith(SHARED)]
        return Trace(
            keep,
            Counter({p: self.entries[p] for p in keep}),
            Counter({k: v for k, v in self.calls.items() if k[0] in keep and k[1] in keep}),
        )

    @property
    def passed_through(self) -> list[str]:
        return sorted({caller for caller, _ in self.calls})

    @property
    def calls_up(self) -> list[tuple[str, str]]:
        return sorted(k for k in self.calls if layer_of(k[1]) < layer_of(k[0]))


def trace_drift_request(home: Path) -> Trace:
    """Trace one drift check of the ``taiwan`` model served from ``home``."""
    import pandas as pd
    from fastapi.testclient import TestClient

    from creditops.api.app import create_app
    from creditops.settings import Settings

    small = {"data_drift": 50, "prediction_drift": 50, "performance": 20, "fairness": 50}
    settings = Settings(home=home, serve={"auth_enabled": False}, monitor={"min_rows": small})
    app = create_app(settings)
    frame = pd.read_csv(ROOT / "data" / "taiwan_credit_card.csv").head(300)
    features = [c for c in frame.columns if c not in ("id", "target", "_is_test")]
    apps = [
        {"application_id": f"t-{i}", "features": {k: int(row[k]) for k in features}}
        for i, row in frame.iterrows()
    ]
    trace = Trace()
    lock = threading.Lock()
    active = threading.Event()
    prefix = str(PACKAGE) + "/"

    def profile(frame: FrameType, event: str, _: Any) -> None:
        if event != "call" or not active.is_set():
            return
        path = frame.f_code.co_filename
        if not path.startswith(prefix):
            return
        here = path[len(prefix) :]
        caller_path = frame.f_back.f_code.co_filename if frame.f_back else ""
        with lock:
            if here not in trace.entries:
                trace.order.append(here)
                trace.entries[here] = 0
            if caller_path != path:
                trace.entries[here] += 1
                if caller_path.startswith(prefix):
                    trace.calls[(caller_path[len(prefix) :], here)] += 1

    # Every thread the client and the app start from here on is profiled (the request runs
    # on the client's event-loop thread and in the thread pool); only the traced request
    # is recorded.
    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        with TestClient(app) as client:
            for start in range(0, len(apps), 100):
                batch = {"applications": apps[start : start + 100]}
                client.post("/v1/models/taiwan/predict", json=batch).raise_for_status()
            active.set()
            response = client.post("/v1/drift/data-drift", json={"model": "taiwan"})
            active.clear()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    response.raise_for_status()
    return trace


def fresh_home(template: Path) -> Path:
    """A copy of ``template``'s model registry with an empty service database."""
    home = Path(tempfile.mkdtemp(prefix="trace-home-"))
    shutil.copytree(
        template, home, dirs_exist_ok=True, ignore=shutil.ignore_patterns("creditops.db*")
    )
    return home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--home", type=Path, help="A home with a promoted 'taiwan' model.")
    parser.add_argument("--all", action="store_true", help="Count the shared files too.")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.home is None:
        from tests.factories import train_demo_model

        template = Path(tempfile.mkdtemp(prefix="trace-model-"))
        train_demo_model(template)
    else:
        template = args.home
    trace = trace_drift_request(fresh_home(template)).restricted(everything=args.all)
    packages = {p.split("/")[0] if "/" in p else p for p in trace.order}
    print(f"files: {len(trace.order)} in {len(packages)} packages (entries in brackets)")
    for path in trace.order:
        print(f"  [{trace.entries[path]:3d}] {path}")
    print(f"passed through: {len(trace.passed_through)}")
    for path in trace.passed_through:
        print(f"  {path}")
    print(f"calls back up: {len(trace.calls_up)}")
    for caller, callee in trace.calls_up:
        print(f"  {caller} -> {callee}")


if __name__ == "__main__":
    main()
