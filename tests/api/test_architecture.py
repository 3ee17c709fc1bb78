"""The house plan, measured on a real request: following one drift check from its route to
the stored reports and alerts crosses few files, and no call climbs back up a layer.

The static side (imports point down, no package cycles, a core free of web and database
libraries) is checked by ``lint-imports`` in ``make lint``; this test checks what the
contracts cannot see: the files the check actually runs in, and calls made through
callbacks. The ceilings are today's figures (docs/decisions/0007-house-plan.md); a change
that raises them should say why.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_FILES = 17  # files the check runs in, outside the shared edge, plumbing and loading
MAX_PASSED_THROUGH = 9  # of which call on into another file


def _tracer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "trace_request", ROOT / "scripts/trace_request.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["trace_request"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trace(served_home: Path) -> object:
    tracer = _tracer()
    return tracer.trace_drift_request(tracer.fresh_home(served_home))


def test_a_drift_check_crosses_few_files(trace: object) -> None:
    check = trace.restricted(everything=False)  # type: ignore[attr-defined]
    assert "services/monitoring.py" in check.order and "alerts/episodes.py" in check.order
    assert len(check.order) <= MAX_FILES, check.order
    assert len(check.passed_through) <= MAX_PASSED_THROUGH, check.passed_through
    # the route calls the monitoring service once and the service is not entered again
    assert check.entries["services/monitoring.py"] <= 2


def test_no_call_climbs_back_up_a_layer(trace: object) -> None:
    everything = trace.restricted(everything=True)  # type: ignore[attr-defined]
    assert everything.calls_up == []
    assert ("api/routes/monitoring.py", "services/monitoring.py") in everything.calls
