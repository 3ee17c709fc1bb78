"""Builders of synthetic credit data and specs shared by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml


def synthetic_credit(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """A credit-like table with a known structure.

    Risk rises with ``utilisation`` and ``delay``, falls with ``income``; ``region`` is a
    string category with a risky level; ``age`` and ``sex`` are protected; values are
    missing at random and ``income`` has outliers.
    """
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10, 0.5, n)
    income[rng.random(n) < 0.01] *= 50  # outliers
    utilisation = rng.beta(2, 3, n)
    delay = rng.integers(-1, 6, n).astype(float)
    region = rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1])
    age = rng.integers(18, 80, n).astype(float)
    sex = rng.choice(["F", "M"], n)
    logit = (
        -1.8
        + 2.5 * utilisation
        + 0.45 * delay
        - 0.6 * (np.log(income) - 10)
        + 0.7 * (region == "west")
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "income": income,
            "utilisation": utilisation,
            "delay": delay,
            "region": region,
            "age": age,
            "sex": sex,
            "target": np.where(y == 1, "bad", "good"),
        }
    )
    for column in ("income", "utilisation", "region"):
        frame.loc[rng.random(n) < 0.03, column] = np.nan
    return frame


def synthetic_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "synthetic",
        "target": {"column": "target", "positive": "bad"},
        "id_column": "id",
        "features": {
            "income": "numeric",
            "utilisation": "numeric",
            "delay": "numeric",
            "region": "categorical",
            "age": "numeric",
            "sex": "categorical",
        },
        "protected": ["sex", "age"],
        "exclude_from_model": ["sex", "age"],
        "monotone": {"delay": "increasing", "income": "decreasing"},
    }
    spec.update(overrides)
    return spec


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def train_demo_model(home: Path, **settings: Any) -> str:
    """Train the Taiwan demo model into ``home``, promote it to production (no gate), and
    return its version. ``settings`` go to :class:`creditops.settings.Settings`."""
    from creditops.services.context import AppContext
    from creditops.services.model_versions import promote
    from creditops.services.training import TrainRequest, train_and_register
    from creditops.settings import Settings

    data = Path(__file__).resolve().parents[1] / "data"
    ctx = AppContext(Settings(home=home, **settings))
    outcome = train_and_register(
        ctx,
        TrainRequest(
            spec_path=data / "specs/taiwan.yaml",
            data_path=data / "taiwan_credit_card.csv",
            name="taiwan",
            policy_path=data / "policies/taiwan.yaml",
        ),
    )
    promote(
        ctx,
        "taiwan",
        outcome.version,
        "production",
        force=True,
        reason="test fixture",
        actor="tests",
    )
    return outcome.version
