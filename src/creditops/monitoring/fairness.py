"""Fairness in production: approval rates by protected group in a window of decisions, their
parity ratios (the metric of :mod:`creditops.modeling.fairness`) and their drift.

The check's condition: ``warning`` when a disparate impact ratio falls below ``min_ratio``
(the four-fifths rule by default) or a group's approval rate moved significantly against
the baseline window (a pooled two-proportion test at ``alpha``, on groups of at least
:data:`~creditops.modeling.fairness.FAIRNESS_MIN_GROUP`), so a slow slide into disparate
impact is caught. Equal opportunity uses the decisions whose outcome is known. Reading the
windows from the decision log is the monitoring service's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from creditops.features.spec import Spec
from creditops.modeling.fairness import (
    FAIRNESS_MIN_GROUP,
    MISSING,
    compute_fairness,
    protected_groups,
)
from creditops.monitoring.drift.statistics import two_proportion_z


@dataclass(frozen=True)
class DecisionWindow:
    """Decisions of one window: the applicants' inputs (one row each) and whether each was
    approved; ``defaulted`` is None where the outcome is not known yet."""

    inputs: pd.DataFrame
    approved: npt.NDArray[np.bool_]
    defaulted: list[bool | None]

    @property
    def n(self) -> int:
        return len(self.approved)


OTHER_GROUP = "other"


@dataclass(frozen=True)
class FairnessConfig:
    """``known_groups``: per categorical protected attribute, the categories seen in
    training; any other value a caller sent is counted as ``other``, so group labels (in
    stored results and in Prometheus) stay a closed set."""

    alpha: float = 0.05
    min_ratio: float = 0.8
    known_groups: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def groups_of(self, frame: pd.DataFrame, spec: Spec, column: str) -> npt.NDArray[np.str_]:
        groups = protected_groups(frame, spec, column)
        known = self.known_groups.get(column)
        if known is None:
            return groups
        allowed = np.isin(groups, [*known, MISSING])
        return np.where(allowed, groups, OTHER_GROUP)


def fairness_in_production(
    window: DecisionWindow,
    baseline: DecisionWindow | None,
    spec: Spec,
    config: FairnessConfig,
) -> dict[str, Any]:
    """Approval rate by protected group, parity ratios and their change against a baseline
    (see the module docstring)."""
    if window.n == 0:
        return {"kind": "fairness", "n": 0, "n_labelled": 0, "attributes": [], "level": "ok"}
    labelled = np.array([d is not None for d in window.defaulted], dtype=bool)
    defaulted = np.array([bool(d) for d in window.defaulted], dtype=bool)
    attributes = []
    level = "ok"
    for column in spec.protected:
        if column not in window.inputs.columns:
            continue
        groups = config.groups_of(window.inputs, spec, column)
        result = compute_fairness(
            column, groups, window.approved, min_group_size=FAIRNESS_MIN_GROUP
        ).to_dict()
        if labelled.any():
            eo = compute_fairness(
                column,
                groups[labelled],
                window.approved[labelled],
                defaulted[labelled],
                min_group_size=FAIRNESS_MIN_GROUP,
            ).to_dict()
            result["equal_opportunity_ratio"] = eo["equal_opportunity_ratio"]
        result["drift"] = []
        if baseline is not None and baseline.n and column in baseline.inputs.columns:
            then = (config.groups_of(baseline.inputs, spec, column), baseline.approved)
            result["drift"] = _group_drift((groups, window.approved), then, config)
        di = result.get("disparate_impact_ratio")
        if any(g["significant"] for g in result["drift"]) or (
            di is not None and di < config.min_ratio
        ):
            level = "warning"
        attributes.append(result)
    return {
        "kind": "fairness",
        "n": window.n,
        "n_labelled": int(labelled.sum()),
        "attributes": attributes,
        "level": level,
    }


Groups = tuple[npt.NDArray[np.str_], npt.NDArray[np.bool_]]  # group label, approved


def _group_drift(now: Groups, baseline: Groups, config: FairnessConfig) -> list[dict[str, Any]]:
    """Each group's approval rate now against the baseline window, with the z-test
    (z > 0 when the group is approved more often now)."""
    groups, approved = now
    base_groups, base_approved = baseline
    out = []
    for group in sorted(set(groups.tolist()) | set(base_groups.tolist())):
        in_now, then = groups == group, base_groups == group
        x_now, n_now = int(approved[in_now].sum()), int(in_now.sum())
        x_then, n_then = int(base_approved[then].sum()), int(then.sum())
        z = p = None
        if n_now and n_then:
            z, p = two_proportion_z(x_then, n_then, x_now, n_now)
        out.append(
            {
                "group": group,
                "approval_rate": x_now / n_now if n_now else None,
                "baseline_approval_rate": x_then / n_then if n_then else None,
                "z": z,
                "p_value": p,
                "significant": p is not None
                and p < config.alpha
                and min(n_now, n_then) >= FAIRNESS_MIN_GROUP,
            }
        )
    return out
