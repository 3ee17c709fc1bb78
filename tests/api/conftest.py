"""A trained, promoted Taiwan model and an app bound to it, shared per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from creditops.api.app import create_app
from creditops.domain.access import SCOPES
from creditops.services.access import create_key
from creditops.settings import Settings
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.migrations_api import ensure_current
from tests.factories import train_demo_model

ROOT = Path(__file__).resolve().parents[2]
# The API tests send a few hundred decisions: let checks judge windows that small (the
# minimum sample sizes themselves are tested in tests/api/test_insufficient_data.py).
SMALL_WINDOWS = {"data_drift": 50, "prediction_drift": 50, "performance": 20, "fairness": 50}
DATA = ROOT / "data"


@pytest.fixture(scope="session")
def served_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("api-home")
    train_demo_model(home)
    return home


@pytest.fixture(scope="session")
def keys(served_home: Path) -> dict[str, str]:
    settings = Settings(home=served_home)
    ensure_current(settings.database)
    sessions = session_factory(create_db_engine(settings.database))
    made = {
        "admin": create_key(sessions, "admin", ["admin"], SCOPES, "test").key,
        "predict": create_key(sessions, "client", ["predict"], SCOPES, "test").key,
        "read": create_key(sessions, "reader", ["read", "explain", "feedback"], SCOPES, "test").key,
    }
    return made


@pytest.fixture(scope="session")
def client(served_home: Path, keys: dict[str, str]) -> Iterator[TestClient]:
    settings = Settings(
        home=served_home,
        serve={"max_batch": 50, "max_body_bytes": 200_000},
        monitor={"min_rows": SMALL_WINDOWS},
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
