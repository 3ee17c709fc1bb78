"""The data contract: spec validation and training-file checks with actionable errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from creditops.errors import DataError, SpecError
from creditops.features.dataset import load_training_data, normalise_categorical
from creditops.features.spec import load_spec, parse_spec
from tests.factories import synthetic_credit, synthetic_spec, write_spec

pytestmark = pytest.mark.unit


def test_shipped_specs_load() -> None:
    root = Path(__file__).resolve().parents[2] / "data" / "specs"
    taiwan = load_spec(root / "taiwan.yaml")
    assert taiwan.target.column == "target"
    assert "sex" not in taiwan.model_features and "sex" in taiwan.features
    assert taiwan.monotone["pay_0"] == "increasing"
    german = load_spec(root / "german.yaml")
    assert german.target.positive == "bad"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"features": {}}, "at least one feature"),
        ({"exclude_from_model": ["nope"]}, "not features"),
        ({"monotone": {"region": "increasing"}}, "must be numeric"),
        ({"monotone": {"delay": "sideways"}}, "monotone.delay"),
        ({"protected": ["religion"]}, "protected"),
        ({"target": {"column": "income", "positive": 1}}, "also a feature"),
        ({"scaling": {"pdo": -5}}, "scaling.pdo"),
    ],
    ids=[
        "no-features",
        "exclude-unknown",
        "monotone-categorical",
        "bad-direction",
        "protected-unknown",
        "target-is-feature",
        "negative-pdo",
    ],
)
def test_bad_specs_are_rejected_with_the_key(override: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(synthetic_spec(**override))


def test_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("features: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(scalar)


def test_default_reason_families_group_numbered_columns() -> None:
    spec = parse_spec(
        {
            "target": {"column": "y", "positive": 1},
            "features": {f"bill_amt{i}": "numeric" for i in range(1, 4)} | {"limit": "numeric"},
        }
    )
    codes = spec.reason_catalogue().codes
    families = {c.code: c.features for c in codes}
    assert families["BILL_AMT"] == ["bill_amt1", "bill_amt2", "bill_amt3"]
    assert families["LIMIT"] == ["limit"]


def _write(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path


def test_loads_clean_data(tmp_path: Path) -> None:
    frame = synthetic_credit(500)
    data = load_training_data(
        _write(tmp_path, frame), parse_spec(synthetic_spec()), max_dirty_share=0.0
    )
    assert data.n_rows == 500
    np.testing.assert_array_equal(data.y, (frame["target"] == "bad").to_numpy(dtype=np.int8))
    assert data.frame["income"].dtype == np.float64
    assert data.frame["region"].isna().sum() == frame["region"].isna().sum()
    assert len(data.data_sha256) == 64


def test_missing_column_is_named(tmp_path: Path) -> None:
    frame = synthetic_credit(100).drop(columns=["utilisation"])
    with pytest.raises(DataError, match=r"missing .*1 affected.*'utilisation'"):
        load_training_data(
            _write(tmp_path, frame), parse_spec(synthetic_spec()), max_dirty_share=0.1
        )


def test_dirty_rows_dropped_up_to_share(tmp_path: Path) -> None:
    frame = synthetic_credit(1000).astype({"income": object})
    frame.loc[[3, 7], "income"] = "n/a-ish"
    spec = parse_spec(synthetic_spec())
    data = load_training_data(_write(tmp_path, frame), spec, max_dirty_share=0.01)
    assert data.n_rows == 998
    assert any("non-numeric" in w and "n/a-ish" in w for w in data.warnings)
    with pytest.raises(DataError, match=r"above max_dirty_share.*'n/a-ish'"):
        load_training_data(_write(tmp_path, frame), spec, max_dirty_share=0.001)


def test_target_errors(tmp_path: Path) -> None:
    spec = parse_spec(synthetic_spec())
    frame = synthetic_credit(200)
    one_class = frame.assign(target="good")
    with pytest.raises(DataError, match="never takes the positive value"):
        load_training_data(_write(tmp_path, one_class), spec, max_dirty_share=0.1)
    only_bad = frame.assign(target="bad")
    with pytest.raises(DataError, match="one class only"):
        load_training_data(_write(tmp_path, only_bad), spec, max_dirty_share=0.1)
    third = frame.copy()
    third.loc[:4, "target"] = "unknown"
    with pytest.raises(DataError, match=r"unexpected values \['unknown'\].*5 affected"):
        load_training_data(_write(tmp_path, third), spec, max_dirty_share=0.1)


def test_empty_files(tmp_path: Path) -> None:
    spec = parse_spec(synthetic_spec())
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_training_data(empty, spec, max_dirty_share=0.1)
    header = tmp_path / "header.csv"
    header.write_text("id,income,utilisation,delay,region,age,sex,target\n")
    with pytest.raises(DataError, match="no rows"):
        load_training_data(header, spec, max_dirty_share=0.1)


def test_numeric_categories_match_strings() -> None:
    values = pd.Series([1, "1", " 1.0 ", 2.5, "x", "", None], dtype=object)
    assert normalise_categorical(values).tolist() == ["1", "1", "1", "2.5", "x", None, None]


def test_spec_sha_is_stable(tmp_path: Path) -> None:
    a = load_spec(write_spec(tmp_path / "a.yaml", synthetic_spec()))
    b = parse_spec(synthetic_spec())
    assert a.sha256() == b.sha256()
    assert a.sha256() != parse_spec(synthetic_spec(name="other")).sha256()
