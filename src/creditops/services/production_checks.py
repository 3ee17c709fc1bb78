"""Performance and fairness of a model in production, from the decision log and outcomes.

Labels arrive late: only decisions with a recorded outcome count for performance, and every
result says how many decisions in the window are still unlabelled. "Predicted bad" is a
decision other than approve, as in training evaluation (decision 0001).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from creditops.errors import InvalidInputError
from creditops.features.spec import Spec
from creditops.modeling.evaluation import FAIRNESS_MIN_GROUP, protected_groups
from creditops.modeling.metrics import brier_score, classification_metrics, roc_auc
from creditops.monitoring.drift_count_stats import two_proportion_z
from creditops.monitoring.fairness import compute_fairness
from creditops.store.repositories import DecisionRepository, LabelledWindowRepository
from creditops.store.tables import DecisionRow

PERFORMANCE_METRICS = ("auc", "accuracy", "f1")


@dataclass(frozen=True)
class PerformanceConfig:
    window: int = 1000
    max_drop: float = 0.05
    metrics: tuple[str, ...] = PERFORMANCE_METRICS


def window_metrics(
    y: npt.NDArray[np.int8],
    pd_values: npt.NDArray[np.float64],
    predicted_bad: npt.NDArray[np.bool_],
) -> dict[str, float | None]:
    """AUC needs both classes; the rest are defined for any non-empty window."""
    if y.size == 0:
        return {
            "auc": None,
            "accuracy": None,
            "f1": None,
            "precision": None,
            "recall": None,
            "brier": None,
            "default_rate": None,
        }
    both = 0 < int(y.sum()) < y.size
    cls = classification_metrics(y, predicted_bad)
    return {
        "auc": roc_auc(y, pd_values) if both else None,
        "accuracy": cls.accuracy,
        "precision": cls.precision,
        "recall": cls.recall,
        "f1": cls.f1,
        "brier": brier_score(y, pd_values),
        "default_rate": float(y.mean()),
    }


def _arrays(
    pairs: Sequence[tuple[DecisionRow, Any]],
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    y = np.array([bool(o.defaulted) for _, o in pairs], dtype=np.int8)
    pd_values = np.array([d.pd for d, _ in pairs], dtype=np.float64)
    bad = np.array([d.decision != "approve" for d, _ in pairs], dtype=bool)
    return y, pd_values, bad


def relative_drops(
    current: Mapping[str, float | None],
    reference: Mapping[str, float | None],
    metrics: Sequence[str],
) -> dict[str, float | None]:
    """(reference - current) / reference per metric; positive means worse now."""
    drops: dict[str, float | None] = {}
    for name in metrics:
        now, ref = current.get(name), reference.get(name)
        drops[name] = None if now is None or ref is None or ref == 0 else (ref - now) / ref
    return drops


def performance_drift(
    sessions: sessionmaker[Session],
    model: str,
    validation_metrics: Mapping[str, float],
    config: PerformanceConfig,
) -> dict[str, Any]:
    """Metrics over the last ``window`` labelled decisions vs validation and a baseline.

    The baseline period is the model's first ``window`` labelled decisions. The level is
    ``critical`` when any monitored metric dropped by more than ``max_drop`` (relative)
    against the validation metrics or the baseline period.
    """
    if not 0 < config.max_drop < 1:
        raise InvalidInputError(
            f"max_drop must be in (0, 1); got {config.max_drop}", field="max_drop"
        )
    with sessions() as session:
        repo = LabelledWindowRepository(session)
        recent = repo.latest(model, config.window)
        first = repo.latest(model, config.window, oldest_first=True)
        unlabelled = repo.count_unlabelled(model)
    current = window_metrics(*_arrays(recent))
    baseline = window_metrics(*_arrays(first))
    reference = {
        k: validation_metrics.get(k)
        for k in ("auc", "accuracy", "f1", "precision", "recall", "brier")
    }
    vs_validation = relative_drops(current, reference, config.metrics)
    vs_baseline = relative_drops(current, baseline, config.metrics)
    breaches = sorted(
        {
            name
            for drops in (vs_validation, vs_baseline)
            for name, d in drops.items()
            if d is not None and d > config.max_drop
        }
    )
    return {
        "kind": "performance",
        "model": model,
        "n_labelled": len(recent),
        "n_unlabelled": unlabelled,
        "window": config.window,
        "current": current,
        "validation": reference,
        "baseline": baseline,
        "drop_vs_validation": vs_validation,
        "drop_vs_baseline": vs_baseline,
        "max_drop": config.max_drop,
        "breaches": breaches,
        "level": "critical" if breaches else "ok",
    }


def _window_frame(rows: Sequence[DecisionRow]) -> pd.DataFrame:
    return pd.DataFrame([r.inputs for r in rows])


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float | None, float | None]:
    """Pooled two-proportion z-test of ``x1 / n1`` against ``x2 / n2`` (z > 0 when the first
    is higher); (None, None) when a group is empty. The statistic is the drift module's."""
    if n1 == 0 or n2 == 0:
        return None, None
    z, p = two_proportion_z(x2, n2, x1, n1)
    return z, p


def fairness_in_production(
    sessions: sessionmaker[Session],
    model: str,
    spec: Spec,
    since: datetime | None,
    baseline: tuple[datetime, datetime] | None = None,
    alpha: float = 0.05,
    limit: int = 100_000,
    min_ratio: float = 0.8,
) -> dict[str, Any]:
    """Approval rate by protected group, parity ratios and their change against a baseline.

    The level is ``warning`` when a disparate impact ratio falls below ``min_ratio`` (the
    four-fifths rule by default) or a group's approval rate moved significantly.
    Equal opportunity uses the decisions whose outcome is known. Fairness drift: each
    group's approval rate in the window is compared with the baseline window by a
    two-proportion test, so a slow slide into disparate impact is caught in production.
    """
    with sessions() as session:
        repo = DecisionRepository(session)
        rows = [r for chunk in repo.iter_since(since, model, 5000) for r in chunk][-limit:]
        base_rows = []
        if baseline is not None:
            base_rows = [
                r
                for chunk in repo.iter_since(baseline[0], model, 5000)
                for r in chunk
                if r.created_at < baseline[1]
            ][-limit:]
        labels = {
            d.decision_id: bool(o.defaulted)
            for d, o in LabelledWindowRepository(session).latest(model, limit)
        }
    if not rows:
        return {"kind": "fairness", "model": model, "n": 0, "attributes": [], "level": "ok"}
    frame = _window_frame(rows)
    approved = np.array([r.decision == "approve" for r in rows])
    attributes = []
    level = "ok"
    for column in spec.protected:
        if column not in frame.columns:
            continue
        groups = protected_groups(frame, spec, column)
        labelled = np.array([r.decision_id in labels for r in rows])
        result = compute_fairness(
            column, groups, approved, min_group_size=FAIRNESS_MIN_GROUP
        ).to_dict()
        if labelled.any():
            defaulted = np.array([labels.get(r.decision_id, False) for r in rows])
            eo = compute_fairness(
                column,
                groups[labelled],
                approved[labelled],
                defaulted[labelled],
                min_group_size=FAIRNESS_MIN_GROUP,
            ).to_dict()
            result["equal_opportunity_ratio"] = eo["equal_opportunity_ratio"]
        result["drift"] = _group_drift(column, spec, groups, approved, base_rows, alpha)
        if any(g["significant"] for g in result["drift"]):
            level = "warning"
        di = result.get("disparate_impact_ratio")
        if di is not None and di < min_ratio:
            level = "warning"
        attributes.append(result)
    return {
        "kind": "fairness",
        "model": model,
        "n": len(rows),
        "n_labelled": len(labels),
        "attributes": attributes,
        "level": level,
    }


def _group_drift(
    column: str,
    spec: Spec,
    groups: npt.NDArray[np.str_],
    approved: npt.NDArray[np.bool_],
    base_rows: Sequence[DecisionRow],
    alpha: float,
) -> list[dict[str, Any]]:
    if not base_rows:
        return []
    base_frame = _window_frame(base_rows)
    if column not in base_frame.columns:
        return []
    base_groups = protected_groups(base_frame, spec, column)
    base_approved = np.array([r.decision == "approve" for r in base_rows])
    out = []
    for group in sorted(set(groups.tolist()) | set(base_groups.tolist())):
        now, then = groups == group, base_groups == group
        x1, n1 = int(approved[now].sum()), int(now.sum())
        x2, n2 = int(base_approved[then].sum()), int(then.sum())
        z, p = two_proportion_test(x1, n1, x2, n2)
        out.append(
            {
                "group": group,
                "approval_rate": x1 / n1 if n1 else None,
                "baseline_approval_rate": x2 / n2 if n2 else None,
                "z": z,
                "p_value": p,
                "significant": p is not None and p < alpha and min(n1, n2) >= FAIRNESS_MIN_GROUP,
            }
        )
    return out
