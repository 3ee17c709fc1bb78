"""LightGBM training, the monotonicity proof, and optional Optuna tuning.

Reproducibility: ``deterministic=True``, a fixed thread count and fixed seeds make the same
data and spec give the same model text, hence the same bundle hash.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "max_depth": -1,
    "min_child_samples": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "cat_smooth": 10.0,
    "min_data_per_group": 50,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
MAX_ROUNDS = 1000
EARLY_STOPPING_ROUNDS = 50


@dataclass(frozen=True)
class LgbmInputs:
    """What the trainer needs besides the data."""

    feature_names: Sequence[str]
    categorical: Sequence[bool]
    monotone: Mapping[str, str]
    seed: int
    params: Mapping[str, Any]


def build_params(inputs: LgbmInputs) -> dict[str, Any]:
    params = {**DEFAULT_PARAMS, **dict(inputs.params)}
    params["seed"] = inputs.seed
    constraints = [
        {"increasing": 1, "decreasing": -1}.get(inputs.monotone.get(name, ""), 0)
        for name in inputs.feature_names
    ]
    if any(constraints):
        params["monotone_constraints"] = constraints
    return params


def _dataset(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[Any],
    inputs: LgbmInputs,
    *,
    is_prefiltered: bool = True,
) -> lgb.Dataset:
    """The training set. ``is_prefiltered=False`` keeps the features that the default
    ``min_data_in_leaf`` could not split: tuning changes that value from trial to trial, and
    LightGBM refuses (logging ``[Fatal] Reducing min_data_in_leaf``) to lower it on a
    pre-filtered set. The Dataset has its own log level: ``verbosity=-1`` silences it."""
    cats = [i for i, c in enumerate(inputs.categorical) if c]
    return lgb.Dataset(
        x,
        label=y,
        feature_name=list(inputs.feature_names),
        categorical_feature=cats or "auto",
        free_raw_data=False,
        params={"verbosity": -1, "feature_pre_filter": is_prefiltered},
    )


def train_booster(
    x_fit: npt.NDArray[np.float64],
    y_fit: npt.NDArray[Any],
    x_valid: npt.NDArray[np.float64],
    y_valid: npt.NDArray[Any],
    inputs: LgbmInputs,
) -> lgb.Booster:
    """Fit with early stopping on the validation fold; returns the best-iteration model."""
    params = build_params(inputs)
    train_set = _dataset(x_fit, y_fit, inputs)
    valid_set = lgb.Dataset(x_valid, label=y_valid, reference=train_set, params=train_set.params)
    rounds = int(params.pop("num_boost_round", MAX_ROUNDS))
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    # Keep only the trees up to the best iteration, so model text and predictions agree.
    text = booster.model_to_string(num_iteration=booster.best_iteration or None)
    return lgb.Booster(model_str=text)


def effective_params(inputs: LgbmInputs, booster: lgb.Booster) -> dict[str, Any]:
    """The hyperparameters that made ``booster``: the defaults, the spec's and the tuned
    values, the seed and the monotone constraints, and the rounds kept by early stopping."""
    params = build_params(inputs)
    params.pop("num_boost_round", None)
    params["num_iterations"] = booster.current_iteration()
    params["early_stopping_rounds"] = EARLY_STOPPING_ROUNDS
    return params


@dataclass(frozen=True)
class MonotonicityCheck:
    feature: str
    direction: str
    passed: bool
    violations: int
    rows_checked: int
    points_checked: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "direction": self.direction,
            "passed": self.passed,
            "violations": self.violations,
            "rows_checked": self.rows_checked,
            "points_checked": self.points_checked,
        }


def split_thresholds(booster: lgb.Booster, feature_index: int) -> npt.NDArray[np.float64]:
    """Every threshold at which any tree splits on ``feature_index``."""
    frame = booster.trees_to_dataframe()
    name = booster.feature_name()[feature_index]
    values = frame.loc[frame["split_feature"] == name, "threshold"].dropna()
    return np.unique(values.to_numpy(dtype=np.float64))


def check_monotone(
    booster: lgb.Booster,
    x_sample: npt.NDArray[np.float64],
    feature_names: Sequence[str],
    monotone: Mapping[str, str],
) -> list[MonotonicityCheck]:
    """Prove the declared directions on the sample rows.

    A tree ensemble is piecewise constant in one feature, changing value only at that
    feature's split thresholds. Evaluating every sample row just below and at/above every
    threshold (plus the extremes) therefore covers every value the model can produce for that
    row along that feature: if the raw score never moves against the declared direction
    there, the model is monotone for those rows over the whole real line.
    """
    results: list[MonotonicityCheck] = []
    for name, direction in monotone.items():
        j = list(feature_names).index(name)
        thresholds = split_thresholds(booster, j)
        if thresholds.size == 0:
            results.append(MonotonicityCheck(name, direction, True, 0, len(x_sample), 0))
            continue
        # LightGBM sends ``x <= threshold`` left: the threshold itself and the next float
        # above it lie on the two sides of each split.
        above = np.nextafter(thresholds, np.inf)
        ends = [thresholds[0] - 1.0, thresholds[-1] + 1.0]
        grid = np.unique(np.concatenate([thresholds, above, ends]))
        n, g = x_sample.shape[0], grid.shape[0]
        stacked = np.repeat(x_sample, g, axis=0)
        stacked[:, j] = np.tile(grid, n)
        raw = np.asarray(booster.predict(stacked, raw_score=True)).reshape(n, g)
        steps = np.diff(raw, axis=1)
        sign = 1.0 if direction == "increasing" else -1.0
        violations = int(np.sum(sign * steps < -1e-12))
        results.append(MonotonicityCheck(name, direction, violations == 0, violations, n, g))
    return results


def tune_params(  # noqa: PLR0913 - the data, the model inputs and the search budget
    x: npt.NDArray[np.float64],
    y: npt.NDArray[Any],
    inputs: LgbmInputs,
    *,
    n_trials: int,
    timeout_s: float | None,
    on_trial: Callable[[int, float, float], None] | None = None,
) -> dict[str, Any]:
    """Optuna search over the main LightGBM knobs with stratified 3-fold CV AUC.

    Bounded by ``n_trials`` and ``timeout_s``. ``on_trial(number, auc, best_auc)`` is called
    after each trial (numbered from 1) with its CV AUC and the best so far. Returns the best
    parameters found, to be merged over :data:`DEFAULT_PARAMS`.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = build_params(inputs)
    train_set = _dataset(x, y, inputs, is_prefiltered=False)
    best = [-np.inf]

    def objective(trial: optuna.Trial) -> float:
        params = {
            **base,
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 10, 300, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
            "metric": "auc",
        }
        result = lgb.cv(
            params,
            train_set,
            num_boost_round=MAX_ROUNDS,
            nfold=3,
            stratified=True,
            seed=inputs.seed,
            callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
        )
        score = float(max(cast(list[float], result["valid auc-mean"])))
        best[0] = max(best[0], score)
        if on_trial is not None:
            on_trial(trial.number + 1, score, best[0])
        return score

    sampler = optuna.samplers.TPESampler(seed=inputs.seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=n_trials, timeout=timeout_s)
    return dict(study.best_params)
