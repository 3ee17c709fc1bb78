"""The data a retraining job trains on: the version's original training data plus matured,
labelled production decisions, and the checks it must pass before anything is trained.

Production rows are the applicants' features as they were logged at decision time, with
the observed outcome as target. Sorted by decision time, the most recent ``oot_share`` of
them are held out as an out-of-time sample (they join the common holdout on which the
challenger and the champion are compared, and are never trained on). Of the rest, the
most recent are kept up to ``max_production_share`` of the training rows, and each counts
``production_weight`` times (it is repeated). When the spec names a split column,
production rows are training rows (the split column is false); the original test split is
kept as it was, so that the new version's test split is comparable with its parent's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from creditops.features.dataset import TrainingData
from creditops.features.spec import Spec

DECIDED_AT = "_decided_at"  # decision time of a production row (dropped before training)


@dataclass(frozen=True)
class AssemblyConfig:
    max_production_share: float = 0.5
    production_weight: int = 1
    oot_share: float = 0.2


@dataclass
class Assembled:
    """The training frame (original columns), the out-of-time rows, and counts by source."""

    frame: pd.DataFrame
    out_of_time: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def has_production(self) -> bool:
        return self.counts.get("production_training", 0) > 0


def assemble(
    original: pd.DataFrame, production: pd.DataFrame, spec: Spec, config: AssemblyConfig
) -> Assembled:
    """Join ``original`` (the raw training file) with ``production`` (features, target and
    :data:`DECIDED_AT`) as the module docstring says."""
    ordered = production.sort_values(DECIDED_AT, kind="stable").reset_index(drop=True)
    n_oot = math.floor(len(ordered) * config.oot_share)
    oot = ordered.iloc[len(ordered) - n_oot :] if n_oot else ordered.iloc[:0]
    train = ordered.iloc[: len(ordered) - n_oot]
    cap = _production_cap(len(original), config.max_production_share, config.production_weight)
    dropped = max(0, len(train) - cap)
    train = train.iloc[dropped:]  # keep the most recent
    repeated = pd.concat([train] * config.production_weight, ignore_index=True)
    columns = list(original.columns)
    part = _like(repeated.drop(columns=[DECIDED_AT]).reindex(columns=columns), original)
    if spec.split_column:
        split = original[spec.split_column]
        not_test = False if pd.api.types.is_bool_dtype(split) else "False"
        part[spec.split_column] = pd.Series(not_test, index=part.index).astype(split.dtype)
    frame = pd.concat([original, part], ignore_index=True) if len(part) else original
    return Assembled(
        frame=frame,
        out_of_time=oot.drop(columns=[DECIDED_AT]).reset_index(drop=True),
        counts={
            "original": len(original),
            "production_matured": len(ordered),
            "production_training": len(train),
            "production_training_weighted": len(part),
            "production_capped_out": dropped,
            "production_out_of_time": len(oot),
            "total": len(frame),
        },
    )


def _like(part: pd.DataFrame, original: pd.DataFrame) -> pd.DataFrame:
    """``part`` with the column types of ``original``: numbers where it holds numbers
    (logged values that are not numbers become missing), text elsewhere."""
    out = part.copy()
    for name in out.columns:
        if pd.api.types.is_numeric_dtype(original[name]) and not pd.api.types.is_bool_dtype(
            original[name]
        ):
            out[name] = pd.to_numeric(out[name], errors="coerce")
        elif pd.api.types.is_bool_dtype(original[name]):
            out[name] = out[name].astype("boolean").fillna(False).astype(bool)
        else:
            out[name] = out[name].map(lambda v: v if v is None else str(v)).astype(object)
    return out


def _production_cap(n_original: int, share: float, weight: int) -> int:
    """Most production rows (before repetition) keeping their weighted share <= ``share``."""
    if share >= 1.0:
        return 2**62
    if share <= 0.0:
        return 0
    return math.floor(share * n_original / ((1.0 - share) * weight))


@dataclass(frozen=True)
class DataLimits:
    min_rows: int = 1000
    min_class_rows: int = 50
    max_missing_share: float = 0.2


def check_training_data(data: TrainingData, spec: Spec, limits: DataLimits) -> list[dict[str, Any]]:
    """Rows, both classes, missing values per feature: each check with its value, limit and
    whether it passed (schema and unparseable values were checked while reading)."""
    counts = np.bincount(data.y, minlength=2)
    checks = [
        _check("rows", data.n_rows, limits.min_rows, "min"),
        _check("defaults", int(counts[1]), limits.min_class_rows, "min"),
        _check("non_defaults", int(counts[0]), limits.min_class_rows, "min"),
    ]
    missing = data.frame[list(spec.features)].isna().mean()
    for name, share in missing.items():
        checks.append(
            _check(f"missing_share:{name}", float(share), limits.max_missing_share, "max")
        )
    return checks


def _check(name: str, value: float, limit: float, kind: str) -> dict[str, Any]:
    passed = value >= limit if kind == "min" else value <= limit
    return {"check": name, "value": value, "limit": limit, "kind": kind, "passed": bool(passed)}


def failed(checks: Sequence[dict[str, Any]]) -> list[str]:
    return [
        f"{c['check']} {c['value']:.4g} ({'at least' if c['kind'] == 'min' else 'at most'} "
        f"{c['limit']:.4g})"
        for c in checks
        if not c["passed"]
    ]
