"""The offline HTML model report: evaluation, validation gate, champion/challenger.

The report is one self-contained HTML file a model validator can file: embedded CSS, plots
as SVG data URIs, no script and no network reference, so it opens the same offline and in
ten years. Rendering reads no clock and no environment: the same ``ModelReportData`` gives
the same bytes, so a report can be regenerated and compared with the filed one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import numpy.typing as npt

from creditops.errors import InvalidInputError
from creditops.features.spec import value_key
from creditops.modeling.fairness import group_sort_key
from creditops.modeling.scorecard import LEAKAGE_CHECKS, NEAR_PERFECT_AUC, ScorecardTables
from creditops.modeling.woe_binning import WOE_SIGN
from creditops.reporting import plots
from creditops.reporting.names import category_name, metric_name

TEMPLATE = "model_report.html.j2"

# The headline metrics in the order the report lists them (names: reporting.names).
METRIC_ORDER = (
    "auc",
    "auc_lower",
    "auc_upper",
    "gini",
    "ks",
    "brier",
    "log_loss",
    "calibration_in_the_large",
    "hosmer_lemeshow_stat",
    "hosmer_lemeshow_p",
    "accuracy",
    "precision",
    "recall",
    "f1",
)
CUTOFF_METRICS = ("accuracy", "precision", "recall", "f1")
LOWER_IS_BETTER = frozenset({"brier", "log_loss"})
CALIBRATION_METRICS = ("brier", "log_loss")

# Information value rule of thumb (N. Siddiqi, "Credit Risk Scorecards", Wiley 2006):
# below 0.02 unpredictive, up to 0.1 weak, up to 0.3 medium, up to 0.5 strong, above that
# suspiciously strong (often a leak of the outcome).
IV_STRENGTH = ((0.02, "unpredictive"), (0.1, "weak"), (0.3, "medium"), (0.5, "strong"))


@dataclass(frozen=True)
class ModelReportData:
    """Everything the report shows; built by the services from an evaluation."""

    title: str
    model_name: str
    version: str | None
    generated_at: str
    algorithm: str
    lineage: Mapping[str, str]
    metrics: Mapping[str, float]
    y_test: npt.NDArray[np.integer[Any]]  # any integer dtype (evaluation uses int8); 1 = default
    pd_test: npt.NDArray[np.float64]
    score_test: npt.NDArray[np.float64]
    calibration_table: Sequence[Mapping[str, float]]
    gains_table: Sequence[Mapping[str, float]]
    fairness: Sequence[Mapping[str, Any]]
    baseline_name: str | None = None
    baseline_metrics: Mapping[str, float] | None = None
    baseline_pd_test: npt.NDArray[np.float64] | None = None
    uncalibrated_metrics: Mapping[str, float] | None = None
    iv_table: Sequence[Mapping[str, Any]] | None = None
    feature_importance: Sequence[Mapping[str, Any]] | None = None
    monotonicity: Sequence[Mapping[str, Any]] | None = None
    gate: Mapping[str, Any] | None = None
    champion: Mapping[str, Any] | None = None
    notes: Sequence[str] = ()
    # {"approve_min_score": points, "pd": PD}: predicted to default = score below it
    classification_cutoff: Mapping[str, float] | None = None
    scorecard: ScorecardTables | None = None
    value_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


# ----------------------------------------------------------------------------- formatting


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def fmt_num(value: Any, digits: int = 4) -> str:
    """A float with fixed decimals; missing, NaN and infinite values read "n/a"."""
    number = _number(value)
    return "n/a" if number is None else f"{number:.{digits}f}"


def fmt_signed(value: Any, digits: int = 4) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{number:+.{digits}f}"


def fmt_pct(value: Any, digits: int = 1) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{100.0 * number:.{digits}f}%"


def fmt_count(value: Any) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{round(number):,}"


def fmt_pvalue(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "n/a"
    return "< 0.0001" if number < 1e-4 else f"{number:.4f}"


def fmt_label(value: Any) -> str:
    """A bin label: integral numbers without decimals, anything else as written."""
    number = _number(value)
    if number is not None and number.is_integer():
        return str(int(number))
    return "n/a" if value is None else str(value)


def fmt_flag(value: Any) -> str:
    if value is None:
        return "n/a"
    return "yes" if bool(value) else "no"


def iv_strength(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "n/a"
    for upper, label in IV_STRENGTH:
        if number < upper:
            return label
    return "suspicious"


# ----------------------------------------------------------------------------- view model


def _metric_order(keys: Sequence[str]) -> list[str]:
    known = [k for k in METRIC_ORDER if k in keys]
    return known + sorted(k for k in keys if k not in METRIC_ORDER)


def metric_rows(
    metrics: Mapping[str, float], baseline: Mapping[str, float] | None
) -> list[dict[str, Any]]:
    """Headline metric rows; with a baseline, the uplift and whether it is an improvement."""
    rows = []
    for key in _metric_order(list(metrics)):
        value = _number(metrics[key])
        row: dict[str, Any] = {"key": key, "label": metric_name(key), "value": value}
        if baseline is not None:
            base = _number(baseline.get(key))
            uplift = None if value is None or base is None else value - base
            better = None
            if uplift is not None and uplift != 0:
                better = uplift < 0 if key in LOWER_IS_BETTER else uplift > 0
            row.update(baseline=base, uplift=uplift, better=better)
        rows.append(row)
    return rows


def calibration_effect(
    calibrated: Mapping[str, float], uncalibrated: Mapping[str, float] | None
) -> list[dict[str, Any]]:
    if uncalibrated is None:
        return []
    rows = []
    for key in CALIBRATION_METRICS:
        if key in calibrated and key in uncalibrated:
            before, after = _number(uncalibrated[key]), _number(calibrated[key])
            change = None if before is None or after is None else after - before
            rows.append(
                {"label": metric_name(key), "before": before, "after": after, "change": change}
            )
    return rows


def _threshold_text(kind: Any, threshold: Any) -> str:
    symbol = "≥" if kind == "min" else "≤" if kind == "max" else str(kind)
    return f"{symbol} {fmt_num(threshold)}"


def gate_view(gate: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The gate's verdict and one row per check, with human names, the profile's reason
    for the threshold and whether it relaxes the profile's default (a lowered minimum)."""
    if gate is None:
        return None
    checks = []
    for check in gate.get("checks") or ():
        kind = check.get("kind")
        default = _number(check.get("default_threshold"))
        threshold = _number(check.get("threshold"))
        relaxed = (
            default is not None
            and threshold is not None
            and (threshold < default if kind == "min" else threshold > default)
        )
        reason = check.get("reason") or None
        checks.append(
            {
                "category": category_name(str(check.get("category") or "")),
                "attribute": check.get("attribute") or "",
                "key": str(check.get("metric")),
                "metric": metric_name(str(check.get("metric"))),
                "value": check.get("value"),
                "rule": _threshold_text(kind, check.get("threshold")),
                "passed": bool(check.get("passed")),
                "relaxed_from": _threshold_text(kind, default) if relaxed else None,
                "reason": reason,
                "unexplained": relaxed and reason is None,
            }
        )
    return {
        "passed": bool(gate.get("passed")),
        "profile": str(gate.get("profile", "")),
        "checks": checks,
        "failed": [c for c in checks if not c["passed"]],
        "has_reasons": any(c["reason"] or c["relaxed_from"] for c in checks),
    }


def group_text(attribute: str, group: Any, labels: Mapping[str, Mapping[str, str]]) -> str:
    """A group as a validator reads it: the spec's label beside the raw value, ``1 (male)``."""
    raw = str(group)
    label = labels.get(attribute, {}).get(value_key(raw))
    return f"{raw} ({label})" if label else raw


def fairness_view(
    fairness: Sequence[Mapping[str, Any]],
    value_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Per attribute: the summary ratios and the groups (in band / numeric order, labelled
    from the spec), flagging four-fifths failures."""
    labels = value_labels or {}
    views = []
    for attribute in fairness:
        name = str(attribute.get("attribute"))
        reference = str(attribute.get("reference_group"))
        ref_rate = None
        for group in attribute.get("groups") or ():
            if str(group.get("group")) == reference:
                ref_rate = _number(group.get("approval_rate"))
        groups = []
        ordered = sorted(
            attribute.get("groups") or (), key=lambda g: group_sort_key(str(g.get("group")))
        )
        for group in ordered:
            rate = _number(group.get("approval_rate"))
            ratio = None if rate is None or not ref_rate else rate / ref_rate
            groups.append(
                {
                    **group,
                    "group": str(group.get("group")),
                    "display": group_text(name, group.get("group"), labels),
                    "ratio": ratio,
                    "is_reference": str(group.get("group")) == reference,
                    "flagged": ratio is not None and ratio < plots.FAIRNESS_RATIO,
                }
            )
        summary = [
            (metric_name(key), attribute.get(key), "num3")
            for key in (
                "demographic_parity_ratio",
                "demographic_parity_difference",
                "equal_opportunity_ratio",
                "disparate_impact_ratio",
            )
        ] + [(metric_name("fairness_score"), attribute.get("fairness_score"), "num1")]
        views.append(
            {
                **attribute,
                "reference_group": reference,
                "reference_display": group_text(name, reference, labels),
                "groups": groups,
                "summary": summary,
            }
        )
    return views


def cutoff_view(data: ModelReportData) -> str | None:
    """The sentence that says which decision rule produced the confusion-matrix metrics."""
    cutoff = data.classification_cutoff
    if not cutoff or not any(k in data.metrics for k in CUTOFF_METRICS):
        return None
    score = fmt_label(cutoff.get("approve_min_score"))
    pd_text = fmt_pct(cutoff.get("pd"), 1)
    return (
        "Accuracy, precision, recall and F1 count an applicant as predicted to default when "
        f"the score is below the policy's approve cutoff of {score} points (a PD above "
        f"{pd_text}), i.e. everyone not approved automatically (review or decline); a "
        "default is the positive class."
    )


def iv_view(rows: Sequence[Mapping[str, Any]] | None) -> dict[str, Any] | None:
    """The IV table rows, and for leakage suspects the reason and what to check."""
    if not rows:
        return None
    suspects = [
        {"feature": str(r.get("feature")), "reason": r.get("leakage_reason") or "IV too high"}
        for r in rows
        if r.get("leakage_suspect")
    ]
    return {"rows": list(rows), "suspects": suspects, "checks": LEAKAGE_CHECKS}


def scorecard_view(tables: ScorecardTables | None) -> dict[str, Any] | None:
    """The scorecard's binning tables (with their totals) and its points by characteristic."""
    if tables is None:
        return None
    binning = []
    for table in tables.binning:
        counts = [r.count for r in table.rows]
        known = None not in counts
        binning.append(
            {
                "table": table,
                "total": sum(c for c in counts if c is not None) if known else None,
                "events": sum(r.n_event or 0 for r in table.rows) if known else None,
                "nonevents": sum(r.n_nonevent or 0 for r in table.rows) if known else None,
            }
        )
    points: dict[str, list[Any]] = {}
    for row in tables.points:
        points.setdefault(row.feature, []).append(row)
    scaling = tables.scale.scaling
    return {
        "role": tables.role,
        "binning": binning,
        "points": list(points.items()),
        "base_points": tables.base_points,
        "scaling": scaling,
        "scale": tables.scale,
        "woe_sign": WOE_SIGN,
    }


def _plot_list(data: ModelReportData) -> list[dict[str, str]]:
    figures = [
        (
            "ROC curve",
            plots.roc_plot(data.y_test, data.pd_test, data.baseline_pd_test, data.baseline_name),
        ),
        ("Calibration", plots.calibration_plot(data.calibration_table)),
        ("Score distribution", plots.score_distribution_plot(data.score_test, data.y_test)),
        ("Gains", plots.gains_plot(data.gains_table)),
        ("Approval rate by group", plots.fairness_plot(data.fairness)),
    ]
    if data.feature_importance:
        figures.append(
            ("Feature importance", plots.feature_importance_plot(data.feature_importance))
        )
    return [{"title": title, "uri": uri} for title, uri in figures if uri is not None]


def _validate(data: ModelReportData) -> None:
    n = np.asarray(data.y_test).shape[0] if np.ndim(data.y_test) else 0
    if n == 0:
        raise InvalidInputError("The report needs a non-empty test set.", field="y_test")
    for name in ("pd_test", "score_test"):
        size = np.asarray(getattr(data, name)).size
        if size != n:
            raise InvalidInputError(f"{name} has {size} values, expected {n}.", field=name)


def build_context(data: ModelReportData) -> dict[str, Any]:
    """The template's variables; plots are rendered here."""
    _validate(data)
    y = np.asarray(data.y_test)
    return {
        "data": data,
        "n_test": int(y.size),
        "n_bad": int(np.sum(y == 1)),
        "metric_rows": metric_rows(data.metrics, data.baseline_metrics),
        "calibration_effect": calibration_effect(data.metrics, data.uncalibrated_metrics),
        "lineage": sorted((str(k), str(v)) for k, v in data.lineage.items()),
        "gate": gate_view(data.gate),
        "fairness": fairness_view(data.fairness, data.value_labels),
        "cutoff": cutoff_view(data),
        "iv": iv_view(data.iv_table),
        "scorecard": scorecard_view(data.scorecard),
        "near_perfect_auc": NEAR_PERFECT_AUC,
        "plots": _plot_list(data),
    }


# ----------------------------------------------------------------------------- rendering


def report_environment() -> jinja2.Environment:
    """The reports' Jinja environment: autoescaped, strict, with the number filters."""
    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        num=fmt_num,
        signed=fmt_signed,
        pct=fmt_pct,
        count=fmt_count,
        pvalue=fmt_pvalue,
        flag=fmt_flag,
        label=fmt_label,
        iv_strength=iv_strength,
    )
    return env


def _template_source() -> str:
    resource = resources.files("creditops.reporting").joinpath("templates").joinpath(TEMPLATE)
    return resource.read_text(encoding="utf-8")


def render_model_report_html(data: ModelReportData) -> str:
    """The report as an HTML string."""
    template = report_environment().from_string(_template_source())
    return template.render(build_context(data))


def render_model_report(data: ModelReportData, path: Path) -> Path:
    """Write the self-contained HTML report to ``path`` (parents created) and return it."""
    html = render_model_report_html(data)
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html, encoding="utf-8", newline="\n")
    except OSError as exc:
        raise InvalidInputError(
            f"Cannot write the report to {target}: {exc.strerror or exc}", field="path"
        ) from exc
    return target
