"""End to end through the CLI: train, register, validate, promote, load, score.

Uses a real MLflow store (SQLite) under a temporary CREDITOPS_HOME shared by the module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from creditops.cli import app
from creditops.features.dataset import load_training_data
from creditops.features.spec import load_spec, parse_spec
from creditops.modeling.training import TrainOptions, train_model
from tests.factories import synthetic_credit, synthetic_spec, write_spec

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("creditops-home")


@pytest.fixture()
def cli(home: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CREDITOPS_HOME", str(home))
    monkeypatch.delenv("CREDITOPS_MLFLOW_URI", raising=False)
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def taiwan_v1(home: Path) -> dict[str, object]:
    env = {"CREDITOPS_HOME": str(home)}
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    try:
        code, out, err = invoke(
            CliRunner(),
            "train",
            "--spec",
            str(DATA / "specs/taiwan.yaml"),
            "--data",
            str(DATA / "taiwan_credit_card.csv"),
            "--policy",
            str(DATA / "policies/taiwan.yaml"),
            "--json",
        )
    finally:
        mp.undo()
    assert code == 0, err
    return dict(json.loads(out))


def test_train_json_contract_and_acceptance_figures(taiwan_v1: dict[str, object]) -> None:
    result = taiwan_v1
    for key in ("name", "version", "model_uri", "tracking_uri", "metrics", "report"):
        assert key in result
    metrics = result["metrics"]
    assert isinstance(metrics, dict)
    for key in ("auc", "gini", "ks", "brier", "log_loss", "accuracy", "precision", "recall", "f1"):
        assert isinstance(metrics[key], float)
    assert metrics["auc"] >= 0.775  # acceptance: Taiwan with the shipped spec
    assert metrics["gini"] == pytest.approx(2 * metrics["auc"] - 1)
    uncalibrated = result["uncalibrated_metrics"]
    assert isinstance(uncalibrated, dict)
    assert metrics["brier"] <= uncalibrated["brier"]
    baseline = result["baseline_metrics"]
    assert isinstance(baseline, dict) and 0.7 < baseline["auc"] < metrics["auc"]
    report = Path(str(result["report"]))
    assert report.is_file() and "<html" in report.read_text()[:500].lower()
    assert (
        result["name"] == "taiwan" and result["model_uri"] == f"models:/taiwan/{result['version']}"
    )


def test_validate_promote_and_score_in_a_fresh_process(
    cli: CliRunner, taiwan_v1: dict[str, object], home: Path, tmp_path: Path
) -> None:
    version = str(taiwan_v1["version"])
    code, out, err = invoke(
        cli,
        "validate",
        "--name",
        "taiwan",
        "--version",
        version,
        "--profile",
        str(DATA / "gates/taiwan.yaml"),
        "--json",
    )
    assert code == 0, out + err
    verdict = json.loads(out)
    assert verdict["passed"] is True
    assert {c["metric"] for c in verdict["checks"]} >= {"auc", "brier", "disparate_impact_ratio"}
    assert all({"metric", "value", "threshold", "passed"} <= set(c) for c in verdict["checks"])
    assert Path(verdict["report"]).is_file()

    code, _, err = invoke(
        cli, "models", "promote", "--name", "taiwan", "--version", version, "--to", "production"
    )
    assert code == 0, err
    code, out, _ = invoke(cli, "models", "list", "--name", "taiwan", "--json")
    listed = json.loads(out)
    assert listed[0]["aliases"] == ["production"] and listed[0]["gate_passed"] is True

    # In-memory model from the registered bundle vs a fresh process loading `production`.
    sample = pd.read_csv(DATA / "taiwan_credit_card.csv", nrows=500)
    sample_path = tmp_path / "sample.csv"
    sample.to_csv(sample_path, index=False)
    out_path = tmp_path / "scored.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "creditops.cli",
            "score",
            "--name",
            "taiwan",
            "--alias",
            "production",
            "--input",
            str(sample_path),
            "--output",
            str(out_path),
            "--json",
        ],
        env={"CREDITOPS_HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    scored = pd.read_csv(out_path)
    assert list(scored.columns[: len(sample.columns)]) == list(sample.columns)
    for column in ("pd", "score", "decision", "reason_1", "reason_4", "model_version"):
        assert column in scored.columns

    from creditops.services.context import AppContext
    from creditops.services.model_versions import load_model
    from creditops.settings import Settings

    loaded = load_model(AppContext(Settings(home=home)), "taiwan", "production")
    spec = load_spec(DATA / "specs/taiwan.yaml")
    data = load_training_data(DATA / "taiwan_credit_card.csv", spec, max_dirty_share=0.01)
    trained = train_model(data, spec, TrainOptions(policy=loaded.model.policy))
    in_memory = trained.model.predict_pd(trained.model.encoder.transform(sample))
    # bit for bit: retraining reproduces the bundle, and the fresh process scores identically
    assert trained.bundle.sha256() == loaded.info.tags["bundle_sha256"]
    np.testing.assert_array_equal(scored["pd"].to_numpy(), in_memory)


def test_score_refuses_text_in_a_numeric_column(
    cli: CliRunner, taiwan_v1: dict[str, object], tmp_path: Path
) -> None:
    rows = pd.read_csv(DATA / "taiwan_credit_card.csv", nrows=6).drop(columns=["target"])
    rows = rows.astype({"limit_bal": object})
    rows.loc[2, "limit_bal"] = "lots"
    rows.loc[4, "limit_bal"] = "many"
    source = tmp_path / "applicants.csv"
    rows.to_csv(source, index=False)
    output = tmp_path / "scored.csv"
    args = ["score", "--name", "taiwan", "--version", str(taiwan_v1["version"])]
    code, out, err = invoke(cli, *args, "--input", str(source), "--output", str(output))
    assert code != 0 and not output.exists()
    assert "'limit_bal' holds non-numeric values" in err and "Traceback" not in err + out
    assert "2 affected" in err and "lots" in err  # how many, and examples to fix


def test_reason_codes_are_consistent_with_the_raw_score() -> None:
    spec = load_spec(DATA / "specs/taiwan.yaml")
    data = load_training_data(DATA / "taiwan_credit_card.csv", spec, max_dirty_share=0.01)
    model = train_model(data, spec, TrainOptions()).model
    x = model.encoder.transform(data.frame.iloc[:300])
    contrib, base = model.contributions(x)
    np.testing.assert_allclose(contrib.sum(axis=1) + base, model.margin(x), atol=1e-9)
    # the precomputed TreeSHAP serves this model and equals LightGBM's own, row by row too
    assert model._treeshap is not None and model.booster is not None
    reference = model.booster.predict(x, pred_contrib=True)
    np.testing.assert_allclose(np.column_stack([contrib, base]), reference, rtol=0, atol=1e-9)
    one = np.column_stack(model.contributions(x[7:8]))
    np.testing.assert_allclose(one, reference[7:8], rtol=0, atol=1e-9)
    # and the single-row margin path gives LightGBM's raw score exactly
    assert model.margin(x[7:8])[0] == model.booster.predict(x[7:8], raw_score=True)[0]
    batch = model.score_encoded(x, None)
    unused = set(model.encoder.feature_names) - set(model.used_features)
    assert not unused & {f for f in batch.reason_features.ravel() if f}
    # deterministic for identical input
    again = model.score_encoded(x.copy(), None)
    np.testing.assert_array_equal(batch.reason_codes, again.reason_codes)
    # bill_amt1..6 share one code: a code never appears twice for an applicant
    for row in batch.reason_codes:
        codes = [c for c in row if c]
        assert len(codes) == len(set(codes))


def test_german_acceptance_and_unseen_csv(tmp_path: Path) -> None:
    spec = load_spec(DATA / "specs/german.yaml")
    data = load_training_data(DATA / "german_credit.csv", spec, max_dirty_share=0.01)
    result = train_model(data, spec, TrainOptions())
    assert result.evaluation.metrics["auc"] >= 0.75
    assert result.evaluation.metrics["brier"] <= result.evaluation.uncalibrated_metrics["brier"]

    # a CSV never seen before: missing values, string categories, outliers, no split column
    frame = synthetic_credit(3000, seed=11)
    path = tmp_path / "new.csv"
    frame.to_csv(path, index=False)
    new_spec = parse_spec(synthetic_spec())
    new = train_model(
        load_training_data(path, new_spec, max_dirty_share=0.01), new_spec, TrainOptions()
    )
    assert new.evaluation.metrics["auc"] > 0.7
    assert all(c["passed"] for c in new.evaluation.monotonicity)
    unseen = frame.head(5).assign(region=["mars", None, "north", "south", "??"])
    batch = new.model.score_frame(unseen)
    assert np.all(np.isfinite(batch.pd))
    # categorical splits and missing values: the precomputed TreeSHAP still equals LightGBM's
    for model, rows in ((result.model, data.frame.iloc[:200]), (new.model, unseen)):
        x = model.encoder.transform(rows)
        assert model._treeshap is not None and model.booster is not None
        np.testing.assert_allclose(
            np.column_stack(model.contributions(x)),
            model.booster.predict(x, pred_contrib=True),
            rtol=0,
            atol=1e-9,
        )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns=["delay"]), "missing"),
        (lambda f: f.astype({"income": object}).assign(income="lots"), "non-numeric"),
        (lambda f: f.assign(target="good"), "positive value"),
        (
            lambda f: f.assign(target=np.where(np.arange(len(f)) % 3 == 0, "maybe", f["target"])),
            "unexpected values",
        ),
        (lambda f: f.iloc[0:0], "no rows"),
    ],
    ids=["missing-column", "text-in-numeric", "one-class", "third-class", "empty"],
)
def test_cli_bad_training_data(cli: CliRunner, tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    frame = mutate(synthetic_credit(400))
    data = tmp_path / "bad.csv"
    frame.to_csv(data, index=False)
    spec = write_spec(tmp_path / "spec.yaml", synthetic_spec())
    code, out, err = invoke(cli, "train", "--spec", str(spec), "--data", str(data))
    assert code == 2
    assert message in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_cli_other_bad_inputs(cli: CliRunner, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    spec = write_spec(tmp_path / "spec.yaml", synthetic_spec())
    cases = [
        (["train", "--spec", str(spec), "--data", str(empty)], "empty"),
        (["train", "--spec", str(tmp_path / "nope.yaml"), "--data", str(empty)], "not found"),
        (["validate", "--name", "no-such-model"], "not registered"),
        (
            [
                "score",
                "--name",
                "taiwan",
                "--version",
                "999",
                "--input",
                str(DATA / "taiwan_credit_card.csv"),
                "--output",
                str(tmp_path / "o.csv"),
            ],
            "999",
        ),
        (["models", "promote", "--name", "taiwan", "--version", "1", "--to", "prod"], "--to"),
        (["validate", "--name", "taiwan", "--profile", "nonexistent"], "neither a file"),
    ]
    for args, message in cases:
        code, out, err = invoke(cli, *args)
        assert code == 2, (args, out, err)
        assert message in err and "Traceback" not in err, (args, err)


def test_weak_challenger_fails_champion_check_and_what_if(
    cli: CliRunner, taiwan_v1: dict[str, object], tmp_path: Path
) -> None:
    spec = load_spec(DATA / "specs/taiwan.yaml").model_dump(mode="json")
    spec["exclude_from_model"] = [f for f in spec["features"] if f != "education"]
    spec["monotone"] = {}
    spec["reasons"] = None
    weak = write_spec(tmp_path / "weak.yaml", spec)
    code, out, err = invoke(
        cli,
        "train",
        "--spec",
        str(weak),
        "--data",
        str(DATA / "taiwan_credit_card.csv"),
        "--name",
        "taiwan",
        "--json",
    )
    assert code == 0, err
    version = json.loads(out)["version"]
    assert version != taiwan_v1["version"]
    code, out, _ = invoke(
        cli,
        "validate",
        "--name",
        "taiwan",
        "--version",
        version,
        "--profile",
        str(DATA / "gates/taiwan.yaml"),
        "--json",
    )
    assert code == 1
    verdict = json.loads(out)
    champion = verdict["champion"]
    assert champion["version"] == str(taiwan_v1["version"])
    assert champion["auc_candidate"] < champion["auc_champion"] and champion["p_value"] < 0.05
    assert "champion_p_value" in {c["metric"] for c in verdict["checks"] if not c["passed"]}
    # a failed gate blocks promotion to production unless forced
    code, _, err = invoke(
        cli, "models", "promote", "--name", "taiwan", "--version", version, "--to", "production"
    )
    assert code == 2 and "failed its validation gate" in err

    code, out, err = invoke(
        cli,
        "policy",
        "what-if",
        "--name",
        "taiwan",
        "--alias",
        "production",
        "--cutoffs",
        "500,540,580",
        "--json",
    )
    assert code == 0, err
    rows = json.loads(out)
    assert [r["cutoff"] for r in rows] == [500.0, 540.0, 580.0]
    rates = [r["approval_rate"] for r in rows]
    assert rates == sorted(rates, reverse=True)
    bad_rates = [r["expected_bad_rate"] for r in rows]
    assert bad_rates == sorted(bad_rates, reverse=True)
    assert [r["is_current"] for r in rows] == [False, True, False]


def test_tuning_is_bounded_and_reproducible() -> None:
    spec = parse_spec(synthetic_spec())
    frame = synthetic_credit(1500, seed=3)
    from creditops.features.dataset import TrainingData

    y = (frame["target"] == "bad").to_numpy(dtype=np.int8)
    data = TrainingData(
        frame=frame.drop(columns=["target"]),
        y=y,
        is_test=None,
        data_sha256="x",
        n_rows_read=len(frame),
    )
    options = TrainOptions(tune_trials=3, tune_timeout_s=60)
    first = train_model(data, spec, options)
    second = train_model(data, spec, options)
    assert first.bundle.sha256() == second.bundle.sha256()
    tuned = first.bundle.training["params"]
    assert {"learning_rate", "num_leaves"} <= set(tuned)


def test_tampered_artifact_is_refused(
    cli: CliRunner, taiwan_v1: dict[str, object], home: Path, tmp_path: Path
) -> None:
    version = str(taiwan_v1["version"])
    stored = [p for p in (home / "mlartifacts").rglob("bundle.json")]
    assert stored
    for path in stored:
        path.write_bytes(path.read_bytes().replace(b'"seed":42', b'"seed":43'))
    sample = tmp_path / "in.csv"
    pd.read_csv(DATA / "taiwan_credit_card.csv", nrows=5).to_csv(sample, index=False)
    code, _, err = invoke(
        cli,
        "score",
        "--name",
        "taiwan",
        "--version",
        version,
        "--input",
        str(sample),
        "--output",
        str(tmp_path / "o.csv"),
    )
    assert code == 1
    assert "sha256" in err and "Traceback" not in err
