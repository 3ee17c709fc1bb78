"""The HTML page of an A/B test: design, verdict, per-arm figures, and the difference with
its confidence sequence and the always-valid p-value over the looks (self-contained)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from creditops.reporting.drift_report import STYLE
from creditops.reporting.plots import sequence_plot


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def experiment_html(summary: Mapping[str, Any]) -> str:
    design = summary.get("design", {})
    last = summary.get("last_look") or {}
    arms = summary.get("arms", {})
    arm_rows = "".join(
        f"<tr><th>{html.escape(name)}</th>"
        + "".join(
            f"<td>{_cell(arm.get(key))}</td>"
            for key in ("n", "approval_rate", "mean_pd", "labelled", "default_rate_approved")
        )
        + "</tr>"
        for name, arm in arms.items()
    )
    facts = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_cell(v)}</td></tr>"
        for k, v in (
            ("model", summary.get("model")),
            ("control", summary.get("control_version")),
            ("treatment", summary.get("treatment_version")),
            ("state", summary.get("state")),
            ("metric", design.get("metric")),
            ("minimum detectable effect", design.get("mde")),
            ("alpha", design.get("alpha")),
            ("split (treatment)", design.get("split")),
            ("verdict", last.get("verdict")),
            ("difference", last.get("estimate")),
            ("confidence sequence", f"[{_cell(last.get('lower'))}, {_cell(last.get('upper'))}]"),
            ("always-valid p-value", last.get("p_value")),
            ("fixed-horizon units per arm (reference)", summary.get("sample_size_per_arm")),
        )
    )
    title = f"A/B test {summary.get('id', '')}"
    plot = sequence_plot(summary.get("looks", []), float(design.get("mde", 0.0)))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{facts}</table>
<h2>Arms</h2>
<table><tr><th>arm</th><th>decisions</th><th>approval rate</th><th>mean PD</th>
<th>labelled</th><th>default rate (approved)</th></tr>{arm_rows}</table>
<h2>Over time</h2><figure><img alt="difference and p-value" src="{plot}"></figure>
<p>The p-value and the confidence sequence stay valid however often they are looked at
(mixture SPRT; see docs/experiments.md for what to conclude and what not).</p>
</body></html>"""
