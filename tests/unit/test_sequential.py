"""The always-valid test (mSPRT): its formulas, and by simulation its false-positive rate
under continuous monitoring and its power."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from creditops.monitoring.sequential import (
    ArmStats,
    Look,
    SequentialDesign,
    fixed_horizon_size,
    half_width,
    look,
    mean_of,
    mixture_likelihood_ratio,
    proportion,
)

pytestmark = pytest.mark.unit
ALPHA = 0.05


def test_the_likelihood_ratio_is_the_normal_mixture_integral() -> None:
    """Lambda = integral of N(d; theta, V) N(theta; 0, tau^2) d theta / N(d; 0, V)."""
    d, v, tau2 = 0.013, 4e-5, 0.02**2
    marginal = stats.norm.pdf(d, 0, math.sqrt(v + tau2))  # the mixture, integrated exactly
    assert mixture_likelihood_ratio(d, v, tau2) == pytest.approx(
        marginal / stats.norm.pdf(d, 0, math.sqrt(v))
    )
    # the confidence sequence is where Lambda(d - theta0) < 1/alpha
    width = float(half_width(v, tau2, ALPHA))
    assert mixture_likelihood_ratio(width, v, tau2) == pytest.approx(1 / ALPHA)


def test_looks_keep_running_minimum_and_intersection_and_decide() -> None:
    design = SequentialDesign(alpha=ALPHA, mde=0.03, min_per_arm=100)
    first = look(proportion(20, 99), proportion(40, 99), design, None)
    assert first.verdict == "keep_running" and first.p_value == 1.0  # too few
    # a look survives its JSON form (unbounded sequences included)
    assert first.to_dict()["lower"] is None
    assert Look.from_dict(first.to_dict()) == first
    second = look(proportion(200, 1000), proportion(260, 1000), design, first)
    assert second.p_value < ALPHA and second.verdict == "treatment_wins"
    assert second.lower > 0  # the sequence excludes no difference
    lower_better = SequentialDesign(alpha=ALPHA, mde=0.03, min_per_arm=100, lower_is_better=True)
    assert (
        look(proportion(200, 1000), proportion(260, 1000), lower_better, None).verdict
        == "control_wins"
    )
    # a later look never raises the p-value nor widens the sequence
    third = look(proportion(2000, 10000), proportion(2010, 10000), design, second)
    assert third.p_value == second.p_value and third.lower >= second.lower
    # identical arms with a narrow sequence inside +/- mde: no difference
    same = look(proportion(20000, 100000), proportion(20050, 100000), design, None)
    assert same.verdict == "no_difference"


def test_arm_statistics_and_the_fixed_horizon_size() -> None:
    values = np.array([1.0, 2.0, 4.0, 7.0])
    arm = mean_of(values)
    assert (arm.n, arm.mean, arm.variance) == (4, values.mean(), pytest.approx(values.var(ddof=1)))
    design = SequentialDesign(alpha=0.05, mde=0.03, power=0.8)
    n = fixed_horizon_size(proportion(200, 1000), proportion(170, 1000), design)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert n == math.ceil(z**2 * (0.2 * 0.8 + 0.17 * 0.83) / 0.03**2)
    auc = ArmStats(1000, 0.75, 1e-4, variance_of_mean=True)
    assert fixed_horizon_size(auc, auc, design) is None and auc.v == 1e-4


def simulate(p_control: float, p_treatment: float, experiments: int, seed: int) -> float:
    """Share of experiments that declare a winner at any look (a look after every batch of
    50 applicants per arm, 200 looks: 10,000 per arm), with the module's own functions."""
    rng = np.random.default_rng(seed)
    batches, per_batch = 200, 50
    design = SequentialDesign(alpha=ALPHA, mde=0.03, min_per_arm=200)
    c = np.cumsum(rng.binomial(per_batch, p_control, (experiments, batches)), axis=1)
    t = np.cumsum(rng.binomial(per_batch, p_treatment, (experiments, batches)), axis=1)
    n = per_batch * np.arange(1, batches + 1)
    pc, pt = c / n, t / n
    variance = (pc * (1 - pc) + pt * (1 - pt)) / n
    lam = mixture_likelihood_ratio(pt - pc, np.maximum(variance, 1e-12), design.tau2)
    lam[:, n < design.min_per_arm] = 0.0
    return float((lam >= 1 / ALPHA).any(axis=1).mean())


def test_identical_arms_looked_at_after_every_batch_rarely_declare_a_winner() -> None:
    experiments = 1000
    rate = simulate(0.2, 0.2, experiments, seed=7)
    # alpha plus three simulation standard errors
    assert rate <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / experiments), rate
    # a fixed-horizon z-test looked at after every batch is far above alpha (the reason
    # for the sequential test), on the same kind of data
    rng = np.random.default_rng(7)
    c = np.cumsum(rng.binomial(50, 0.2, (experiments, 200)), axis=1)
    t = np.cumsum(rng.binomial(50, 0.2, (experiments, 200)), axis=1)
    n = 50 * np.arange(1, 201)
    pooled = (c + t) / (2 * n)
    z = (t - c) / n / np.sqrt(np.maximum(pooled * (1 - pooled) * 2 / n, 1e-12))
    naive = float((np.abs(z) > stats.norm.ppf(0.975)).any(axis=1).mean())
    assert naive > 6 * ALPHA, naive  # 0.42 with this seed


def test_a_real_effect_is_found() -> None:
    power = simulate(0.2, 0.17, 500, seed=11)  # 3 points lower, 10,000 per arm at most
    assert power >= 0.8, power
