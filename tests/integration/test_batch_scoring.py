"""``creditops score`` streams: chunks on worker processes, output in input order.

Every streamed output is compared with the reference, :func:`scored_frame` over the whole
table read at once (what ``creditops score`` wrote before it streamed): CSV byte for byte,
Parquet frame for frame. Small chunks (``--chunk-rows``) and two workers make many chunks
finish out of order; refusals must name the rows of the whole table and leave no output.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from creditops import cli_support
from creditops.cli import app
from creditops.errors import DataError
from creditops.features.dataset import read_table
from creditops.modeling.bundle import ScoringModel
from creditops.services.context import AppContext
from creditops.services.model_versions import load_model
from creditops.services.scoring import scored_frame
from creditops.settings import Settings
from tests.factories import train_demo_model

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[2] / "data"
ROWS = 3000
STREAMED = ("--workers", "2", "--chunk-rows", "400")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("batch-home")
    train_demo_model(home)
    return home


@pytest.fixture(scope="module")
def model(home: Path) -> tuple[ScoringModel, str]:
    loaded = load_model(AppContext(Settings(home=home)), "taiwan", "production")
    return loaded.model, loaded.info.version


@pytest.fixture()
def applicants() -> pd.DataFrame:
    return pd.read_csv(DATA / "taiwan_credit_card.csv", nrows=ROWS).drop(columns=["target"])


def score(home: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("CREDITOPS_HOME", str(home))
    result = CliRunner().invoke(app, ["score", "--name", "taiwan", "--alias", "production", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def reference(table: Path, model: tuple[ScoringModel, str]) -> pd.DataFrame:
    """The whole table scored at once."""
    return scored_frame(read_table(table), model[0], "taiwan", model[1])


def write_parquet(frame: pd.DataFrame, path: Path, row_group_rows: int) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_rows)
    return path


def test_csv_streamed_on_two_workers_is_byte_identical(
    home: Path,
    model: tuple[ScoringModel, str],
    applicants: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "applicants.csv"
    applicants.to_csv(source, index=False)
    output = tmp_path / "scored.csv"
    code, out, err = score(
        home, monkeypatch, "--input", str(source), "--output", str(output), *STREAMED
    )
    assert code == 0, err
    expected = tmp_path / "expected.csv"
    reference(source, model).to_csv(expected, index=False)
    assert output.read_bytes() == expected.read_bytes()
    assert f"Scored {ROWS} rows" in out


def test_parquet_row_groups_streamed_in_input_order(
    home: Path,
    model: tuple[ScoringModel, str],
    applicants: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = write_parquet(applicants, tmp_path / "applicants.parquet", row_group_rows=700)
    assert pq.ParquetFile(source).metadata.num_row_groups == 5
    output = tmp_path / "scored.parquet"
    code, out, err = score(
        home, monkeypatch, "--input", str(source), "--output", str(output), *STREAMED, "--json"
    )
    assert code == 0, err
    streamed = pd.read_parquet(output)
    expected_path = tmp_path / "expected.parquet"
    reference(source, model).to_parquet(expected_path, index=False)
    pd.testing.assert_frame_equal(streamed, pd.read_parquet(expected_path))
    assert streamed["id"].tolist() == applicants["id"].tolist()  # input order
    result = json.loads(out)
    assert result["rows"] == ROWS and sum(result["decisions"].values()) == ROWS
    assert result["decisions"] == streamed["decision"].value_counts().to_dict()


def test_a_directory_of_parquet_files_is_one_table(
    home: Path,
    model: tuple[ScoringModel, str],
    applicants: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "book"
    folder.mkdir()
    write_parquet(applicants.iloc[:1800], folder / "part-0.parquet", row_group_rows=1000)
    write_parquet(applicants.iloc[1800:], folder / "part-1.parquet", row_group_rows=1000)
    (folder / "_SUCCESS").write_text("")
    output = tmp_path / "scored.csv"
    code, _, err = score(
        home, monkeypatch, "--input", str(folder), "--output", str(output), *STREAMED
    )
    assert code == 0, err
    whole = write_parquet(applicants, tmp_path / "whole.parquet", row_group_rows=ROWS)
    expected = tmp_path / "expected.csv"
    reference(whole, model).to_csv(expected, index=False)
    assert output.read_bytes() == expected.read_bytes()


def test_one_worker_scores_in_process_with_the_same_output(
    home: Path, applicants: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_parquet(applicants, tmp_path / "applicants.parquet", row_group_rows=1000)
    outputs = []
    for workers in ("1", "2"):
        output = tmp_path / f"scored-{workers}.parquet"
        code, _, err = score(
            home, monkeypatch, "--input", str(source), "--output", str(output),
            "--workers", workers, "--chunk-rows", "700",
        )  # fmt: skip
        assert code == 0, err
        outputs.append(pd.read_parquet(output))
    pd.testing.assert_frame_equal(outputs[0], outputs[1])


def _refusal(source: Path, model: tuple[ScoringModel, str]) -> str:
    with pytest.raises(DataError) as refused:
        reference(source, model)
    return refused.value.message


@pytest.mark.parametrize(
    ("text_at", "missing_at"),
    [
        pytest.param({10: "lots", 2500: "many", 2600: "lots"}, {}, id="text-in-two-chunks"),
        pytest.param({}, {5: "limit_bal", 1500: "pay_0", 2900: "limit_bal"}, id="missing"),
        pytest.param({2800: "n/a!"}, {5: "limit_bal"}, id="text-after-a-missing-input"),
    ],
)
def test_refusals_name_the_rows_of_the_whole_table_and_leave_no_output(
    home: Path,
    model: tuple[ScoringModel, str],
    applicants: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    text_at: dict[int, str],
    missing_at: dict[int, str],
) -> None:
    frame = applicants.astype({"pay_amt1": object})
    for row, text in text_at.items():
        frame.loc[row, "pay_amt1"] = text
    for row, column in missing_at.items():
        frame.loc[row, column] = np.nan
    source = tmp_path / "applicants.csv"
    frame.to_csv(source, index=False)
    output = tmp_path / "scored.csv"
    output.write_text("an earlier run's output\n")
    code, out, err = score(
        home, monkeypatch, "--input", str(source), "--output", str(output), *STREAMED
    )
    assert code == 2 and out == ""
    assert err.strip() == f"error: {_refusal(source, model)}"  # the same line as read at once
    assert err.count("\n") == 1 and "Traceback" not in err
    assert output.read_text() == "an earlier run's output\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["applicants.csv", "scored.csv"]


def test_refusal_row_numbers_count_over_every_chunk(
    home: Path, applicants: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = applicants.copy()
    frame.loc[[5, 1203, 2999], "limit_bal"] = np.nan
    source = write_parquet(frame, tmp_path / "applicants.parquet", row_group_rows=500)
    output = tmp_path / "scored.parquet"
    code, _, err = score(
        home, monkeypatch, "--input", str(source), "--output", str(output), *STREAMED
    )
    assert code == 2 and not output.exists()
    assert "limit_bal is missing in 3 row(s)" in err and "e.g. 6, 1204, 3000" in err


def test_json_prints_one_object_and_no_progress_on_a_terminal(
    home: Path, applicants: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "applicants.csv"
    applicants.to_csv(source, index=False)
    monkeypatch.setattr(cli_support.err, "_force_terminal", True)
    args = ("--input", str(source), "--chunk-rows", "1000", "--workers", "1")
    code, out, err = score(home, monkeypatch, *args, "--output", str(tmp_path / "a.csv"), "--json")
    assert code == 0 and err == ""
    assert json.loads(out)["rows"] == ROWS
    code, out, err = score(home, monkeypatch, *args, "--output", str(tmp_path / "b.csv"))
    assert code == 0
    assert f"{ROWS:,}/{ROWS:,} rows" in err and "rows/s" in err  # the bar, on stderr
    assert out.startswith(f"Scored {ROWS} rows")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        pytest.param("--chunk-rows", "0", "--chunk-rows must be a positive", id="chunk-rows"),
        pytest.param("--workers", "0", "--workers must be at least 1", id="workers"),
    ],
)
def test_bad_options_are_one_line(
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    value: str,
    message: str,
) -> None:
    source = tmp_path / "a.csv"
    pd.read_csv(DATA / "taiwan_credit_card.csv", nrows=5).to_csv(source, index=False)
    args = ("--input", str(source), "--output", str(tmp_path / "o.csv"), option, value)
    code, _, err = score(home, monkeypatch, *args)
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1


def test_reasons_for_adverse_explains_review_and_decline_only(
    home: Path,
    model: tuple[ScoringModel, str],
    applicants: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--reasons-for adverse``: the rows not approved get the same reasons as with every
    row explained (and as the API answers them); approved rows get none; the rest is equal."""
    source = write_parquet(applicants, tmp_path / "applicants.parquet", row_group_rows=700)
    output = tmp_path / "scored.parquet"
    code, _, err = score(
        home, monkeypatch, "--input", str(source), "--output", str(output), *STREAMED,
        "--reasons-for", "adverse",
    )  # fmt: skip
    assert code == 0, err
    adverse = pd.read_parquet(output)
    full = reference(source, model)
    reasons = [f"reason_{i}" for i in range(1, 5)] + [f"reason_{i}_text" for i in range(1, 5)]
    approved = (full["decision"] == "approve").to_numpy()
    assert 0 < approved.sum() < len(full)  # both kinds are in the book
    others = [c for c in full.columns if c not in reasons]
    pd.testing.assert_frame_equal(adverse[others], full[others], check_dtype=False)
    assert adverse.loc[~approved, reasons].equals(full.loc[~approved, reasons])
    assert (full.loc[approved, "reason_1"].fillna("") != "").any()  # so the next can fail
    assert (adverse.loc[approved, reasons].fillna("") == "").all().all()
    served = scored_frame(read_table(source), model[0], "taiwan", model[1], "adverse")
    pd.testing.assert_frame_equal(adverse, served, check_dtype=False)
