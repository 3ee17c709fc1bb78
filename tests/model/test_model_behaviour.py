"""Does the trained model behave? Minimum functionality on the bundled data, the promised
monotone directions, invariance to what the model must ignore, and expected directions.

Models are trained in-process with the shipped specs and policies (no registry): what is
tested is the model, not the plumbing around it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from creditops.domain.policy import load_policy
from creditops.features.dataset import TrainingData, load_training_data
from creditops.features.spec import load_spec
from creditops.modeling.training import TrainingResult, TrainOptions, train_model

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
SAMPLE = 300  # applicants whose features are varied


def _train(name: str, policy: str | None = None) -> tuple[TrainingResult, TrainingData]:
    spec = load_spec(DATA / f"specs/{name}.yaml")
    data = load_training_data(
        DATA / f"{'taiwan_credit_card' if name == 'taiwan' else 'german_credit'}.csv",
        spec,
        max_dirty_share=0.0,
    )
    options = TrainOptions(policy=load_policy(DATA / policy) if policy else None)
    return train_model(data, spec, options), data


@pytest.fixture(scope="module")
def taiwan() -> tuple[TrainingResult, TrainingData]:
    return _train("taiwan", "policies/taiwan.yaml")


@pytest.fixture(scope="module")
def applicants(taiwan: tuple[TrainingResult, TrainingData]) -> pd.DataFrame:
    _, data = taiwan
    assert data.is_test is not None
    test = data.frame[data.is_test].reset_index(drop=True)
    return test.sample(SAMPLE, random_state=3).reset_index(drop=True)


def _pd(result: TrainingResult, frame: pd.DataFrame) -> np.ndarray:
    model = result.model
    return model.predict_pd(model.encoder.transform(frame))


# data set, AUC floor on its fixed test split (README "Results on the bundled data")
FLOORS = {"taiwan": 0.775, "german": 0.75}


@pytest.mark.parametrize(("name", "floor"), FLOORS.items(), ids=FLOORS)
def test_minimum_discrimination_and_calibration(name: str, floor: float) -> None:
    result, data = _train(name)
    evaluation = result.evaluation
    assert data.is_test is not None
    auc = roc_auc_score(data.y[data.is_test], evaluation.pd_test)
    assert auc >= floor
    assert evaluation.metrics["auc"] == pytest.approx(auc, abs=1e-12)
    assert evaluation.metrics["brier"] <= evaluation.uncalibrated_metrics["brier"] + 1e-12
    # calibration in the large: the mean PD is close to the observed default rate
    assert abs(evaluation.pd_test.mean() - data.y[data.is_test].mean()) < 0.02


# feature, direction of risk (data/specs/taiwan.yaml `monotone`)
MONOTONE = {"pay_0": 1, "limit_bal": -1}


@pytest.mark.parametrize(("feature", "sign"), MONOTONE.items(), ids=MONOTONE)
def test_monotone_features_move_risk_one_way_for_every_applicant(
    taiwan: tuple[TrainingResult, TrainingData], applicants: pd.DataFrame, feature: str, sign: int
) -> None:
    result, data = taiwan
    grid = np.quantile(data.frame[feature], np.linspace(0, 1, 15))
    pds = np.column_stack([_pd(result, applicants.assign(**{feature: v})) for v in grid])
    steps = sign * np.diff(pds, axis=1)
    assert (steps >= -1e-12).all(), f"{feature}: {int((steps < -1e-12).sum())} reversals"
    assert (pds[:, -1] - pds[:, 0]).std() > 0  # the feature matters for someone


def test_attributes_outside_the_model_do_not_change_a_decision(
    taiwan: tuple[TrainingResult, TrainingData], applicants: pd.DataFrame
) -> None:
    """Protected attributes are kept for fairness analysis only: changing them (and the
    application's id) leaves every PD bit for bit the same."""
    result, _ = taiwan
    base = _pd(result, applicants)
    swapped = applicants["sex"].map({"1": "2", "2": "1"})
    assert swapped.notna().all()
    changed = applicants.assign(sex=swapped, age=99, marriage="0", id=-1)
    np.testing.assert_array_equal(_pd(result, changed), base)


def test_a_batch_scores_each_row_as_alone(
    taiwan: tuple[TrainingResult, TrainingData], applicants: pd.DataFrame
) -> None:
    result, _ = taiwan
    base = _pd(result, applicants)
    order = np.random.default_rng(0).permutation(len(applicants))
    shuffled = _pd(result, applicants.iloc[order].reset_index(drop=True))
    np.testing.assert_allclose(shuffled, base[order], rtol=0, atol=1e-12)
    singles = np.array([_pd(result, applicants.iloc[[i]])[0] for i in range(20)])
    np.testing.assert_allclose(singles, base[:20], rtol=0, atol=1e-12)


def test_payment_delays_raise_risk_on_average(
    taiwan: tuple[TrainingResult, TrainingData], applicants: pd.DataFrame
) -> None:
    """Not constrained, but expected: two months more delay in every past month raises the
    average PD, and paying back more in the last month lowers it."""
    result, _ = taiwan
    base = _pd(result, applicants).mean()
    late_cols = {c: np.minimum(applicants[c] + 2, 8) for c in ("pay_2", "pay_3", "pay_4")}
    assert _pd(result, applicants.assign(**late_cols)).mean() > base + 0.02
    repaid = applicants.assign(pay_amt1=applicants["pay_amt1"] + 50_000)
    assert _pd(result, repaid).mean() < base
