"""``creditops scorecard``: the tables of a registered version, and the files beside its
report, for a logistic model (the scorecard itself) and a LightGBM one (its baseline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from creditops.cli import app
from tests.factories import synthetic_credit, synthetic_spec, write_spec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    """One logistic and one LightGBM version of the synthetic model, trained by the CLI."""
    home = tmp_path_factory.mktemp("scorecard-home")
    work = tmp_path_factory.mktemp("scorecard-data")
    data = work / "credit.csv"
    synthetic_credit(n=3000, seed=3).to_csv(data, index=False)
    spec = write_spec(
        work / "spec.yaml",
        synthetic_spec(value_labels={"region": {"west": "coastal west"}, "sex": {"F": "female"}}),
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("CREDITOPS_HOME", str(home))
    mp.delenv("CREDITOPS_MLFLOW_URI", raising=False)
    out: dict[str, dict[str, object]] = {}
    try:
        for algorithm in ("logistic", "lightgbm"):
            args = ["train", "--spec", str(spec), "--data", str(data), "--name", "sc"]
            result = CliRunner().invoke(app, [*args, "--algorithm", algorithm, "--json"])
            assert result.exit_code == 0, result.stderr
            trained_version = json.loads(result.stdout)
            shown = CliRunner().invoke(
                app,
                ["scorecard", "--name", "sc", "--version", trained_version["version"], "--json"],
            )
            assert shown.exit_code == 0, shown.stderr
            text = CliRunner().invoke(
                app, ["scorecard", "--name", "sc", "--version", trained_version["version"]]
            )
            assert text.exit_code == 0, text.stderr
            out[algorithm] = {
                "train": trained_version,
                "json": json.loads(shown.stdout),
                "text": text.stdout,
            }
        missing = CliRunner().invoke(app, ["scorecard", "--name", "nope", "--version", "1"])
        out["missing"] = {"code": missing.exit_code, "stderr": missing.stderr}
    finally:
        mp.undo()
    return out


@pytest.mark.parametrize(("algorithm", "role"), [("logistic", "model"), ("lightgbm", "baseline")])
def test_cli_tables_match_the_files_beside_the_report(
    trained: dict[str, dict[str, object]], algorithm: str, role: str
) -> None:
    shown = trained[algorithm]["json"]
    assert isinstance(shown, dict)
    assert shown["role"] == role and shown["algorithm"] == algorithm
    report = Path(str(trained[algorithm]["train"]["report"]))  # type: ignore[index]
    stored = json.loads((report.parent / "scorecard.json").read_text())
    assert {k: v for k, v in shown.items() if k not in ("name", "version", "algorithm")} == stored
    assert (report.parent / "scorecard_binning.csv").is_file()
    assert (report.parent / "scorecard_points.csv").is_file()
    html = report.read_text()
    assert 'id="scorecard"' in html and "west (coastal west)" in html


def test_cli_binning_numbers_recompute(trained: dict[str, dict[str, object]]) -> None:
    shown = trained["logistic"]["json"]
    assert isinstance(shown, dict)
    for table in shown["binning"]:
        rows = table["rows"]
        events = np.array([r["n_event"] for r in rows], dtype=float)
        nonevents = np.array([r["n_nonevent"] for r in rows], dtype=float)
        both = (events > 0) & (nonevents > 0)
        woe = np.zeros(len(rows))
        woe[both] = np.log((events[both] / events.sum()) / (nonevents[both] / nonevents.sum()))
        np.testing.assert_allclose([r["woe"] for r in rows], woe, atol=1e-9)
        iv = np.sum(np.where(both, (events / events.sum() - nonevents / nonevents.sum()) * woe, 0))
        assert table["iv"] == pytest.approx(iv)
    factor = shown["scaling"]["factor"]
    slope = shown["scaling"]["calibration_slope"]
    for row in shown["points"]:
        assert row["points"] == pytest.approx(-factor * slope * row["coefficient"] * row["woe"])


def test_cli_text_and_unknown_model(trained: dict[str, dict[str, object]]) -> None:
    text = str(trained["lightgbm"]["text"])
    assert "logistic WoE baseline" in text and "Base points" in text and "IV" in text
    assert "coastal west" in text
    missing = trained["missing"]
    assert missing["code"] == 2 and str(missing["stderr"]).startswith("error:")
