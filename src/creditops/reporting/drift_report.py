"""Self-contained HTML drift report: per-feature distributions (reference vs current), the
tests and their results. Opens offline: plots are SVG data URIs, no external resources."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from creditops.domain.windows import utc_text
from creditops.errors import InvalidInputError

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2933}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #d9e2ec;padding:.25rem .6rem;
text-align:right}th{background:#f0f4f8}td:first-child,th:first-child{text-align:left}
.drifted{background:#ffe3e3}.banner{padding:.6rem 1rem;border-radius:6px;font-weight:600}
.ok{background:#e3f9e5}.warning{background:#fff3c4}.critical{background:#ffe3e3}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1rem}
figure{margin:0}figcaption{font-size:.85rem;color:#52606d}
"""


def _bar_plot(feature: str, bins: Sequence[Mapping[str, Any]]) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [str(b["bin"]) for b in bins]
    ref = [float(b["reference"]) for b in bins]
    cur = [float(b["current"]) for b in bins]
    figure = Figure(figsize=(4.4, 2.6))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    positions = range(len(labels))
    ax.bar([p - 0.2 for p in positions], ref, width=0.4, label="reference", color="#7b93db")
    ax.bar([p + 0.2 for p in positions], cur, width=0.4, label="current", color="#e8833a")
    ax.set_xticks(list(positions))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("share", fontsize=7)
    ax.set_title(feature, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7)
    figure.subplots_adjust(bottom=0.38, left=0.14, right=0.98, top=0.88)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    encoded = base64.b64encode(buffer.getvalue().encode()).decode()
    return f"data:image/svg+xml;base64,{encoded}"


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _share(value: object) -> str:
    """The drifted share as the CLI prints it (one decimal of a percent)."""
    return f"{value:.1%}" if isinstance(value, float) else _fmt(value)


def _scope_table(scope: Mapping[str, object] | None) -> str:
    generated = utc_text(datetime.now(UTC).replace(microsecond=0))
    items = [*(scope or {}).items(), ("generated", generated)]
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in items
    )
    return f'<table class="scope">{cells}</table>'


def render_drift_report(
    result: Mapping[str, Any],
    path: Path,
    *,
    title: str,
    scope: Mapping[str, object] | None = None,
) -> Path:
    """Write the report of a data-drift result (``DriftResult.to_dict()``).

    ``scope`` names what was compared (model, version, window, input files); it is shown
    at the top with the generation time, so a printed report says what it covers.
    """
    if "features" not in result:
        raise InvalidInputError("not a drift result: it has no features", field="result")
    level = str(result.get("level", "ok"))
    rows = []
    figures = []
    for feature in result["features"]:
        flevel = str(feature.get("level", "ok"))
        cls = f' class="{html.escape(flevel)}"' if flevel != "ok" else ""
        rows.append(
            f"<tr{cls}><td>{html.escape(str(feature['feature']))}</td>"
            f"<td>{_fmt(feature.get('method'))}</td><td>{_fmt(feature.get('statistic'))}</td>"
            f"<td>{_fmt(feature.get('p_value'))}</td>"
            f"<td>{_fmt(feature.get('p_value_adjusted'))}</td>"
            f"<td>{_fmt(feature.get('effect_size'))}</td><td>{_fmt(feature.get('psi'))}</td>"
            f"<td>{html.escape(flevel)}</td>"
            f'<td style="text-align:left">{_fmt(feature.get("verdict"))}</td></tr>'
        )
        bins = feature.get("bins") or []
        if bins:
            figures.append(
                f'<figure><img alt="{html.escape(str(feature["feature"]))}" '
                f'src="{_bar_plot(str(feature["feature"]), bins)}"><figcaption>'
                f"{_fmt(feature.get('verdict'))}"
                "</figcaption></figure>"
            )
    prediction = result.get("prediction_drift")
    pred_html = ""
    if isinstance(prediction, Mapping):
        pred_html = (
            "<h2>Prediction drift</h2><table>"
            + "".join(
                f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>"
                for k, v in prediction.items()
                if not isinstance(v, (list, dict))
            )
            + "</table>"
        )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
{_scope_table(scope)}
<p class="banner {html.escape(level)}">Level: {html.escape(level.upper())} &mdash; drift score
{_fmt(result.get("drift_score"))}, drifted share {_share(result.get("drifted_share"))}
({_fmt(result.get("n_drifted"))} features); mode {_fmt(result.get("mode"))};
reference rows {_fmt(result.get("n_reference"))}, current rows {_fmt(result.get("n_current"))};
configuration {_fmt(str(result.get("config_fingerprint", ""))[:12])}</p>
<h2>Tests per feature</h2>
<table><tr><th>feature</th><th>method</th><th>statistic</th><th>p</th><th>p (BH adj.)</th>
<th>effect size</th><th>PSI</th><th>level</th><th>verdict (test and threshold)</th></tr>
{"".join(rows)}</table>
{pred_html}
<h2>Distributions: reference vs current</h2><div class="grid">{"".join(figures)}</div>
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
