"""The Spark engine against the local one, on a real ``local[2]`` Spark (PySpark from PyPI,
the machine's Java).

One Taiwan demo model is trained into a module-scoped ``CREDITOPS_HOME`` and one
SparkSession serves the module (the engine reuses the active session). Scoring a directory
of two Parquet files on Spark must give the rows :func:`scored_frame` gives locally, and the
binned drift of a directory counted on Spark the result dictionary of the local binned mode,
value for value. The refusals (text in a numeric column, PySpark not installed) read the
same one line as locally.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from creditops.cli import app
from creditops.errors import DataError, InvalidInputError
from creditops.services import monitoring
from creditops.services.context import AppContext
from creditops.services.model_versions import LoadedModel, load_model
from creditops.services.scoring import scored_frame
from creditops.services.spark_engine import INSTALL_HINT, drift_spark, score_spark
from creditops.settings import Settings
from tests.factories import train_demo_model

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
NAME = "taiwan"
MASTER = "local[2]"
N_ROWS = 3000


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local[2] session for the module, small and quiet (no UI, 4 shuffle partitions)."""
    if shutil.which("java") is None:
        pytest.skip("Spark needs a Java runtime and there is no `java` on PATH")
    from pyspark.sql import SparkSession

    mp = pytest.MonkeyPatch()
    mp.setenv("PYSPARK_PYTHON", sys.executable)  # the workers import this creditops
    session = (
        SparkSession.builder.master(MASTER)
        .appName("creditops-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    mp.undo()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("spark-home")
    train_demo_model(home, mlflow_uri=None)
    return home


@pytest.fixture(scope="module")
def ctx(home: Path) -> AppContext:
    return AppContext(Settings(home=home, mlflow_uri=None))


@pytest.fixture(scope="module")
def loaded(ctx: AppContext) -> LoadedModel:
    return load_model(ctx, NAME, "production")


@pytest.fixture(scope="module")
def reference(ctx: AppContext) -> monitoring.BinnedReference:
    return monitoring.binned_reference(ctx, NAME, "production")


def taiwan_rows(n: int, offset: int = 0) -> pd.DataFrame:
    return pd.read_csv(DATA / "taiwan_credit_card.csv", nrows=n, skiprows=range(1, offset + 1))


def write_parts(frame: pd.DataFrame, folder: Path, parts: int = 2) -> Path:
    """``frame`` as ``parts`` Parquet files in ``folder`` (a Spark-style directory)."""
    folder.mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[rows].to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    return folder


def read_parts(folder: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))])


@pytest.fixture(scope="module")
def applicants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_parts(taiwan_rows(N_ROWS), tmp_path_factory.mktemp("applicants") / "in")


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Later Taiwan rows with what a decision history holds: missing amounts (NaN), limits
    written as text (one with spaces, some empty), education as text in several spellings
    of one category, an unseen category, and a shift in the repayment status."""
    frame = taiwan_rows(N_ROWS, offset=20_000)
    rng = np.random.default_rng(7)
    frame["bill_amt1"] = frame["bill_amt1"].astype("float64")
    frame.loc[rng.random(len(frame)) < 0.05, "bill_amt1"] = np.nan
    frame["pay_0"] = frame["pay_0"] + (rng.random(len(frame)) < 0.3)
    limit = frame["limit_bal"].astype(str)
    limit.iloc[:40] = ""
    limit.iloc[40] = f" {limit.iloc[40]} "
    frame["limit_bal"] = limit
    education = frame["education"].astype(str)
    education.iloc[:25] = education.iloc[:25] + ".0"
    education.iloc[25:50] = " " + education.iloc[25:50]
    education.iloc[50:60] = "9"
    education.iloc[60:70] = None
    frame["education"] = education
    return write_parts(frame, tmp_path_factory.mktemp("shifted") / "current")


def test_scores_equal_the_local_engine_row_for_row(
    spark: Any, ctx: AppContext, loaded: LoadedModel, applicants: Path, tmp_path: Path
) -> None:
    outcome = score_spark(ctx, NAME, "production", applicants, tmp_path / "scored", MASTER)

    local = scored_frame(read_parts(applicants), loaded.model, NAME, loaded.info.version)
    written = read_parts(tmp_path / "scored")
    assert written.columns.tolist() == local.columns.tolist()
    pd.testing.assert_frame_equal(
        written.sort_values("id").reset_index(drop=True),
        local.sort_values("id").reset_index(drop=True),
    )
    assert (outcome.rows, outcome.version) == (N_ROWS, loaded.info.version)
    assert outcome.decisions == local["decision"].value_counts().to_dict()
    assert len(list((tmp_path / "scored").glob("*.parquet"))) >= 2  # one per partition


def test_drift_equals_the_local_binned_mode(
    spark: Any, reference: monitoring.BinnedReference, shifted: Path
) -> None:
    on_spark = drift_spark(reference, shifted, MASTER).to_dict()
    local = monitoring.binned_file_drift(reference, shifted).to_dict()

    assert on_spark == local
    by_name = {f["feature"]: f for f in on_spark["features"]}
    assert by_name["bill_amt1"]["missing_share_current"] == pytest.approx(0.05, abs=0.015)
    assert by_name["limit_bal"]["missing_share_current"] == pytest.approx(40 / N_ROWS)
    assert by_name["education"]["unseen_count"] == 10
    assert by_name["pay_0"]["drifted"]


def test_drift_command_on_spark_prints_what_the_local_engine_prints(
    spark: Any, home: Path, shifted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITOPS_HOME", str(home))
    monkeypatch.delenv("CREDITOPS_MLFLOW_URI", raising=False)
    results = {}
    for engine in ("local", "spark"):
        args = ["drift", "--name", NAME, "--current", str(shifted), "--engine", engine]
        result = CliRunner().invoke(app, [*args, "--master", MASTER, "--json"])
        assert result.exit_code in (0, 1), result.output
        results[engine] = json.loads(result.stdout)
    assert results["spark"].pop("engine") == "spark"
    assert results["local"].pop("engine") == "local"
    assert results["spark"] == results["local"]


def test_text_in_a_numeric_column_is_refused_as_locally(
    spark: Any,
    ctx: AppContext,
    loaded: LoadedModel,
    reference: monitoring.BinnedReference,
    tmp_path: Path,
) -> None:
    """One bad value: the Arrow batch that holds it is its file, so the executor's message
    (counts and examples of its batch) is the local function's on that file."""
    frame = taiwan_rows(200)
    frame["limit_bal"] = frame["limit_bal"].astype(str)
    frame.loc[17, "limit_bal"] = "20k"
    folder = write_parts(frame, tmp_path / "in")

    with pytest.raises(DataError) as local_score:
        first = pd.read_parquet(folder / "part-00000.parquet")
        scored_frame(first, loaded.model, NAME, loaded.info.version)
    with pytest.raises(DataError) as spark_score:
        score_spark(ctx, NAME, "production", folder, tmp_path / "scored", MASTER)
    assert str(spark_score.value) == str(local_score.value)
    assert "limit_bal" in str(spark_score.value) and "'20k'" in str(spark_score.value)

    with pytest.raises(DataError) as local_drift:
        monitoring.binned_file_drift(reference, folder)
    with pytest.raises(DataError) as spark_drift:
        drift_spark(reference, folder, MASTER)
    assert str(spark_drift.value) == str(local_drift.value)


def test_an_output_directory_of_other_files_is_not_replaced(
    spark: Any, ctx: AppContext, applicants: Path, tmp_path: Path
) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(InvalidInputError, match="not an earlier Spark output"):
        score_spark(ctx, NAME, "production", applicants, tmp_path, MASTER)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


WITHOUT_PYSPARK = """
import sys
sys.modules["pyspark"] = None  # `import pyspark` now fails as if it were not installed
from creditops.errors import InvalidInputError
from creditops.services.spark_engine import score_spark
try:
    score_spark(None, "taiwan", "production", "in", "out", "local[2]")
except InvalidInputError as exc:
    print(exc)
sys.argv = ["creditops", *sys.argv[1:]]
from creditops.cli import main
main()
"""


def test_without_pyspark_the_spark_engine_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    env = {**os.environ, "CREDITOPS_HOME": str(tmp_path / "home")}
    args = ["drift", "--name", NAME, "--current", str(tmp_path), "--engine", "spark"]
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYSPARK, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    hint = f"--engine spark needs PySpark, which is not installed: {INSTALL_HINT}"
    assert done.stdout.strip() == hint  # score_spark's error
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {hint}"]
