"""Is this data set acceptable? The contract checks on the bundled data sets and on
deliberately broken copies of them.

The bundled files must load under their shipped specs without a dropped row, hold what
``data/README.md`` says they hold, and stay within the ranges the UCI documentation gives;
a copy broken in one way must be refused (or, within ``max_dirty_share``, cleaned) with the
column named, never trained on silently.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from creditops.errors import DataError
from creditops.features.dataset import load_training_data
from creditops.features.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
TAIWAN = DATA / "taiwan_credit_card.csv"
GERMAN = DATA / "german_credit.csv"


@pytest.fixture(scope="module")
def taiwan() -> pd.DataFrame:
    return pd.read_csv(TAIWAN)


# data set, spec, rows, defaults, test rows (data/README.md; the fixed `_is_test` split)
BUNDLED = {
    "taiwan": (TAIWAN, "taiwan.yaml", 30_000, 6_636, 7_529),
    "german": (GERMAN, "german.yaml", 1_000, 300, 257),
}


@pytest.mark.parametrize(("path", "spec", "rows", "bad", "test"), BUNDLED.values(), ids=BUNDLED)
def test_bundled_data_meets_its_contract(
    path: Path, spec: str, rows: int, bad: int, test: int
) -> None:
    data = load_training_data(path, load_spec(DATA / "specs" / spec), max_dirty_share=0.0)
    assert data.n_rows_read == rows and len(data.frame) == rows  # nothing dropped
    assert data.warnings == []
    assert int(data.y.sum()) == bad
    assert data.is_test is not None and int(data.is_test.sum()) == test
    # both parts hold both classes at about the overall default rate
    for part in (data.is_test, ~data.is_test):
        assert abs(data.y[part].mean() - bad / rows) < 0.03


def test_taiwan_values_stay_in_their_documented_ranges(taiwan: pd.DataFrame) -> None:
    """UCI's description (Yeh 2009): repayment status -2..8, amounts in NT dollars, ages
    of adults; one row per client."""
    assert taiwan["id"].is_unique
    assert taiwan.isna().sum().sum() == 0
    pay = taiwan[[c for c in taiwan.columns if c.startswith("pay_") and "amt" not in c]]
    assert pay.min().min() >= -2 and pay.max().max() <= 8
    assert (taiwan["limit_bal"] > 0).all()
    assert taiwan["age"].between(18, 100).all()
    assert (taiwan[[f"pay_amt{i}" for i in range(1, 7)]] >= 0).all().all()
    assert set(taiwan["sex"]) == {1, 2}


def test_german_categories_are_the_documented_ones() -> None:
    german = pd.read_csv(GERMAN)
    assert set(german["target"]) == {"good", "bad"}
    assert set(german["is_foreign_worker"]) == {"yes", "no"}
    assert (german["credit_amount"] > 0).all() and (german["month_duration"] > 0).all()
    assert german.isna().sum().sum() == 0


def _drop_target(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["target"])


def _one_class(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(target=0)


def _text_in_limit(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.astype({"limit_bal": object})
    out.loc[out.index[::10], "limit_bal"] = "unknown"  # 10% of rows
    return out


def _bad_split(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({"_is_test": object}).assign(_is_test="maybe")


def _third_class(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out.loc[out.index[:5], "target"] = 7
    return out


BROKEN: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str | None, str]] = {
    "target column missing": (_drop_target, "target", "missing"),
    "one class only": (_one_class, "target", "never takes the positive value"),
    "third target class": (_third_class, "target", "unexpected values"),
    "text in a numeric column": (_text_in_limit, None, "limit_bal"),
    "split column not boolean": (_bad_split, "_is_test", "true/false"),
}


@pytest.mark.parametrize(("breaks", "field", "message"), BROKEN.values(), ids=BROKEN)
def test_broken_copies_of_the_bundled_data_are_refused(
    taiwan: pd.DataFrame,
    tmp_path: Path,
    breaks: Callable[[pd.DataFrame], pd.DataFrame],
    field: str | None,
    message: str,
) -> None:
    path = tmp_path / "broken.csv"
    breaks(taiwan).to_csv(path, index=False)
    with pytest.raises(DataError, match=message) as caught:
        load_training_data(path, load_spec(DATA / "specs/taiwan.yaml"), max_dirty_share=0.01)
    assert caught.value.field == field


def test_a_few_dirty_rows_are_dropped_and_reported(taiwan: pd.DataFrame, tmp_path: Path) -> None:
    """Below max_dirty_share the unusable rows go, with a warning that names the column."""
    dirty = taiwan.astype({"bill_amt1": object})
    dirty.loc[dirty.index[:30], "bill_amt1"] = "#REF!"  # 0.1% of rows
    dirty.loc[dirty.index[30:40], "target"] = np.nan
    path = tmp_path / "dirty.csv"
    dirty.to_csv(path, index=False)
    data = load_training_data(path, load_spec(DATA / "specs/taiwan.yaml"), max_dirty_share=0.01)
    assert len(data.frame) == len(taiwan) - 40
    assert any("bill_amt1" in w and "#REF!" in w for w in data.warnings)
    assert any("10 rows have no target" in w for w in data.warnings)
