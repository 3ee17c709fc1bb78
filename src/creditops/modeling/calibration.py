"""Probability calibration on the raw model score (log-odds margin).

Fitted on a validation fold held out from the training part, never on the test split.
Isotonic calibration is stored as its breakpoints and evaluated with linear interpolation
(``np.interp``), which is what scikit-learn's ``IsotonicRegression.predict`` does; Platt
scaling is stored as its two coefficients. Both are monotone non-decreasing in the margin,
so the ranking (and therefore AUC, up to ties) and the reason codes computed in margin
space are preserved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from creditops.errors import InvalidInputError

CalibrationMethod = Literal["auto", "isotonic", "platt", "none"]
AUTO_FOLDS = 5
# Calibrated PDs are kept inside [PD_MIN, 1 - PD_MIN]: an isotonic step of exactly 0 would
# otherwise give infinite odds, infinite score points and an infinite log loss.
PD_MIN = 1e-4


@dataclass
class Calibrator:
    method: CalibrationMethod
    x_thresholds: list[float] = field(default_factory=list)
    y_thresholds: list[float] = field(default_factory=list)
    slope: float = 1.0
    intercept: float = 0.0

    def __post_init__(self) -> None:
        # np.interp would convert the breakpoint lists on every call (once per request).
        self._x = np.asarray(self.x_thresholds, dtype=np.float64)
        self._y = np.asarray(self.y_thresholds, dtype=np.float64)

    def predict(self, margin: npt.ArrayLike) -> npt.NDArray[np.float64]:
        m = np.asarray(margin, dtype=np.float64)
        if self.method == "isotonic":
            pd = np.interp(m, self._x, self._y)
        else:
            z = self.slope * m + self.intercept
            pd = 0.5 * (1.0 + np.tanh(0.5 * z))  # numerically stable sigmoid
        return np.clip(np.asarray(pd, dtype=np.float64), PD_MIN, 1.0 - PD_MIN)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "x_thresholds": self.x_thresholds,
            "y_thresholds": self.y_thresholds,
            "slope": self.slope,
            "intercept": self.intercept,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        return cls(
            method=data["method"],
            x_thresholds=[float(v) for v in data["x_thresholds"]],
            y_thresholds=[float(v) for v in data["y_thresholds"]],
            slope=float(data["slope"]),
            intercept=float(data["intercept"]),
        )


def fit_calibrator(
    margin: npt.ArrayLike, y: npt.ArrayLike, method: CalibrationMethod
) -> Calibrator:
    """Fit a calibrator mapping the raw margin to a PD."""
    m = np.asarray(margin, dtype=np.float64)
    target = np.asarray(y, dtype=np.float64)
    if m.shape != target.shape or m.size == 0:
        raise InvalidInputError("margin and y must be non-empty and of equal length")
    if method == "none":
        return Calibrator(method="none")
    if method == "auto":
        return fit_calibrator(m, target, select_calibration(m, target))
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(m, target)
        return Calibrator(
            method="isotonic",
            x_thresholds=[float(v) for v in iso.X_thresholds_],
            y_thresholds=[float(v) for v in iso.y_thresholds_],
        )
    if method == "platt":
        lr = LogisticRegression(C=1e6, solver="lbfgs").fit(m.reshape(-1, 1), target)
        return Calibrator(
            method="platt", slope=float(lr.coef_[0, 0]), intercept=float(lr.intercept_[0])
        )
    raise InvalidInputError(
        "The 'method' parameter must be 'auto', 'isotonic', 'platt' or 'none'. "
        f"Got {method!r} instead."
    )


def select_calibration(
    margin: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
) -> CalibrationMethod:
    """Pick none, Platt or isotonic by cross-validated Brier score on the calibration fold.

    Calibration is a model too: on a small fold, or for a booster whose log-loss objective
    already yields calibrated scores, a fitted map can add more variance than it removes.
    Stratified K-fold CV within the fold estimates each candidate's out-of-sample Brier score
    and keeps the best; ``none`` (the raw sigmoid) wins ties, being the simplest.
    """
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=AUTO_FOLDS, shuffle=True, random_state=0)
    losses: dict[CalibrationMethod, float] = {"none": 0.0, "platt": 0.0, "isotonic": 0.0}
    for train, test in folds.split(margin.reshape(-1, 1), y):
        for method in losses:
            cal = fit_calibrator(margin[train], y[train], method)
            losses[method] += float(np.mean((cal.predict(margin[test]) - y[test]) ** 2))
    best = min(losses.values())
    for method in ("none", "platt", "isotonic"):
        if losses[method] <= best:
            return method
    return "none"
