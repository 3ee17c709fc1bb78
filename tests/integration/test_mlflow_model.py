"""A registered version as MLflow users know it: a pyfunc model, its run and its serving.

One Taiwan demo model is trained and promoted into a module-scoped ``CREDITOPS_HOME``
(SQLite MLflow store). MLflow's own loader, ``mlflow models serve`` (a real subprocess) and
``MlflowClient`` then read it, and their answers are compared with ``creditops score`` on
the same applicants.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from mlflow.types import DataType
from typer.testing import CliRunner

from creditops.cli import app
from creditops.registry.pyfunc_model import OUTPUT_COLUMNS, REASON_SEPARATOR
from creditops.registry.tracking import EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT
from creditops.services.context import AppContext
from creditops.settings import Settings
from tests.factories import train_demo_model
from tests.integration.server_harness import HOST, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
NAME = "taiwan"
SERVE_READY_S = 180.0


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("mlflow-model-home")
    train_demo_model(home, mlflow_uri=None)
    return home


@pytest.fixture(scope="module")
def tracking_uri(home: Path) -> str:
    return AppContext(Settings(home=home, mlflow_uri=None)).registry.tracking_uri


@pytest.fixture(scope="module")
def applicants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Test-split rows as the CSV a user scores, plus a 17-year-old (a knock-out rule)."""
    frame = pd.read_csv(DATA / "taiwan_credit_card.csv")
    rows = frame[frame["_is_test"].astype(str).str.lower() == "true"].head(120).copy()
    minor = rows.iloc[[0]].assign(id=-1, age=17)
    path = tmp_path_factory.mktemp("applicants") / "applicants.csv"
    pd.concat([rows, minor]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def scored(home: Path, applicants: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """What ``creditops score --alias production`` writes for the applicants."""
    output = tmp_path_factory.mktemp("scored") / "scored.csv"
    mp = pytest.MonkeyPatch()
    mp.setenv("CREDITOPS_HOME", str(home))
    mp.delenv("CREDITOPS_MLFLOW_URI", raising=False)
    try:
        args = ["score", "--name", NAME, "--alias", "production"]
        result = CliRunner().invoke(
            app, [*args, "--input", str(applicants), "--output", str(output)]
        )
    finally:
        mp.undo()
    assert result.exit_code == 0, result.output
    return pd.read_csv(output)


def _reasons(scored: pd.DataFrame) -> list[str]:
    codes = scored[[f"reason_{i}" for i in range(1, 5)]]
    return [
        REASON_SEPARATOR.join(str(c) for c in row if isinstance(c, str)) for row in codes.values
    ]


def _assert_same_answers(answer: pd.DataFrame, scored: pd.DataFrame) -> None:
    assert list(answer.columns) == list(OUTPUT_COLUMNS)
    assert len(answer) == len(scored)
    np.testing.assert_allclose(answer["pd"], scored["pd"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(answer["score"], scored["score"], rtol=0, atol=1e-9)
    assert answer["decision"].tolist() == scored["decision"].tolist()
    assert answer["reasons"].fillna("").tolist() == _reasons(scored)


def _numeric_as_float(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """MLflow refuses int64 for a double column (it may lose precision): cast first."""
    return frame.astype({c: np.float64 for c in columns if c in frame.columns})


def test_production_alias_loads_with_mlflow_and_answers_as_creditops_score(
    tracking_uri: str, applicants: Path, scored: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@production")
    schema = model.metadata.get_input_schema()
    assert schema is not None
    numeric = [c.name for c in schema.inputs if c.type == DataType.double]
    assert {"limit_bal", "pay_0", "age"} <= set(numeric)
    frame = _numeric_as_float(pd.read_csv(applicants), numeric)

    answer = model.predict(frame)  # a large frame: encoded column by column
    some = [*range(8), len(frame) - 1]
    singles = pd.concat([model.predict(frame.iloc[[i]]) for i in some], ignore_index=True)

    _assert_same_answers(answer, scored)
    _assert_same_answers(singles, scored.iloc[some].reset_index(drop=True))  # row by row
    assert answer["reasons"].iloc[-1].startswith("KO01")  # the minor is knocked out
    assert answer["decision"].iloc[-1] == "decline"


def test_the_version_records_signature_example_params_dataset_and_duration(
    home: Path, tracking_uri: str
) -> None:
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = client.get_model_version_by_alias(NAME, "production")
    run = client.get_run(version.run_id)
    [output] = run.outputs.model_outputs  # the run's logged model ...
    assert version.source == f"models:/{output.model_id}"  # ... is what the version points at
    logged = client.get_logged_model(output.model_id)
    assert logged.source_run_id == version.run_id
    assert str(logged.status) == "READY"
    assert logged.tags["bundle_sha256"] == version.tags["bundle_sha256"]

    model_dir = Path(client.download_artifacts(version.run_id, "bundle", str(home / "dl")))
    assert (model_dir / "bundle.json").is_file()
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=logged.artifact_location, dst_path=str(home / "dl-model")
        )
    )
    mlmodel = (local / "MLmodel").read_text()
    assert "signature:" in mlmodel and "saved_input_example_info:" in mlmodel
    example = json.loads((local / "input_example.json").read_text())
    assert "limit_bal" in example["columns"] and example["data"]

    params = run.data.params
    for key in ("lgbm.num_leaves", "lgbm.learning_rate", "lgbm.num_iterations", "lgbm.seed"):
        assert key in params, key
    assert int(params["lgbm.num_iterations"]) > 0
    assert logged.params["lgbm.num_leaves"] == params["lgbm.num_leaves"]
    assert params["lgbm.verbosity"] == "-1"

    [dataset_input] = run.inputs.dataset_inputs
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["mlflow.data.context"] == "training"
    assert tags["creditops.data_sha256"] == version.tags["data_sha256"]
    assert dataset_input.dataset.digest == version.tags["data_sha256"][:36]
    assert dataset_input.dataset.name == "taiwan_credit_card.csv"
    assert json.loads(dataset_input.dataset.profile)["num_rows"] == 30000

    assert run.info.status == "FINISHED"
    duration_ms = run.info.end_time - run.info.start_time
    assert duration_ms > 1000, f"the run lasted {duration_ms} ms: it does not span training"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_DEVELOPMENT


@contextlib.contextmanager
def mlflow_serving(model_uri: str, tracking_uri: str, log: Path) -> Iterator[int]:
    """``mlflow models serve --env-manager local`` in its own process group on a free port."""
    port = free_port()
    bin_dir = Path(sys.executable).parent  # it starts `uvicorn` from PATH
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri]
    command += ["--env-manager", "local", "-p", str(port), "-h", HOST]
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_ready(proc, port, log)
            yield port
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + SERVE_READY_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"mlflow models serve exited {proc.returncode}:\n{log.read_text()}"
            )
        ping = f"http://{HOST}:{port}/ping"
        with contextlib.suppress(OSError), urllib.request.urlopen(ping, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.5)
    raise AssertionError(
        f"mlflow models serve not ready after {SERVE_READY_S} s:\n{log.read_text()}"
    )


@pytest.mark.slow
def test_mlflow_models_serve_answers_as_creditops_score(
    tracking_uri: str, applicants: Path, scored: pd.DataFrame, tmp_path: Path
) -> None:
    frame = pd.read_csv(applicants)
    columns = [c for c in frame.columns if c not in ("id", "target", "_is_test")]
    # JSON integers for double columns: the scoring server reads them by the signature.
    body = {"dataframe_split": {"columns": columns, "data": frame[columns].values.tolist()}}
    with mlflow_serving(f"models:/{NAME}@production", tracking_uri, tmp_path / "serve.log") as port:
        request = urllib.request.Request(
            f"http://{HOST}:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            answer = json.loads(resp.read())

    _assert_same_answers(pd.DataFrame(answer["predictions"]), scored)
