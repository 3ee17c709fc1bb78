"""Missing inputs are never scored as zero (issue 15, section 7).

Taiwan's training data has no missing numbers, so LightGBM would read a missing
``limit_bal`` as 0 ("credit limit is low"). The stored contract says which inputs may be
missing; the API refuses the others (422 naming the field), a batch file with such rows is
refused naming the field and rows, and under ``on_missing: review`` the applicant goes to
review with the policy's own reason first.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from creditops.api.schemas import build_request_models
from creditops.cli import app as cli_app
from creditops.features.spec import parse_spec
from creditops.modeling.bundle import ScoringModel
from creditops.services.context import AppContext
from creditops.services.model_versions import load_model
from creditops.settings import Settings
from tests.api.conftest import DATA, auth
from tests.api.test_api import applicant
from tests.factories import synthetic_credit, synthetic_spec

pytestmark = pytest.mark.integration


def _production(home: Path) -> ScoringModel:
    return load_model(AppContext(Settings(home=home)), "taiwan", "production").model


def test_the_stored_contract_lists_what_may_be_missing(served_home: Path) -> None:
    spec = _production(served_home).spec
    # no number was missing in Taiwan's training rows; a category has its own branch
    assert spec.missing.allowed == ["education"] and spec.missing.on_missing == "refuse"
    assert not spec.may_be_missing("limit_bal") and spec.may_be_missing("sex")  # not an input


def test_spec_resolution_follows_the_training_rows() -> None:
    frame = synthetic_credit(500)  # income, utilisation and region have missing values
    spec = parse_spec(synthetic_spec()).with_missing_resolved(frame)
    assert spec.missing.allowed == ["income", "utilisation", "region"]
    assert not spec.may_be_missing("delay")
    explicit = parse_spec(synthetic_spec(missing={"allowed": ["delay"]}))
    assert explicit.with_missing_resolved(frame).missing.allowed == ["delay"]
    with pytest.raises(Exception, match=r"missing\.allowed names columns that are not features"):
        parse_spec(synthetic_spec(missing={"allowed": ["nope"]}))


@pytest.mark.parametrize("feature", ["limit_bal", "pay_0"])
def test_the_api_refuses_a_null_input(
    client: TestClient, keys: dict[str, str], feature: str
) -> None:
    body = applicant(3)
    body["features"][feature] = None
    answer = client.post("/v1/models/taiwan/predict", json=body, headers=auth(keys["predict"]))
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert feature in answer.text
    assert problem["errors"][0]["field"] == f"features.{feature}", problem
    assert "may not be missing" in problem["errors"][0]["message"]
    body["features"]["sex"] = None  # not a model input: may be missing
    body["features"][feature] = applicant(3)["features"][feature]
    ok = client.post("/v1/models/taiwan/predict", json=body, headers=auth(keys["predict"]))
    assert ok.status_code == 200, ok.text


def test_a_batch_file_with_missing_required_inputs_is_refused(
    served_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = pd.read_csv(DATA / "taiwan_credit_card.csv", nrows=20)
    frame.loc[[4, 11], "limit_bal"] = np.nan
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    monkeypatch.setenv("CREDITOPS_HOME", str(served_home))
    output = tmp_path / "out.csv"
    args = ["score", "--name", "taiwan", "--input", str(source), "--output", str(output)]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.count("\n") == 0 and "limit_bal is missing in 2 row(s)" in message
    assert "5" in message and "12" in message  # the data rows, 1-based
    assert not output.exists()


def test_review_policy_routes_to_review_with_its_own_reason(served_home: Path) -> None:
    model = _production(served_home)
    spec = model.spec.model_dump(mode="json")
    spec["missing"]["on_missing"] = "review"
    reviewing = ScoringModel(dataclasses.replace(model.bundle, spec=spec))
    frame = pd.read_csv(DATA / "taiwan_credit_card.csv", nrows=50)
    before = model.score_frame(frame)
    frame.loc[[2, 7], "limit_bal"] = np.nan
    after = reviewing.score_frame(frame)
    assert list(after.decision[[2, 7]]) == ["review", "review"]
    assert list(after.reason_codes[[2, 7], 0]) == ["MIS01", "MIS01"]
    assert list(after.reason_features[[2, 7], 0]) == ["limit_bal", "limit_bal"]
    untouched = np.setdiff1d(np.arange(50), [2, 7])
    assert (after.decision[untouched] == before.decision[untouched]).all()
    np.testing.assert_array_equal(after.score[untouched], before.score[untouched])
    # the API accepts null for it under review (and still refuses a wrong type)
    _features, single, _batch = build_request_models("taiwan", reviewing.spec, 10)
    body = applicant(1)
    body["features"]["limit_bal"] = None
    single.model_validate(body)
