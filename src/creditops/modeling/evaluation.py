"""Evaluation of a trained model on its test split: metrics, tables, fairness, baseline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from creditops.features.dataset import TrainingData
from creditops.features.spec import Spec
from creditops.modeling.bundle import ScoringModel
from creditops.modeling.fairness import FAIRNESS_MIN_GROUP, compute_fairness, protected_groups
from creditops.modeling.metrics import (
    calibration_table,
    evaluate_binary,
    finite_or_none,
    gains_table,
)
from creditops.modeling.scorecard import ScorecardTables, WoeScorecard


@dataclass
class Evaluation:
    """Everything the report, the gate and the registry need about a trained model."""

    metrics: dict[str, float]
    uncalibrated_metrics: dict[str, float]
    calibration_table: list[dict[str, float]]
    gains_table: list[dict[str, float]]
    fairness: list[dict[str, Any]]
    feature_importance: list[dict[str, Any]]
    test_frame: pd.DataFrame
    y_test: npt.NDArray[np.int8]
    pd_test: npt.NDArray[np.float64]
    score_test: npt.NDArray[np.float64]
    baseline_metrics: dict[str, float] | None = None
    baseline_pd_test: npt.NDArray[np.float64] | None = None
    iv_table: list[dict[str, Any]] = field(default_factory=list)
    monotonicity: list[dict[str, Any]] = field(default_factory=list)
    # the decision rule behind accuracy, precision, recall and F1: predicted to default
    # means a score below ``approve_min_score`` (a PD above ``pd``)
    classification_cutoff: dict[str, float] | None = None
    scorecard: ScorecardTables | None = None  # the scorecard's tables (model or baseline)
    value_labels: dict[str, dict[str, str]] = field(default_factory=dict)  # the spec's

    @property
    def uplift(self) -> dict[str, float] | None:
        if self.baseline_metrics is None:
            return None
        return {
            k: self.metrics[k] - self.baseline_metrics[k]
            for k in ("auc", "gini", "ks", "brier")
            if k in self.baseline_metrics
        }


def json_safe(values: dict[str, float]) -> dict[str, float | None]:
    """Floats for JSON: NaN and infinities become None."""
    return {k: finite_or_none(v) for k, v in values.items()}


def fairness_report(
    frame: pd.DataFrame,
    spec: Spec,
    approved: npt.NDArray[np.bool_],
    defaulted: npt.NDArray[np.bool_] | None,
) -> list[dict[str, Any]]:
    return [
        compute_fairness(
            column,
            protected_groups(frame, spec, column),
            approved,
            defaulted,
            min_group_size=FAIRNESS_MIN_GROUP,
        ).to_dict()
        for column in spec.protected
    ]


def evaluate_model(
    model: ScoringModel,
    data: TrainingData,
    x_all: npt.NDArray[np.float64],
    test_rows: npt.NDArray[np.int64],
    *,
    scorecard: WoeScorecard | None,
) -> Evaluation:
    """Score the test split with the (calibrated) model and compute every figure."""
    x_test = x_all[test_rows]
    y_test = data.y[test_rows]
    test_frame = data.frame.iloc[test_rows].reset_index(drop=True)
    margin = model.margin(x_test)
    pd_test = model.calibrator.predict(margin)
    score = model.scaling.points(pd_test)
    cutoff = float(model.policy.approve_min_score)
    predicted_bad = score < cutoff
    metrics = evaluate_binary(y_test, pd_test, predicted_bad)
    raw_pd = 1.0 / (1.0 + np.exp(-margin))
    uncalibrated = evaluate_binary(y_test, raw_pd, predicted_bad)
    outcome = model.policy.decide(score, test_frame)
    approved = np.asarray(outcome.decision == "approve", dtype=bool)

    baseline_metrics = None
    baseline_pd = None
    if scorecard is not None:
        baseline_pd = scorecard.predict_pd(x_test)
        baseline_bad = model.scaling.points(baseline_pd) < model.policy.approve_min_score
        baseline_metrics = evaluate_binary(y_test, baseline_pd, baseline_bad)

    importance: list[dict[str, Any]] = []
    if model.booster is not None:
        gains = model.booster.feature_importance(importance_type="gain")
        total = float(np.sum(gains)) or 1.0
        importance = sorted(
            (
                {"feature": n, "importance": float(g) / total}
                for n, g in zip(model.encoder.feature_names, gains, strict=True)
            ),
            key=lambda r: (-r["importance"], r["feature"]),
        )
    test_frame[model.spec.target.column] = y_test
    return Evaluation(
        metrics=metrics,
        uncalibrated_metrics=uncalibrated,
        calibration_table=[r.to_dict() for r in calibration_table(y_test, pd_test)],
        gains_table=[r.to_dict() for r in gains_table(y_test, score)],
        fairness=fairness_report(test_frame, model.spec, approved, y_test.astype(bool)),
        feature_importance=importance,
        test_frame=test_frame,
        y_test=y_test,
        pd_test=pd_test,
        score_test=score,
        baseline_metrics=baseline_metrics,
        baseline_pd_test=baseline_pd,
        classification_cutoff={
            "approve_min_score": cutoff,
            "pd": float(model.scaling.pd_at([cutoff])[0]),
        },
        value_labels={k: dict(v) for k, v in model.spec.value_labels.items()},
    )
