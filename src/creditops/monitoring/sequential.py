"""An always-valid test of the difference between two arms: the mixture sequential
probability ratio test (mSPRT) with a normal mixing distribution (pure numpy / scipy).

People look at an A/B test's results every day; a fixed-horizon test looked at repeatedly
declares false winners far more often than its alpha (Armitage, McPherson & Rowe 1969).
The mSPRT stays valid however often it is looked at (Robbins 1970; Johari, Koomen, Pekelis
& Walsh, "Peeking at A/B tests", KDD 2017, and "Always valid inference", Operations Research
2022). For an estimate ``d`` of the difference (treatment minus control) that is
approximately normal with variance ``V``, and a normal mixing distribution N(0, tau^2) over
the true difference, the mixture likelihood ratio against "no difference" is

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

and

* the always-valid p-value after each look is the running minimum of ``1 / Lambda``;
* the test rejects "no difference" the first time ``Lambda >= 1 / alpha``;
* the confidence sequence (every difference the test would not reject) is
  ``d +/- sqrt(2 V (V + tau^2) / tau^2 * (log(1 / alpha) + log((V + tau^2) / V) / 2))``,
  intersected over the looks.

``V`` is the plug-in variance of a difference of two independent means
(``s_t^2 / n_t + s_c^2 / n_c``; for a proportion ``s^2 = p (1 - p)``; for two AUCs the sum
of their DeLong variances). The normal approximation needs a few hundred units per arm:
no verdict is given below ``min_per_arm``. ``tau`` sets the effect size the test is most
sensitive to; the default is the minimum detectable effect the user states.

What it does not do: it does not correct for several metrics (the primary metric decides;
guardrails only stop), and outcomes that have not matured are not in the data (a default
rate compares the approved applicants whose outcome window has passed, which favours no arm
as long as both arms started together).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

FloatArray = npt.NDArray[np.float64]

VERDICTS = ("treatment_wins", "control_wins", "no_difference", "keep_running")


def mixture_likelihood_ratio(
    estimate: npt.ArrayLike, variance: npt.ArrayLike, tau2: float
) -> FloatArray:
    """Lambda for each (estimate, variance) pair (see the module docstring)."""
    d = np.asarray(estimate, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    log_lr = 0.5 * np.log(v / (v + tau2)) + tau2 * d**2 / (2.0 * v * (v + tau2))
    return np.exp(np.minimum(log_lr, 700.0))


def half_width(variance: npt.ArrayLike, tau2: float, alpha: float) -> FloatArray:
    """Half-width of the confidence sequence at variance ``variance``."""
    v = np.asarray(variance, dtype=np.float64)
    return np.sqrt(
        2.0 * v * (v + tau2) / tau2 * (math.log(1.0 / alpha) + 0.5 * np.log((v + tau2) / v))
    )


@dataclass(frozen=True)
class ArmStats:
    """One arm's metric: units, mean, and the per-unit variance (or, for an AUC, the
    variance of the estimate itself with ``variance_of_mean``)."""

    n: int
    mean: float
    variance: float
    variance_of_mean: bool = False

    @property
    def v(self) -> float:
        return self.variance if self.variance_of_mean else self.variance / max(self.n, 1)


@dataclass(frozen=True)
class Look:
    """The state of the test after one look."""

    n_control: int
    n_treatment: int
    control: float
    treatment: float
    estimate: float
    p_value: float
    lower: float
    upper: float
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: infinities and NaN (no bound yet, no data) become None."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Look:
        """The inverse of :meth:`to_dict` (None bounds are the infinite ones)."""
        fill = {"lower": -math.inf, "upper": math.inf}
        values: dict[str, Any] = {
            k: (fill.get(k, math.nan) if data.get(k) is None else data[k])
            for k in cls.__dataclass_fields__
        }
        return cls(**values)


@dataclass(frozen=True)
class SequentialDesign:
    alpha: float = 0.05
    mde: float = 0.02  # the smallest difference worth finding (absolute)
    tau: float | None = None  # mixing scale; default: mde
    power: float = 0.8  # for the fixed-horizon sample size shown beside the test
    min_per_arm: int = 200
    lower_is_better: bool = False  # default rates and losses: lower wins

    @property
    def tau2(self) -> float:
        return float(self.tau if self.tau is not None else self.mde) ** 2


def look(
    control: ArmStats, treatment: ArmStats, design: SequentialDesign, previous: Look | None
) -> Look:
    """One more look: the always-valid p-value (running minimum), the confidence sequence
    (running intersection) and the verdict."""
    estimate = treatment.mean - control.mean
    variance = control.v + treatment.v
    p_value = previous.p_value if previous else 1.0
    lower, upper = (previous.lower, previous.upper) if previous else (-math.inf, math.inf)
    enough = min(control.n, treatment.n) >= design.min_per_arm
    if enough and variance > 0:
        lam = float(mixture_likelihood_ratio(estimate, variance, design.tau2))
        p_value = min(p_value, 1.0 / lam if lam > 0 else 1.0)
        width = float(half_width(variance, design.tau2, design.alpha))
        lower, upper = max(lower, estimate - width), min(upper, estimate + width)
    verdict = "keep_running"
    if enough and p_value <= design.alpha:
        better = estimate < 0 if design.lower_is_better else estimate > 0
        verdict = "treatment_wins" if better else "control_wins"
    elif enough and -design.mde < lower and upper < design.mde:
        verdict = "no_difference"
    return Look(
        control.n,
        treatment.n,
        control.mean,
        treatment.mean,
        estimate,
        p_value,
        lower,
        upper,
        verdict,
    )


def fixed_horizon_size(
    control: ArmStats, treatment: ArmStats, design: SequentialDesign
) -> int | None:
    """Units per arm a fixed-horizon two-sided test would need to find ``mde`` with
    ``power`` at ``alpha`` (shown for reference: the sequential test typically needs more,
    in exchange for being valid at every look)."""
    if control.variance_of_mean or treatment.variance_of_mean:
        return None
    sigma2 = control.variance + treatment.variance
    if sigma2 <= 0 or design.mde <= 0:
        return None
    z = stats.norm.ppf(1 - design.alpha / 2) + stats.norm.ppf(design.power)
    needed: int = math.ceil(float(z) ** 2 * sigma2 / design.mde**2)
    return needed


def proportion(successes: int, n: int) -> ArmStats:
    mean = successes / n if n else 0.0
    return ArmStats(n, mean, mean * (1.0 - mean))


def mean_of(values: npt.ArrayLike) -> ArmStats:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return ArmStats(0, 0.0, 0.0)
    variance = float(arr.var(ddof=1)) if arr.size > 1 else 0.0
    return ArmStats(int(arr.size), float(arr.mean()), variance)
