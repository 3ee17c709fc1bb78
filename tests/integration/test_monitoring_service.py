"""Alert debouncing across check windows, the drift CLI on files, and the drift report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from creditops.cli import app
from creditops.services.context import AppContext
from creditops.services.monitoring import Observation, raise_alert
from creditops.settings import Settings
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.migrations_api import upgrade_database

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[2] / "data"


def test_levels_are_debounced_before_they_alert(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    upgrade_database(settings.database)
    sessions = session_factory(create_db_engine(settings.database))
    ctx = AppContext(settings)

    def observe(level: str) -> int:
        observed = Observation("m", "data_drift", level, "Data drift", "s")
        return len(raise_alert(ctx, sessions, observed))

    # raise at once; one clean window does not clear (2 of 2 needed); so no second alert
    sent = [observe(level) for level in ("critical", "ok", "critical", "critical")]
    assert sent == [1, 0, 0, 0]
    # two clean windows clear it: one resolution message
    assert [observe("ok"), observe("ok")] == [0, 1]


def test_drift_cli_on_files_writes_json_and_report(tmp_path: Path) -> None:
    frame = pd.read_csv(DATA / "taiwan_credit_card.csv")
    reference = frame[~frame["_is_test"]]
    current = frame[frame["_is_test"]].copy()
    current["pay_0"] = np.minimum(current["pay_0"] + 2, 8)
    reference.to_csv(tmp_path / "ref.csv", index=False)
    current.to_csv(tmp_path / "cur.csv", index=False)
    report = tmp_path / "drift.html"
    result = CliRunner().invoke(
        app,
        [
            "drift",
            "--spec",
            str(DATA / "specs/taiwan.yaml"),
            "--reference",
            str(tmp_path / "ref.csv"),
            "--current",
            str(tmp_path / "cur.csv"),
            "--report",
            str(report),
            "--json",
        ],
        env={"CREDITOPS_HOME": str(tmp_path / "home")},
    )
    assert result.exit_code in (0, 1), result.output
    body = json.loads(result.stdout)
    for key in ("drift_score", "drifted_share", "level"):
        assert key in body
    by_feature = {f["feature"]: f for f in body["features"]}
    for f in body["features"]:
        assert {"feature", "method", "statistic", "p_value", "psi", "drifted"} <= set(f)
    assert by_feature["pay_0"]["drifted"] is True
    assert by_feature["limit_bal"]["drifted"] is False
    html = report.read_text()
    assert "pay_0" in html and html.count("data:image/svg+xml;base64,") >= 20
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_drift_cli_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["drift"], env={"CREDITOPS_HOME": str(tmp_path)})
    assert result.exit_code == 2 and "--name" in result.stderr
    missing = runner.invoke(
        app,
        [
            "drift",
            "--spec",
            str(DATA / "specs/taiwan.yaml"),
            "--reference",
            str(tmp_path / "nope.csv"),
            "--current",
            str(tmp_path / "nope.csv"),
        ],
        env={"CREDITOPS_HOME": str(tmp_path)},
    )
    assert missing.exit_code == 2 and "not found" in missing.stderr
