"""Training: split, encode, fit, calibrate, fit the scorecard baseline, build the bundle.

Pure computation on in-memory data (no MLflow, no files): the services layer reads the
data, calls :func:`train_model`, and registers what comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import train_test_split

from creditops.domain.policy import DecisionPolicy, default_cutoff_pds
from creditops.domain.scaling import ScoreScaling
from creditops.errors import TrainingError
from creditops.features.dataset import TrainingData
from creditops.features.encoder import FeatureEncoder
from creditops.features.profile import build_reference_profile
from creditops.features.spec import Spec
from creditops.modeling.bundle import Algorithm, ModelBundle, ScoringModel
from creditops.modeling.calibration import CalibrationMethod, fit_calibrator
from creditops.modeling.evaluation import Evaluation, evaluate_model
from creditops.modeling.lgbm import (
    LgbmInputs,
    check_monotone,
    effective_params,
    train_booster,
    tune_params,
)
from creditops.modeling.scorecard import PointsScale, WoeScorecard

Progress = Callable[[str], None]
"""Receives progress messages: each names a step that starts now (so the one before is
done), except those starting with :data:`DETAIL_PREFIX`, which report within the current
step (a tuning trial)."""
DETAIL_PREFIX = "  "
MONOTONE_SAMPLE_ROWS = 200
MIN_CLASS_ROWS = 10


@dataclass(frozen=True)
class TrainOptions:
    algorithm: Algorithm = "lightgbm"
    seed: int = 42
    test_share: float = 0.25
    calibration_share: float = 0.2
    calibration_method: CalibrationMethod = "auto"
    policy: DecisionPolicy | None = None
    tune_trials: int = 0
    tune_timeout_s: float | None = None


@dataclass
class TrainingResult:
    bundle: ModelBundle
    model: ScoringModel
    evaluation: Evaluation
    warnings: list[str] = field(default_factory=list)
    # The learner's effective hyperparameters, defaults included (LightGBM's, or the
    # scorecard's for ``logistic``); what a tracking run records.
    hyperparameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Split:
    fit: npt.NDArray[np.int64]
    valid: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]


def split_rows(data: TrainingData, options: TrainOptions) -> Split:
    """Test rows from the split column or a seeded stratified split; then a calibration fold."""
    rows = np.arange(data.n_rows)
    if data.is_test is not None:
        test, train = rows[data.is_test], rows[~data.is_test]
    else:
        train, test = train_test_split(
            rows, test_size=options.test_share, stratify=data.y, random_state=options.seed
        )
    for part, name in ((train, "training"), (test, "test")):
        counts = np.bincount(data.y[part], minlength=2)
        if counts.min() < MIN_CLASS_ROWS:
            raise TrainingError(
                f"the {name} part has {counts[1]} defaults and {counts[0]} non-defaults; "
                f"at least {MIN_CLASS_ROWS} of each are needed"
            )
    fit, valid = train_test_split(
        np.sort(train),
        test_size=options.calibration_share,
        stratify=data.y[np.sort(train)],
        random_state=options.seed,
    )
    return Split(np.sort(fit), np.sort(valid), np.sort(test))


def _resolve_policy(
    options: TrainOptions, scaling: ScoreScaling, base_rate: float
) -> DecisionPolicy:
    if options.policy is not None:
        return options.policy
    approve_pd, decline_pd = default_cutoff_pds(base_rate)
    approve = float(np.round(scaling.points([approve_pd])[0], 1))
    decline = float(np.round(scaling.points([decline_pd])[0], 1))
    return DecisionPolicy(version="default", approve_min_score=approve, decline_below_score=decline)


@dataclass
class _Fitted:
    """What the learners produced: the scorecard (baseline, or the model itself for
    ``logistic``), LightGBM's model text and parameters, and the held-out fold's margins."""

    scorecard: WoeScorecard
    booster_text: str | None
    params: dict[str, Any]
    margin_valid: npt.NDArray[np.float64]
    hyperparameters: dict[str, Any] = field(default_factory=dict)


def train_model(
    data: TrainingData,
    spec: Spec,
    options: TrainOptions,
    progress: Progress | None = None,
) -> TrainingResult:
    """Train the requested model and its scorecard baseline; evaluate on the test split."""
    say = progress or (lambda _msg: None)
    split = split_rows(data, options)
    names = spec.model_features
    categorical = [spec.features[n] == "categorical" for n in names]
    train_rows = np.concatenate([split.fit, split.valid])
    encoder = FeatureEncoder(names, categorical).fit(data.frame.iloc[train_rows])
    x_all = encoder.transform(data.frame)
    say(f"split: {len(split.fit)} fit, {len(split.valid)} calibration, {len(split.test)} test")
    fitted = _fit_learners(x_all, data.y, split, spec, options, say)

    say(f"calibrating ({options.calibration_method}) on the held-out fold")
    calibrator = fit_calibrator(
        fitted.margin_valid, data.y[split.valid], options.calibration_method
    )
    scaling = ScoreScaling(**spec.scaling.model_dump())
    base_rate = float(data.y[train_rows].mean())
    draft = ModelBundle(
        # the stored contract says which inputs may be missing (resolved from these rows)
        spec=spec.with_missing_resolved(data.frame.iloc[train_rows]).model_dump(mode="json"),
        algorithm=options.algorithm,
        encoder=encoder.to_dict(),
        calibrator=calibrator.to_dict(),
        policy=_resolve_policy(options, scaling, base_rate).model_dump(mode="json"),
        reference_profile={},
        training={},
        booster=fitted.booster_text,
        scorecard=fitted.scorecard.to_dict() if options.algorithm == "logistic" else None,
    )
    model = ScoringModel(draft)

    say("evaluating on the test split")
    evaluation = _evaluate(model, data, x_all, split, fitted.scorecard, options)
    train_pd = model.predict_pd(x_all[train_rows])
    draft.reference_profile = build_reference_profile(
        data.frame.iloc[train_rows], spec.features, train_pd, scaling.points(train_pd)
    )
    draft.training = {
        "data_sha256": data.data_sha256,
        "spec_sha256": spec.sha256(),
        "seed": options.seed,
        "params": fitted.params,
        "calibration_method": calibrator.method,
        "n_fit": len(split.fit),
        "n_calibration": len(split.valid),
        "n_test": len(split.test),
        "base_default_rate": base_rate,
        "test_metrics": evaluation.metrics,
        "feature_importance": evaluation.feature_importance,
        # the benchmark scorecard beside a LightGBM model (``logistic``: the model itself)
        "baseline_scorecard": fitted.scorecard.to_dict() if model.booster is not None else None,
    }
    # ``model`` holds ``draft`` itself, so it sees the profile and lineage filled in above.
    return TrainingResult(
        bundle=draft,
        model=model,
        evaluation=evaluation,
        warnings=data.warnings,
        hyperparameters=fitted.hyperparameters,
    )


def _fit_learners(  # noqa: PLR0913 - the steps of one training run, each needed here
    x_all: npt.NDArray[np.float64],
    y: npt.NDArray[Any],
    split: Split,
    spec: Spec,
    options: TrainOptions,
    say: Progress,
) -> _Fitted:
    """Fit the WoE scorecard and, for ``lightgbm``, tune (optionally) and train the booster
    with early stopping on the calibration fold."""
    names = spec.model_features
    categorical = [spec.features[n] == "categorical" for n in names]
    x_fit, x_valid, y_fit, y_valid = (
        x_all[split.fit],
        x_all[split.valid],
        y[split.fit],
        y[split.valid],
    )
    say("fitting the WoE scorecard baseline (optbinning)")
    scorecard = WoeScorecard(random_state=options.seed).fit(
        x_fit, y_fit, feature_names=names, categorical=categorical, monotone=spec.monotone
    )
    params: dict[str, Any] = dict(spec.lightgbm)
    if options.algorithm != "lightgbm":
        margin = scorecard.decision_function(x_valid)
        return _Fitted(scorecard, None, params, margin, _scorecard_hyperparameters(scorecard))
    lgb_inputs = LgbmInputs(names, categorical, spec.monotone, options.seed, params)
    if options.tune_trials > 0:
        n_trials = options.tune_trials
        say(f"tuning LightGBM with Optuna ({n_trials} trials max)")
        params.update(
            tune_params(
                x_fit,
                y_fit,
                lgb_inputs,
                n_trials=n_trials,
                timeout_s=options.tune_timeout_s,
                on_trial=lambda i, auc, best: say(
                    f"{DETAIL_PREFIX}trial {i}/{n_trials}: CV AUC {auc:.4f}, best so far {best:.4f}"
                ),
            )
        )
        lgb_inputs = LgbmInputs(names, categorical, spec.monotone, options.seed, params)
    say("training LightGBM")
    booster = train_booster(x_fit, y_fit, x_valid, y_valid, lgb_inputs)
    margin_valid = np.asarray(booster.predict(x_valid, raw_score=True), dtype=np.float64)
    hyperparameters = effective_params(lgb_inputs, booster)
    return _Fitted(scorecard, booster.model_to_string(), params, margin_valid, hyperparameters)


def _scorecard_hyperparameters(scorecard: WoeScorecard) -> dict[str, Any]:
    return {
        "min_bin_share": scorecard.min_bin_share,
        "max_n_bins": scorecard.max_n_bins,
        "C": scorecard.C,
        "random_state": scorecard.random_state,
    }


def _evaluate(  # noqa: PLR0913 - the trained model and what it is evaluated on
    model: ScoringModel,
    data: TrainingData,
    x_all: npt.NDArray[np.float64],
    split: Split,
    scorecard: WoeScorecard,
    options: TrainOptions,
) -> Evaluation:
    """Test-split evaluation, the monotonicity proof on a sample, the IV table."""
    spec = model.spec
    evaluation = evaluate_model(
        model,
        data,
        x_all,
        split.test,
        scorecard=scorecard if options.algorithm == "lightgbm" else None,
    )
    if model.booster is not None and spec.monotone:
        rng = np.random.default_rng(options.seed)
        sample = rng.choice(
            split.test, size=min(MONOTONE_SAMPLE_ROWS, len(split.test)), replace=False
        )
        evaluation.monotonicity = [
            c.to_dict()
            for c in check_monotone(
                model.booster, x_all[sample], spec.model_features, spec.monotone
            )
        ]
    evaluation.iv_table = scorecard.iv_table()
    is_model = model.scorecard is not None
    evaluation.scorecard = scorecard.tables(
        PointsScale.of(model.scaling, model.calibrator if is_model else None),
        "model" if is_model else "baseline",
        model.encoder.categories_,
        spec.value_labels,
    )
    return evaluation
