"""Encoder, reason-code selection, calibration and the monotonicity proof."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression

from creditops.errors import InvalidInputError
from creditops.features.encoder import FeatureEncoder
from creditops.features.spec import ReasonCatalogue, ReasonCode
from creditops.modeling.calibration import PD_MIN, Calibrator, fit_calibrator
from creditops.modeling.explain import ReasonFamilies, principal_reasons
from creditops.modeling.lgbm import LgbmInputs, check_monotone, train_booster

pytestmark = pytest.mark.unit


def _encoder() -> FeatureEncoder:
    train = pd.DataFrame({"amount": ["1", "2.5", None], "region": ["b", "a", 3]})
    return FeatureEncoder(["amount", "region"], [False, True]).fit(train)


def test_encoder_frame_and_row_paths_agree() -> None:
    enc = _encoder()
    assert enc.categories_ == {"region": ["3", "a", "b"]}
    frame = pd.DataFrame({"amount": [7, None, "3"], "region": ["a", "unseen", 3.0]})
    x = enc.transform(frame)
    np.testing.assert_array_equal(x[:, 0], [7.0, np.nan, 3.0])
    np.testing.assert_array_equal(x[:, 1], [1.0, np.nan, 0.0])
    rows = [{"amount": 7, "region": "a"}, {"region": "unseen"}, {"amount": "3", "region": 3}]
    stacked = np.vstack([enc.encode_row(r) for r in rows])
    np.testing.assert_array_equal(stacked, x)
    np.testing.assert_array_equal(enc.encode_rows(rows), x)  # the API's batch path
    numpy_scalars = {"amount": np.float32(7.0), "region": "a"}
    np.testing.assert_array_equal(
        enc.encode_rows([numpy_scalars, {"amount": np.int64(3)}])[:, 0], [7.0, 3.0]
    )
    assert enc.encode_rows([]).shape == (0, 2)


def test_encoder_row_rejects_text_in_numeric() -> None:
    with pytest.raises(InvalidInputError, match="'amount' must be numeric"):
        _encoder().encode_row({"amount": "lots"})
    with pytest.raises(InvalidInputError, match="'amount' must be numeric, got True"):
        _encoder().encode_rows([{"amount": 1.0}, {"amount": True}])


def test_encoder_roundtrip() -> None:
    enc = _encoder()
    again = FeatureEncoder.from_dict(enc.to_dict())
    frame = pd.DataFrame({"amount": [1.0], "region": ["b"]})
    np.testing.assert_array_equal(enc.transform(frame), again.transform(frame))


def test_principal_reasons_families_and_ties() -> None:
    names = ["a1", "a2", "b", "c", "unused"]
    catalogue = ReasonCatalogue(
        codes=[
            ReasonCode(code="A", text="a", features=["a1", "a2"]),
            ReasonCode(code="B", text="b", features=["b"]),
            ReasonCode(code="C", text="c", features=["c"]),
            ReasonCode(code="U", text="u", features=["unused"]),
        ]
    )
    fam = ReasonFamilies.build(names, catalogue, used=[True, True, True, True, False])
    assert [c.code for c in fam.codes] == ["A", "B", "C"]
    contrib = np.array(
        [
            [0.2, 0.3, 0.4, -1.0, 0.0],  # A = 0.5 > B = 0.4; C negative is not a reason
            [0.1, 0.1, 0.2, 0.2, 0.0],  # ties: A = B = C = 0.2 -> catalogue order
            [-0.1, -0.1, -0.2, -0.3, 0.0],  # nothing pushes towards default
        ]
    )
    r = principal_reasons(contrib, fam)
    assert r.code_index.tolist() == [[0, 1, -1, -1], [0, 1, 2, -1], [-1, -1, -1, -1]]
    assert r.feature_index[0, 0] == 1  # a2 is the family's top member
    np.testing.assert_allclose(r.contribution[0], [0.5, 0.4, 0.0, 0.0])


def test_isotonic_calibrator_matches_sklearn() -> None:
    rng = np.random.default_rng(3)
    margin = rng.normal(size=2000)
    y = (rng.random(2000) < 1 / (1 + np.exp(-2 * margin))).astype(int)
    cal = fit_calibrator(margin, y, "isotonic")
    ref = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(margin, y)
    probe = np.linspace(-4, 4, 301)
    expected = np.clip(ref.predict(probe), PD_MIN, 1 - PD_MIN)
    np.testing.assert_allclose(cal.predict(probe), expected, atol=1e-12)
    again = Calibrator.from_dict(cal.to_dict())
    np.testing.assert_array_equal(again.predict(probe), cal.predict(probe))


def test_platt_calibrator_recovers_slope() -> None:
    rng = np.random.default_rng(4)
    margin = rng.normal(size=20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-(2 * margin - 1)))).astype(int)
    cal = fit_calibrator(margin, y, "platt")
    assert cal.slope == pytest.approx(2.0, abs=0.1)
    assert cal.intercept == pytest.approx(-1.0, abs=0.1)
    assert np.all(np.diff(cal.predict(np.linspace(-3, 3, 50))) >= 0)


def test_monotone_constraint_is_proved_and_violation_detected() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    x = rng.normal(size=(n, 2))
    # non-monotone truth in feature 0 (U-shaped): an unconstrained model follows it
    logit = x[:, 0] ** 2 - 1 + 0.5 * x[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    names = ["f0", "f1"]

    def fit(monotone: dict[str, str]) -> lgb.Booster:
        inputs = LgbmInputs(names, [False, False], monotone, 0, {"num_boost_round": 60})
        return train_booster(x[:2400], y[:2400], x[2400:], y[2400:], inputs)

    constrained = check_monotone(fit({"f0": "increasing"}), x[:100], names, {"f0": "increasing"})
    assert constrained[0].passed and constrained[0].points_checked > 2
    free = check_monotone(fit({}), x[:100], names, {"f0": "increasing"})
    assert not free[0].passed and free[0].violations > 0


def test_principal_reasons_of_a_row_do_not_depend_on_the_other_rows() -> None:
    """The API batches concurrent requests; each applicant's reasons must be bit-identical
    to the ones it gets alone (a BLAS product's last bit can depend on the batch)."""
    from creditops.features.spec import ReasonCatalogue
    from creditops.modeling.explain import ReasonFamilies, principal_reasons

    names = [f"f{i}" for i in range(9)]
    catalogue = ReasonCatalogue.model_validate(
        {
            "codes": [
                {"code": "A", "text": "a", "features": ["f0", "f1", "f2"]},
                {"code": "B", "text": "b", "features": ["f3", "f4"]},
                {"code": "C", "text": "c", "features": ["f5"]},
                {"code": "D", "text": "d", "features": ["f6", "f7", "f8"]},
            ]
        }
    )
    families = ReasonFamilies.build(names, catalogue)
    rows = np.random.default_rng(5).normal(scale=0.3, size=(257, 9))
    together = principal_reasons(rows, families)
    for i in range(0, 257, 16):
        alone = principal_reasons(rows[i : i + 1], families)
        assert np.array_equal(alone.contribution[0], together.contribution[i])
        assert np.array_equal(alone.code_index[0], together.code_index[i])
        assert np.array_equal(alone.feature_index[0], together.feature_index[i])
    # and the totals are the members' sums
    np.testing.assert_allclose(
        together.contribution.max(axis=1),
        np.maximum(
            0,
            np.column_stack(
                [rows[:, :3].sum(1), rows[:, 3:5].sum(1), rows[:, 5], rows[:, 6:].sum(1)]
            ).max(axis=1),
        ),
        atol=1e-12,
    )
