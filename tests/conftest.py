"""Markers by kind: every test is marked with the folder it lives in (``unit``,
``integration``, ``api``, ``e2e``, ``data``, ``model``), so ``pytest -m data`` runs the data
checks and ``make unit`` the fast ones."""

from __future__ import annotations

from pathlib import Path

import pytest

KINDS = ("unit", "integration", "api", "e2e", "data", "model")
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        relative = Path(str(item.path)).resolve().relative_to(HERE)
        kind = relative.parts[0] if len(relative.parts) > 1 else ""
        if kind in KINDS:
            item.add_marker(getattr(pytest.mark, kind))
