"""Too little evidence judges nothing: the README's flow (one decision, then a drift check)
reports insufficient_data, sends no alert, advises no retraining and exits 0 in the CLI.
Before the minimum sample sizes, one logged decision made the drift check CRITICAL."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from creditops.api.app import create_app
from creditops.cli import app as cli_app
from creditops.settings import Settings
from tests.api.test_api import applicant


def test_one_decision_is_not_drift(
    served_home: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database = f"sqlite:///{tmp_path / 'fresh.db'}"
    settings = Settings(home=served_home, database_url=database, serve={"auth_enabled": False})
    with (
        caplog.at_level(logging.WARNING, logger="creditops.alerts"),
        TestClient(create_app(settings)) as client,
    ):
        assert client.post("/v1/models/taiwan/predict", json=applicant(0)).status_code == 200
        answer = client.post("/v1/drift/check-and-retrain", json={"model": "taiwan", "since": "1h"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["level"] == "insufficient_data" and body["should_retrain"] is False
        assert body["alerts"] == []
        for kind in ("data_drift", "prediction_drift", "fairness"):
            result = body["results"][kind]
            assert result["level"] == "insufficient_data" and result["n_current"] == 1
            assert result["min_rows"] == settings.monitor.min_rows[kind]
        assert body["results"]["performance"]["level"] == "insufficient_data"
        gauges = client.get("/metrics").text
        assert "creditops_drift_level{" not in gauges  # nothing judged, nothing exported
    assert not [r for r in caplog.records if r.name == "creditops.alerts"]

    monkeypatch.setenv("CREDITOPS_HOME", str(served_home))
    monkeypatch.setenv("CREDITOPS_DATABASE_URL", database)
    result = CliRunner().invoke(cli_app, ["drift", "--name", "taiwan", "--since", "24h"])
    assert result.exit_code == 0, result.output
    assert "insufficient data" in result.stdout and "1 rows" in result.stdout
