"""Performance drift: how a model's accuracy in production compares with its validation.

Labels arrive late: only decisions with a recorded outcome count, and every result says how
many decisions are still unlabelled. "Predicted bad" is a decision other than approve, as
in training evaluation (decision 0001).

The check follows the house pattern: configuration (:class:`PerformanceConfig`) ->
calculation (:func:`_window_metrics` over a :class:`LabelledWindow`) -> result (a dict) ->
condition (a relative drop of a monitored metric above ``max_drop``, against the version's
validation metrics or against the model's first labelled window, is critical; above
``warning_drop`` a warning). Reading the
windows from the decision log is the monitoring service's job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from creditops.errors import InvalidInputError
from creditops.modeling.metrics import brier_score, classification_metrics, roc_auc

PERFORMANCE_METRICS = ("auc", "accuracy", "f1")
VALIDATION_METRICS = ("auc", "accuracy", "f1", "precision", "recall", "brier")


@dataclass(frozen=True)
class PerformanceConfig:
    """The window (latest labelled decisions), the relative drop that is critical, and the
    metrics watched."""

    window: int = 1000
    max_drop: float = 0.05
    metrics: tuple[str, ...] = PERFORMANCE_METRICS
    warning_drop: float = 0.03

    def __post_init__(self) -> None:
        if not 0 < self.max_drop < 1:
            raise InvalidInputError(
                f"max_drop must be in (0, 1); got {self.max_drop}", field="max_drop"
            )
        if not 0 < self.warning_drop <= self.max_drop:
            raise InvalidInputError(
                f"warning_drop must be in (0, max_drop]; got {self.warning_drop}",
                field="warning_drop",
            )


@dataclass(frozen=True)
class LabelledWindow:
    """Labelled decisions: outcome (1 = defaulted), the PD given, and whether the decision
    was other than approve."""

    defaulted: npt.NDArray[np.int8]
    pd: npt.NDArray[np.float64]
    predicted_bad: npt.NDArray[np.bool_]

    @property
    def n(self) -> int:
        return int(self.defaulted.size)


def _window_metrics(window: LabelledWindow) -> dict[str, float | None]:
    """AUC needs both classes; the rest are defined for any non-empty window."""
    y = window.defaulted
    if y.size == 0:
        return dict.fromkeys(("auc", "accuracy", "f1", "precision", "recall", "brier"), None) | {
            "default_rate": None
        }
    both = 0 < int(y.sum()) < y.size
    cls = classification_metrics(y, window.predicted_bad)
    return {
        "auc": roc_auc(y, window.pd) if both else None,
        "accuracy": cls.accuracy,
        "precision": cls.precision,
        "recall": cls.recall,
        "f1": cls.f1,
        "brier": brier_score(y, window.pd),
        "default_rate": float(y.mean()),
    }


def _relative_drops(
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
    recent: LabelledWindow,
    first: LabelledWindow,
    validation_metrics: Mapping[str, float],
    config: PerformanceConfig,
) -> dict[str, Any]:
    """Metrics over the latest labelled decisions against validation and a baseline period.

    ``recent`` is the latest ``config.window`` labelled decisions, ``first`` the model's
    first ``config.window`` (the baseline period). The level is ``critical`` when any
    monitored metric dropped by more than ``max_drop`` (relative) against either.
    """
    current = _window_metrics(recent)
    baseline = _window_metrics(first)
    reference = {k: validation_metrics.get(k) for k in VALIDATION_METRICS}
    vs_validation = _relative_drops(current, reference, config.metrics)
    vs_baseline = _relative_drops(current, baseline, config.metrics)

    def over(limit: float) -> list[str]:
        return sorted(
            {
                name
                for drops in (vs_validation, vs_baseline)
                for name, d in drops.items()
                if d is not None and d > limit
            }
        )

    breaches, warnings = over(config.max_drop), over(config.warning_drop)
    return {
        "kind": "performance",
        "n_labelled": recent.n,
        "window": config.window,
        "current": current,
        "validation": reference,
        "baseline": baseline,
        "drop_vs_validation": vs_validation,
        "drop_vs_baseline": vs_baseline,
        "max_drop": config.max_drop,
        "warning_drop": config.warning_drop,
        "breaches": breaches,
        "warnings": warnings,
        "level": "critical" if breaches else ("warning" if warnings else "ok"),
    }
