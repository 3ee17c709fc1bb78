"""The single-row LightGBM path returns exactly what ``Booster.predict`` returns."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from creditops.modeling.fastpredict import SingleRowPredictor


def _booster(*, early_stopping: bool) -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 5))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0]) + rng.normal(size=600) > 0).astype(int)
    params = {"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": 1}
    train = lgb.Dataset(x[:400], y[:400])
    if early_stopping:
        valid = lgb.Dataset(x[400:], y[400:], reference=train)
        booster = lgb.train(
            params,
            train,
            num_boost_round=300,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(5, verbose=False)],
        )
        assert 0 < booster.best_iteration < 300
    else:
        booster = lgb.train(params, train, num_boost_round=40)
    return booster, x


@pytest.mark.parametrize("early_stopping", [False, True], ids=["all-trees", "best-iteration"])
def test_single_row_raw_score_equals_booster_predict(early_stopping: bool) -> None:
    booster, x = _booster(early_stopping=early_stopping)
    fast = SingleRowPredictor.create(booster)
    assert fast is not None
    expected = booster.predict(x, raw_score=True)
    got = np.concatenate([fast.raw_scores(x[i : i + 1]) for i in range(x.shape[0])])
    np.testing.assert_array_equal(got, expected)
    # a 1-d row is refused, and so is a row of the wrong width
    with pytest.raises(ValueError, match="expected 5 features"):
        fast.raw_scores(x[0])
    with pytest.raises(ValueError, match="expected 5 features"):
        fast.raw_scores(x[:1, :4])
    # several rows at once, from a strided (non-contiguous) view too
    np.testing.assert_array_equal(fast.raw_scores(x[:50]), expected[:50])
    np.testing.assert_array_equal(fast.raw_scores(x[::7]), expected[::7])
    np.testing.assert_array_equal(fast.raw_scores(np.asfortranarray(x[:9])), expected[:9])
    assert fast.raw_scores(x[:0]).shape == (0,)
    with pytest.raises(ValueError, match="expected 5 features"):
        fast.raw_scores(x[:3, :4])
