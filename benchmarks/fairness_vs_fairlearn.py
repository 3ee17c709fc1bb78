"""Benchmark: creditops fairness metrics against fairlearn on synthetic decisions.

    .venv/bin/python benchmarks/fairness_vs_fairlearn.py [--rows 1000000] [--seed 0]

Builds ``--rows`` synthetic credit decisions (approved, defaulted) with two protected
attributes (sex: 2 groups; age banded into 4), computes per-group approval and good-applicant
approval rates plus the demographic parity and equal opportunity ratios / differences with
both libraries, checks that they agree to 1e-12 and times them. Exits non-zero when they
disagree or when creditops is less than ``--min-speedup`` (default 50) times faster.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equal_opportunity_ratio,
    selection_rate,
    true_positive_rate,
)

from creditops.modeling.fairness import band_numeric, compute_fairness

TOLERANCE = 1e-12


@dataclass(frozen=True)
class Figures:
    """What both libraries compute, keyed the same way for comparison."""

    approval_rate: dict[str, float]
    true_positive_rate: dict[str, float]
    ratios: dict[str, float]


def synthetic(rows: int, seed: int) -> tuple[dict[str, npt.NDArray[np.str_]], Any, Any]:
    rng = np.random.default_rng(seed)
    sex = rng.choice(np.array(["female", "male"]), size=rows, p=[0.45, 0.55])
    age = band_numeric(rng.uniform(18, 85, rows))
    risk = rng.normal(size=rows) + 0.3 * (age == "<25") - 0.1 * (sex == "female")
    defaulted = rng.random(rows) < 1.0 / (1.0 + np.exp(2.5 - risk))
    approved = (risk + rng.normal(0, 0.7, rows)) < 0.6
    return {"sex": sex, "age": age}, approved, defaulted


def _number(value: float | None) -> float:
    """None (undefined) becomes NaN so that it can never compare equal to a number."""
    return float("nan") if value is None else float(value)


def with_creditops(groups: Any, approved: Any, defaulted: Any) -> Figures:
    result = compute_fairness("attribute", groups, approved, defaulted)
    return Figures(
        approval_rate={g.group: g.approval_rate for g in result.groups},
        true_positive_rate={g.group: _number(g.true_positive_rate) for g in result.groups},
        ratios={
            "demographic_parity_ratio": _number(result.demographic_parity_ratio),
            "demographic_parity_difference": _number(result.demographic_parity_difference),
            "equal_opportunity_ratio": _number(result.equal_opportunity_ratio),
            "equal_opportunity_difference": _number(result.equal_opportunity_difference),
        },
    )


def with_fairlearn(groups: Any, approved: Any, defaulted: Any) -> Figures:
    good = ~defaulted
    kwargs = {"sensitive_features": groups}
    frame = MetricFrame(
        metrics={"selection_rate": selection_rate, "tpr": true_positive_rate},
        y_true=good,
        y_pred=approved,
        **kwargs,
    )
    by_group = frame.by_group
    return Figures(
        approval_rate={str(k): float(v) for k, v in by_group["selection_rate"].items()},
        true_positive_rate={str(k): float(v) for k, v in by_group["tpr"].items()},
        ratios={
            "demographic_parity_ratio": demographic_parity_ratio(good, approved, **kwargs),
            "demographic_parity_difference": demographic_parity_difference(
                good, approved, **kwargs
            ),
            "equal_opportunity_ratio": equal_opportunity_ratio(good, approved, **kwargs),
            "equal_opportunity_difference": equal_opportunity_difference(good, approved, **kwargs),
        },
    )


def best_time(fn: Callable[[], Figures], repeats: int) -> tuple[float, Figures]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


def disagreements(ours: Figures, theirs: Figures) -> list[str]:
    problems = []
    for name in ("approval_rate", "true_positive_rate", "ratios"):
        a, b = getattr(ours, name), getattr(theirs, name)
        if set(a) != set(b):
            problems.append(f"{name}: keys differ {sorted(a)} vs {sorted(b)}")
            continue
        problems += [
            f"{name}[{k}]: creditops {a[k]!r} vs fairlearn {b[k]!r}"
            for k in a
            if not abs(a[k] - b[k]) <= TOLERANCE
        ]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="creditops runs (best is kept)")
    parser.add_argument("--fairlearn-repeats", type=int, default=1)
    parser.add_argument("--min-speedup", type=float, default=50.0)
    args = parser.parse_args(argv)

    attributes, approved, defaulted = synthetic(args.rows, args.seed)
    print(f"{args.rows:,} rows, seed {args.seed}, default rate {defaulted.mean():.3f}")
    print(
        f"{'attribute':<10} {'groups':>6} {'creditops s':>12} {'fairlearn s':>12} {'speed-up':>9}"
    )
    failed = False
    for name, groups in attributes.items():
        ours_s, ours = best_time(partial(with_creditops, groups, approved, defaulted), args.repeats)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs_s, theirs = best_time(
                partial(with_fairlearn, groups, approved, defaulted), args.fairlearn_repeats
            )
        speedup = theirs_s / ours_s
        n_groups = len(ours.approval_rate)
        print(f"{name:<10} {n_groups:>6} {ours_s:>12.4f} {theirs_s:>12.2f} {speedup:>8.0f}x")
        for problem in disagreements(ours, theirs):
            print(f"  DISAGREE {problem}")
            failed = True
        if speedup < args.min_speedup:
            print(f"  TOO SLOW: speed-up {speedup:.1f}x < {args.min_speedup:g}x")
            failed = True
    print(
        "FAIL" if failed else f"OK: agreement to {TOLERANCE:g}, speed-up >= {args.min_speedup:g}x"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
