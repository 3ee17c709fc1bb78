"""The numpy TreeSHAP explainer against LightGBM's own ``pred_contrib`` on the same inputs."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pytest

from creditops.features.dataset import load_training_data
from creditops.features.encoder import FeatureEncoder
from creditops.features.spec import load_spec
from creditops.modeling import treeshap_cells
from creditops.modeling.lgbm import LgbmInputs, train_booster
from creditops.modeling.training import TrainOptions, split_rows
from creditops.modeling.treeshap import TreeShapExplainer, shap_weight_tables
from creditops.modeling.treeshap_trees import K_ZERO_THRESHOLD

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[2] / "data"
TOLERANCE = 1e-9
K = K_ZERO_THRESHOLD
# NaN, signed zeros, values around LightGBM's kZeroThreshold (the C API turns |v| <= k into
# 0), fractions and negatives that truncate to categories, unseen categories, extremes.
SPECIAL = [
    *(math.nan, 0.0, -0.0, K, -K, K / 2, -K / 2, 1e-36, -1e-36),
    *(math.nextafter(K, math.inf), math.nextafter(-K, -math.inf)),
    *(-0.5, -0.9999, -1.0, -1.5, 0.5, 3.7, 7.0, 8.0, 100.0, 2.0**31, 1e300, math.inf, -math.inf),
]
BASE_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "num_leaves": 31,
    "min_data_in_leaf": 5,
    "learning_rate": 0.2,
    "max_cat_to_onehot": 2,
    "cat_smooth": 1.0,
    "min_data_per_group": 5,
    "num_threads": 1,
    "deterministic": True,
    "seed": 1,
    "verbosity": -1,
}
# name -> (extra parameters, (decision, missing type) pairs the model must contain)
MODELS: dict[str, tuple[dict[str, Any], set[tuple[str, str]]]] = {
    "nan_missing_and_categorical": ({}, {("<=", "NaN"), ("<=", "None"), ("==", "NaN")}),
    "zero_as_missing": ({"zero_as_missing": True}, {("<=", "Zero"), ("==", "None")}),
    "monotone": ({"monotone_constraints": [1, 0, 0, -1, 0]}, {("<=", "NaN"), ("==", "NaN")}),
    "deep": ({"num_leaves": 63, "min_data_in_leaf": 2}, {("<=", "NaN"), ("==", "NaN")}),
}


def synthetic_data(n: int = 3000, seed: int = 7) -> tuple[npt.NDArray[np.float64], Any]:
    """Numeric with NaNs, numeric with many exact zeros, a categorical (0..7, NaN), two
    numerics that interact."""
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.normal(size=n),
            np.where(rng.random(n) < 0.3, 0.0, rng.normal(size=n)),
            rng.integers(0, 8, n).astype(np.float64),
            rng.normal(size=n),
            rng.uniform(-1, 1, n),
        ]
    )
    x[rng.random(n) < 0.1, 0] = np.nan
    x[rng.random(n) < 0.05, 2] = np.nan
    signal = np.nan_to_num(x[:, 0]) + 0.8 * (x[:, 1] == 0) + np.isin(x[:, 2], [1, 3, 5])
    y = (signal + 0.5 * x[:, 3] * x[:, 4] + rng.normal(0, 0.5, n) > 0.5).astype(int)
    return x, y


def split_values(booster: lgb.Booster) -> dict[int, list[float]]:
    """Every threshold (categorical nodes: the category-set index) per feature, read from
    the model text independently of the module under test."""
    found: dict[int, list[float]] = {}
    for block in booster.model_to_string().split("Tree=")[1:]:
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        for f, t in zip(fields["split_feature"].split(), fields["threshold"].split(), strict=True):
            found.setdefault(int(f), []).append(float(t))
    return found


def probe_rows(booster: lgb.Booster, x: npt.NDArray[np.float64], seed: int = 0) -> Any:
    """Real rows, then rows whose split features are set to thresholds, their neighbouring
    floats and special values (each feature cycles through its own, in shuffled order)."""
    rng = np.random.default_rng(seed)
    columns = {}
    for feature, thresholds in split_values(booster).items():
        t = np.array(thresholds)
        values = np.concatenate([SPECIAL, t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)])
        columns[feature] = rng.permutation(values)
    n_rows = max(values.size for values in columns.values())
    edge = x[rng.integers(0, len(x), n_rows)].copy()
    for feature, values in columns.items():
        edge[:, feature] = np.resize(values, n_rows)
    return np.vstack([x[:1500], edge])


def node_kinds(booster: lgb.Booster) -> set[tuple[str, str]]:
    kinds: set[tuple[str, str]] = set()

    def walk(node: dict[str, Any]) -> None:
        if "split_index" in node:
            kinds.add((node["decision_type"], node["missing_type"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return kinds


def explainer_for(booster: lgb.Booster, **kwargs: Any) -> TreeShapExplainer:
    explainer = TreeShapExplainer.from_booster(booster, **kwargs)
    assert explainer is not None
    return explainer


def max_diff(explainer: TreeShapExplainer, booster: lgb.Booster, x: Any) -> float:
    expected = np.asarray(booster.predict(x, pred_contrib=True))
    return float(np.max(np.abs(explainer.contributions(x) - expected)))


@pytest.fixture(scope="module")
def data() -> tuple[npt.NDArray[np.float64], Any]:
    return synthetic_data()


@pytest.fixture(scope="module")
def boosters(data: tuple[npt.NDArray[np.float64], Any]) -> dict[str, lgb.Booster]:
    x, y = data
    return {
        name: lgb.train(
            {**BASE_PARAMS, **extra}, lgb.Dataset(x, y, categorical_feature=[2]), num_boost_round=40
        )
        for name, (extra, _) in MODELS.items()
    }


@pytest.fixture(scope="module")
def taiwan() -> tuple[lgb.Booster, npt.NDArray[np.float64]]:
    """The demo model, trained as the pipeline trains it (creditops.modeling.training)."""
    spec = load_spec(DATA / "specs/taiwan.yaml")
    data = load_training_data(DATA / "taiwan_credit_card.csv", spec, max_dirty_share=0.01)
    options = TrainOptions()
    split = split_rows(data, options)
    names = spec.model_features
    categorical = [spec.features[n] == "categorical" for n in names]
    encoder = FeatureEncoder(names, categorical).fit(
        data.frame.iloc[np.concatenate([split.fit, split.valid])]
    )
    x = encoder.transform(data.frame)
    inputs = LgbmInputs(names, categorical, spec.monotone, options.seed, dict(spec.lightgbm))
    booster = train_booster(
        x[split.fit], data.y[split.fit], x[split.valid], data.y[split.valid], inputs
    )
    return booster, x[split.test]


@pytest.fixture(scope="module")
def explained(
    boosters: dict[str, lgb.Booster], data: tuple[npt.NDArray[np.float64], Any]
) -> dict[str, tuple[Any, npt.NDArray[np.float64]]]:
    """Per model: probe rows and the explainer's contributions for them."""
    probes = {name: probe_rows(booster, data[0]) for name, booster in boosters.items()}
    return {
        name: (probes[name], explainer_for(booster).contributions(probes[name]))
        for name, booster in boosters.items()
    }


@pytest.mark.parametrize("name", list(MODELS))
def test_matches_pred_contrib(
    name: str,
    boosters: dict[str, lgb.Booster],
    explained: dict[str, tuple[Any, npt.NDArray[np.float64]]],
) -> None:
    booster = boosters[name]
    assert MODELS[name][1] <= node_kinds(booster)  # the model exercises what it is meant to
    tables = explainer_for(booster).tables
    assert tables is not None and tables.levels  # some path splits twice on one feature
    x, contributions = explained[name]
    expected = booster.predict(x, pred_contrib=True)
    assert np.max(np.abs(contributions - expected)) <= TOLERANCE


@pytest.mark.parametrize("name", list(MODELS))
def test_rows_sum_to_raw_margin(
    name: str,
    boosters: dict[str, lgb.Booster],
    explained: dict[str, tuple[Any, npt.NDArray[np.float64]]],
) -> None:
    x, contributions = explained[name]
    margin = boosters[name].predict(x, raw_score=True)
    np.testing.assert_allclose(contributions.sum(axis=1), margin, rtol=0, atol=TOLERANCE)


def test_single_row_and_batch_chunks_agree(
    boosters: dict[str, lgb.Booster], data: tuple[npt.NDArray[np.float64], Any]
) -> None:
    explainer = explainer_for(boosters["deep"])
    x = data[0][:300]
    batch = explainer.contributions(x)
    assert x.shape[0] > explainer.chunk_rows  # the batch spans several chunks
    singles = np.vstack([explainer.contributions(x[i : i + 1]) for i in range(0, 300, 37)])
    np.testing.assert_array_equal(singles, batch[::37])


def test_tiny_model_with_a_single_leaf_tree() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = x[:, 0] + rng.normal(0, 0.1, 300)
    # No split can pay for itself in the first round: LightGBM keeps that one-leaf tree.
    booster = lgb.train(
        {"objective": "regression", "num_leaves": 3, "min_data_in_leaf": 10, "verbosity": -1},
        lgb.Dataset(x, y),
        num_boost_round=4,
        callbacks=[lgb.reset_parameter(min_gain_to_split=[1e30, 0.0, 0.0, 0.0])],
    )
    leaves = [tree["num_leaves"] for tree in booster.dump_model()["tree_info"]]
    assert leaves == [1, 3, 3, 3]
    probe = probe_rows(booster, x)
    assert max_diff(explainer_for(booster), booster, probe) <= TOLERANCE


def test_model_of_single_leaf_trees_only() -> None:
    x = np.random.default_rng(1).normal(size=(50, 2))
    booster = lgb.train(
        {"objective": "regression", "min_gain_to_split": 1e30, "verbosity": -1},
        lgb.Dataset(x, x[:, 0]),
        num_boost_round=3,
    )
    explainer = explainer_for(booster)
    assert explainer.tables is None
    assert max_diff(explainer, booster, x) <= TOLERANCE


def test_taiwan_demo_model(taiwan: tuple[lgb.Booster, npt.NDArray[np.float64]]) -> None:
    booster, x_test = taiwan
    kinds = node_kinds(booster)
    assert ("==", "NaN") in kinds and ("<=", "None") in kinds
    explainer = explainer_for(booster)
    probe = probe_rows(booster, x_test)
    assert max_diff(explainer, booster, probe) <= TOLERANCE
    assert explainer.cells is not None  # the batch scorer's method covers the demo model
    expected = np.asarray(booster.predict(probe, pred_contrib=True))
    for method in ("leaves", "cells"):
        contributions = explainer.contributions(probe, method)  # type: ignore[arg-type]
        assert np.max(np.abs(contributions - expected)) <= TOLERANCE, method
    total = explainer.contributions(probe).sum(axis=1)
    np.testing.assert_allclose(total, booster.predict(probe, raw_score=True), rtol=0, atol=1e-9)


def test_respects_best_iteration(data: tuple[npt.NDArray[np.float64], Any]) -> None:
    x, y = data
    train, valid = lgb.Dataset(x[:2000], y[:2000]), lgb.Dataset(x[2000:], y[2000:])
    booster = lgb.train(
        {**BASE_PARAMS, "learning_rate": 0.5},
        train,
        num_boost_round=60,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(5, verbose=False)],
        keep_training_booster=True,
    )
    assert 0 < booster.best_iteration < booster.current_iteration()
    explained = explainer_for(booster).contributions(x[:200])
    every_tree = np.asarray(booster.predict(x[:200], pred_contrib=True, num_iteration=-1))
    assert np.max(np.abs(explained - every_tree)) > 1e-3  # so the check below can fail
    assert max_diff(explainer_for(booster), booster, x[:200]) <= TOLERANCE


def test_unsupported_models_return_none(
    boosters: dict[str, lgb.Booster], data: tuple[npt.NDArray[np.float64], Any]
) -> None:
    deep = boosters["deep"]
    tables = explainer_for(deep).tables
    assert tables is not None
    widest = max(int(mask).bit_length() for mask in tables.full_mask)
    assert explainer_for(deep, max_path_features=widest) is not None
    assert TreeShapExplainer.from_booster(deep, max_path_features=widest - 1) is None
    assert TreeShapExplainer.from_booster(deep, max_table_bytes=1024) is None
    x, y = data[0][:500, [0, 3, 4]], data[1][:500]
    base = {"verbosity": -1, "num_leaves": 4}
    others = [
        {"objective": "multiclass", "num_class": 3},
        {"objective": "regression", "linear_tree": True},
        {"objective": "regression", "boosting": "rf", "bagging_fraction": 0.5, "bagging_freq": 1},
    ]
    labels = y + (x[:, 1] > 0)
    for params in others:
        booster = lgb.train({**base, **params}, lgb.Dataset(x, labels), num_boost_round=2)
        assert TreeShapExplainer.from_booster(booster) is None


def test_rejects_bad_arguments(boosters: dict[str, lgb.Booster]) -> None:
    booster = boosters["monotone"]
    with pytest.raises(ValueError, match="'max_path_features' parameter"):
        TreeShapExplainer.from_booster(booster, max_path_features=0)
    with pytest.raises(ValueError, match="must be a 2-d array with 5 columns"):
        explainer_for(booster).contributions(np.zeros((2, 4)))


@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_weight_tables_match_the_subset_sum(m: int) -> None:
    """The table against the defining sum over subsets, term by term."""
    rng = np.random.default_rng(m)
    zero, value = rng.uniform(0.05, 1.0, size=(2, m)), rng.normal(size=2)
    table = shap_weight_tables(zero, value)
    for leaf, mask, i in itertools.product(range(2), range(1 << m), range(m)):
        satisfied = [j for j in range(m) if mask >> j & 1 and j != i]
        g = 0.0
        for size in range(len(satisfied) + 1):
            for subset in itertools.combinations(satisfied, size):
                w = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
                g += w * math.prod(zero[leaf, j] for j in range(m) if j != i and j not in subset)
        expected = value[leaf] * ((mask >> i & 1) - zero[leaf, i]) * g
        assert table[leaf, i, mask] == pytest.approx(expected, rel=1e-12, abs=1e-15)


# -- the cell tables (one lookup per tree and row, for large batches) -----------------------
GRIDDED = [name for name in MODELS if name != "deep"]


@pytest.mark.parametrize("name", GRIDDED)
def test_cell_tables_match_pred_contrib_and_the_leaf_tables(
    name: str,
    boosters: dict[str, lgb.Booster],
    explained: dict[str, tuple[Any, npt.NDArray[np.float64]]],
) -> None:
    booster = boosters[name]
    explainer = explainer_for(booster)
    assert explainer.cells is not None
    x, _ = explained[name]
    expected = np.asarray(booster.predict(x, pred_contrib=True))
    cells = explainer.contributions(x, "cells")
    leaves = explainer.contributions(x, "leaves")
    assert np.max(np.abs(cells - expected)) <= TOLERANCE
    assert np.max(np.abs(leaves - expected)) <= TOLERANCE
    # the reason codes come from the ranking of contributions: the two methods rank alike
    top = np.argsort(-cells[:, :-1], axis=1, kind="stable")[:, :4]
    assert (top == np.argsort(-leaves[:, :-1], axis=1, kind="stable")[:, :4]).mean() > 0.999


def test_cell_tables_do_not_depend_on_the_chunking(
    boosters: dict[str, lgb.Booster],
    explained: dict[str, tuple[Any, npt.NDArray[np.float64]]],
) -> None:
    explainer = explainer_for(boosters["zero_as_missing"])
    cells = explainer.cells
    assert cells is not None
    x, _ = explained["zero_as_missing"]
    x = np.vstack([x] * (1 + 2 * cells.chunk_rows // len(x)))
    assert x.shape[0] > 2 * cells.chunk_rows
    whole = explainer.contributions(x, "cells")
    pieces = np.vstack(
        [explainer.contributions(x[i : i + 997], "cells") for i in range(0, len(x), 997)]
    )
    np.testing.assert_array_equal(whole, pieces)


def test_one_method_whatever_the_batch_size(
    boosters: dict[str, lgb.Booster], data: tuple[npt.NDArray[np.float64], Any]
) -> None:
    """An applicant's contributions (so its reasons) never depend on the rows explained
    with it: single rows and a batch give identical numbers, bit for bit."""
    explainer = explainer_for(boosters["monotone"])
    x = data[0][:400]
    batch = explainer.contributions(x)
    assert explainer.__dict__["cells"] is not None  # built on first use, and used
    singles = np.vstack([explainer.contributions(x[i : i + 1]) for i in range(0, 400, 23)])
    np.testing.assert_array_equal(singles, batch[::23])


def test_models_whose_grids_are_too_large_use_the_leaf_tables(
    boosters: dict[str, lgb.Booster],
    explained: dict[str, tuple[Any, npt.NDArray[np.float64]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deep = explainer_for(boosters["deep"])
    assert deep.cells is None  # 63 leaves: grids above the per-tree limit
    x, _ = explained["deep"]
    assert max_diff(deep, boosters["deep"], x) <= TOLERANCE
    expected = np.asarray(boosters["deep"].predict(x, pred_contrib=True))
    assert np.max(np.abs(deep.contributions(x, "cells") - expected)) <= TOLERANCE
    monkeypatch.setattr(treeshap_cells, "MAX_CELL_TABLE_BYTES", 1024)
    assert explainer_for(boosters["monotone"]).cells is None
