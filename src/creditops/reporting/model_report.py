"""The offline HTML model report: evaluation, validation gate, champion/challenger.

The report is one self-contained HTML file a model validator can file: embedded CSS, plots
as SVG data URIs, no script and no network reference, so it opens the same offline and in
ten years. Rendering reads no clock and no environment: the same ``ModelReportData`` gives
the same bytes, so a report can be regenerated and compared with the filed one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import numpy.typing as npt

from creditops.errors import InvalidInputError
from creditops.reporting import plots

TEMPLATE = "model_report.html.j2"

METRIC_LABELS: dict[str, str] = {
    "auc": "AUC",
    "auc_lower": "AUC, CI lower bound",
    "auc_upper": "AUC, CI upper bound",
    "gini": "Gini (2·AUC − 1)",
    "ks": "Kolmogorov–Smirnov",
    "brier": "Brier score",
    "log_loss": "Log loss",
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
}
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
    known = [k for k in METRIC_LABELS if k in keys]
    return known + sorted(k for k in keys if k not in METRIC_LABELS)


def metric_rows(
    metrics: Mapping[str, float], baseline: Mapping[str, float] | None
) -> list[dict[str, Any]]:
    """Headline metric rows; with a baseline, the uplift and whether it is an improvement."""
    rows = []
    for key in _metric_order(list(metrics)):
        value = _number(metrics[key])
        row: dict[str, Any] = {"key": key, "label": METRIC_LABELS.get(key, key), "value": value}
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
                {"label": METRIC_LABELS[key], "before": before, "after": after, "change": change}
            )
    return rows


def gate_view(gate: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if gate is None:
        return None
    checks = []
    for check in gate.get("checks") or ():
        kind = check.get("kind")
        symbol = "≥" if kind == "min" else "≤" if kind == "max" else str(kind)
        checks.append(
            {
                "category": check.get("category") or "",
                "attribute": check.get("attribute") or "",
                "metric": str(check.get("metric")),
                "value": check.get("value"),
                "rule": f"{symbol} {fmt_num(check.get('threshold'))}",
                "passed": bool(check.get("passed")),
            }
        )
    return {
        "passed": bool(gate.get("passed")),
        "profile": str(gate.get("profile", "")),
        "checks": checks,
        "failed": [c for c in checks if not c["passed"]],
    }


def fairness_view(fairness: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per attribute: the summary ratios and the groups, flagging four-fifths failures."""
    views = []
    for attribute in fairness:
        reference = str(attribute.get("reference_group"))
        ref_rate = None
        for group in attribute.get("groups") or ():
            if str(group.get("group")) == reference:
                ref_rate = _number(group.get("approval_rate"))
        groups = []
        for group in attribute.get("groups") or ():
            rate = _number(group.get("approval_rate"))
            ratio = None if rate is None or not ref_rate else rate / ref_rate
            groups.append(
                {
                    **group,
                    "group": str(group.get("group")),
                    "ratio": ratio,
                    "is_reference": str(group.get("group")) == reference,
                    "flagged": ratio is not None and ratio < plots.FAIRNESS_RATIO,
                }
            )
        views.append({**attribute, "reference_group": reference, "groups": groups})
    return views


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
        "fairness": fairness_view(data.fairness),
        "plots": _plot_list(data),
    }


# ----------------------------------------------------------------------------- rendering


def _environment() -> jinja2.Environment:
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
    template = _environment().from_string(_template_source())
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
