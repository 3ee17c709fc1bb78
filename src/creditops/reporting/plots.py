"""Plots for the offline model report.

Every function returns a ``data:image/svg+xml;base64,...`` URI ready for an ``<img src>``.
Embedding each SVG as a data URI (rather than inline ``<svg>``) keeps the element ids that
matplotlib generates for clip paths in separate documents, so several plots on one page
cannot clash, and keeps the namespace URLs of the SVG header out of the HTML text.

matplotlib is imported lazily and driven through the object-oriented API with an explicit
Agg canvas: no pyplot, no global backend switch, nothing happens when creditops is imported.
The SVG output is byte-for-byte reproducible: the id hash salt is fixed and the date
metadata is dropped.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score, roc_curve

from creditops.errors import InvalidInputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Colour-blind-safe pair (Okabe & Ito, "Color Universal Design", 2008) plus neutrals.
BLUE = "#0072B2"
ORANGE = "#D55E00"
GREEN = "#009E73"
GREY = "#888888"
FAIRNESS_RATIO = 0.8  # the "four-fifths rule" of the US EEOC Uniform Guidelines (1978)
SVG_HASH_SALT = "creditops-report"
_MARGINS = {"left": 0.13, "right": 0.96, "bottom": 0.12, "top": 0.91}


def _figure(
    width: float = 5.6,
    height: float = 4.0,
    ncols: int = 1,
    margins: Mapping[str, float] | None = None,
) -> tuple[Figure, list[Axes]]:
    """A new figure on its own Agg canvas, independent of any pyplot state.

    Margins are set by hand: constrained layout would more than double the drawing time.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)
    fig.subplots_adjust(**{**_MARGINS, **(margins or {})})
    return fig, list(axes[0])


def _to_data_uri(fig: Figure) -> str:
    import matplotlib

    buffer = io.BytesIO()
    # Fixed salt: the ids of clip paths are then a pure function of the figure.
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASH_SALT, "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/svg+xml;base64,{encoded}"


def _message_plot(title: str, message: str) -> str:
    """A placeholder figure used when a plot cannot be drawn (e.g. one class only)."""
    fig, (ax,) = _figure(height=2.0)
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", color=GREY)
    return _to_data_uri(fig)


def _finite(value: Any) -> float:
    """A table cell as a float; missing or non-numeric cells become NaN."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def _as_binary(y: npt.NDArray[Any], n: int, name: str) -> npt.NDArray[np.int_]:
    labels = np.asarray(y).ravel()
    if labels.shape[0] != n:
        raise InvalidInputError(f"{name} has {labels.shape[0]} values, expected {n}.", field=name)
    if not np.isin(labels, (0, 1)).all():
        raise InvalidInputError(f"{name} must contain only 0 and 1.", field=name)
    return labels.astype(np.int_)


def roc_plot(
    y_true: npt.NDArray[Any],
    pd_candidate: npt.NDArray[np.float64],
    baseline_pd: npt.NDArray[np.float64] | None = None,
    baseline_name: str | None = None,
) -> str:
    """ROC curve of the candidate (and the baseline if given) with the chance diagonal."""
    scores = np.asarray(pd_candidate, dtype=np.float64).ravel()
    y = _as_binary(y_true, scores.shape[0], "y_test")
    if np.unique(y).size < 2:
        return _message_plot("ROC curve", "ROC undefined: the test set has one class only")
    curves = [("candidate", scores, BLUE)]
    if baseline_pd is not None:
        base = np.asarray(baseline_pd, dtype=np.float64).ravel()
        if base.shape[0] != y.shape[0]:
            raise InvalidInputError(
                f"baseline_pd_test has {base.shape[0]} values, expected {y.shape[0]}.",
                field="baseline_pd_test",
            )
        curves.append((baseline_name or "baseline", base, ORANGE))
    fig, (ax,) = _figure(width=5.0, height=4.6)
    for label, values, colour in curves:
        fpr, tpr, _ = roc_curve(y, values)
        auc = float(roc_auc_score(y, values))
        ax.plot(fpr, tpr, color=colour, lw=1.8, label=f"{label} (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], color=GREY, ls="--", lw=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate (goods flagged)")
    ax.set(ylabel="True positive rate (bads caught)", title="ROC curve")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize="small")
    return _to_data_uri(fig)


def calibration_plot(table: Sequence[Mapping[str, float]]) -> str:
    """Mean predicted PD against observed default rate per bin, with the diagonal."""
    predicted = np.array([_finite(r.get("mean_pd")) for r in table], dtype=np.float64)
    observed = np.array([_finite(r.get("observed_default_rate")) for r in table], dtype=np.float64)
    keep = np.isfinite(predicted) & np.isfinite(observed)
    if not keep.any():
        return _message_plot("Calibration", "no calibration bins")
    predicted, observed = predicted[keep], observed[keep]
    top = float(max(predicted.max(), observed.max(), 1e-3)) * 1.05
    fig, (ax,) = _figure(width=5.0, height=4.6)
    ax.plot([0, top], [0, top], color=GREY, ls="--", lw=1, label="perfect calibration")
    ax.plot(predicted, observed, color=BLUE, marker="o", lw=1.5, label="model")
    ax.set(xlim=(0, top), ylim=(0, top), title="Calibration")
    ax.set(xlabel="Mean predicted PD", ylabel="Observed default rate")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize="small")
    return _to_data_uri(fig)


def score_distribution_plot(
    score: npt.NDArray[np.float64], y_true: npt.NDArray[Any], bins: int = 30
) -> str:
    """Overlaid histograms of the score for goods and bads, each normalised to its class.

    Bads are usually a few percent of the sample; showing the share within each class
    keeps both distributions visible on the same axis.
    """
    values = np.asarray(score, dtype=np.float64).ravel()
    y = _as_binary(y_true, values.shape[0], "y_test")
    finite = np.isfinite(values)
    values, y = values[finite], y[finite]
    if values.size == 0:
        return _message_plot("Score distribution", "no finite scores")
    edges = np.histogram_bin_edges(values, bins=bins)
    fig, (ax,) = _figure()
    for label, cls, colour in (("good (0)", 0, BLUE), ("bad (1)", 1, ORANGE)):
        part = values[y == cls]
        if part.size == 0:
            continue
        weights = np.full(part.shape, 1.0 / part.size)
        ax.hist(part, bins=edges.tolist(), weights=weights, alpha=0.55, color=colour, label=label)
    ax.set(xlabel="Score (higher = safer)", ylabel="Share within class")
    ax.set_title("Score distribution by outcome")
    ax.legend(fontsize="small")
    return _to_data_uri(fig)


def gains_plot(table: Sequence[Mapping[str, float]]) -> str:
    """Cumulative bad capture against cumulative population share (riskiest first)."""
    share = [_finite(r.get("cumulative_count_share")) for r in table]
    capture = [_finite(r.get("cumulative_bad_capture")) for r in table]
    x = np.array([0.0, *share], dtype=np.float64)
    y = np.array([0.0, *capture], dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2:
        return _message_plot("Gains", "no gains table")
    counts = sum(_finite(r.get("count")) for r in table)
    bads = sum(_finite(r.get("bads")) for r in table)
    fig, (ax,) = _figure(width=5.0, height=4.6)
    if counts > 0 and math.isfinite(bads):
        rate = bads / counts
        ax.plot([0, rate, 1], [0, 1, 1], color=GREEN, ls=":", lw=1.2, label="perfect model")
    ax.plot([0, 1], [0, 1], color=GREY, ls="--", lw=1, label="random")
    ax.plot(x[keep], y[keep], color=BLUE, marker="o", ms=3, lw=1.8, label="model")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), title="Gains (cumulative bad capture)")
    ax.set(xlabel="Cumulative share of applicants", ylabel="Cumulative share of bads captured")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize="small")
    return _to_data_uri(fig)


def _reference_rate(attribute: Mapping[str, Any]) -> float:
    reference = attribute.get("reference_group")
    for group in attribute.get("groups") or ():
        if str(group.get("group")) == str(reference):
            return _finite(group.get("approval_rate"))
    return math.nan


def fairness_plot(fairness: Sequence[Mapping[str, Any]]) -> str | None:
    """Approval rate per group, one panel per protected attribute.

    The dashed line is 0.8 x the reference group's approval rate: a group below it fails the
    four-fifths rule of thumb for disparate impact.
    """
    attributes = [a for a in fairness if a.get("groups")]
    if not attributes:
        return None
    ncols = len(attributes)
    rotate = any(len(a["groups"]) > 3 for a in attributes)
    margins = {"left": 0.5 / (3.2 * ncols), "bottom": 0.24 if rotate else 0.1, "top": 0.84}
    margins["wspace"] = 0.25
    fig, axes = _figure(width=max(5.6, 3.2 * ncols), height=3.8, ncols=ncols, margins=margins)
    for ax, attribute in zip(axes, attributes, strict=True):
        groups = list(attribute["groups"])
        names = [str(g.get("group")) for g in groups]
        rates = [_finite(g.get("approval_rate")) for g in groups]
        reference = str(attribute.get("reference_group"))
        colours = [ORANGE if n == reference else BLUE for n in names]
        positions = np.arange(len(names))
        ax.bar(positions, np.nan_to_num(rates), color=colours)
        ref_rate = _reference_rate(attribute)
        if math.isfinite(ref_rate):
            floor = FAIRNESS_RATIO * ref_rate
            ax.axhline(floor, color=GREY, ls="--", lw=1.2, label=f"0.8 x reference = {floor:.2f}")
            ax.legend(loc="upper right", fontsize="x-small")
        ax.set_xticks(
            positions, names, rotation=30 if rotate else 0, ha="right" if rotate else "center"
        )
        ax.set(ylim=(0, 1.1), title=str(attribute.get("attribute")))
    axes[0].set_ylabel("Approval rate")
    fig.suptitle("Approval rate by group (reference group in orange)")
    return _to_data_uri(fig)


def feature_importance_plot(importance: Sequence[Mapping[str, Any]], top: int = 20) -> str | None:
    """Horizontal bars of the ``top`` most important features, largest at the top."""
    rows = sorted(
        ((str(r.get("feature")), _finite(r.get("importance"))) for r in importance),
        key=lambda item: -item[1] if math.isfinite(item[1]) else math.inf,
    )[:top]
    if not rows:
        return None
    names = [name for name, _ in reversed(rows)]
    values = np.nan_to_num([value for _, value in reversed(rows)])
    height = max(2.0, 0.28 * len(rows) + 1.0)
    longest = max(len(name) for name in names)
    margins = {
        "left": min(0.55, 0.04 + 0.0125 * longest),
        "bottom": 0.5 / height,
        "top": 1 - 0.35 / height,
    }
    fig, (ax,) = _figure(width=6.0, height=height, margins=margins)
    ax.barh(np.arange(len(names)), values, color=BLUE)
    ax.set_yticks(np.arange(len(names)), names, fontsize="small")
    ax.set(xlabel="Importance", title=f"Feature importance (top {len(rows)})")
    return _to_data_uri(fig)


def sequence_plot(looks: Sequence[Mapping[str, Any]], mde: float) -> str:
    """An experiment over its looks: the observed difference (treatment minus control) with
    its confidence sequence, and the always-valid p-value."""
    fig, (left, right) = _figure(width=10.0, height=3.8, ncols=2, margins={"wspace": 0.3})
    points = [(i, look) for i, look in enumerate(looks) if look.get("lower") is not None]
    if not points:
        return _message_plot("Difference over time", "no look with enough data yet")
    x = [i for i, _ in points]
    left.plot(x, [_finite(p["estimate"]) for _, p in points], color="#1f77b4", label="difference")
    left.fill_between(
        x,
        [_finite(p["lower"]) for _, p in points],
        [_finite(p["upper"]) for _, p in points],
        color="#1f77b4",
        alpha=0.2,
        label="confidence sequence",
    )
    for edge in (-mde, 0.0, mde):
        left.axhline(edge, color=GREY, lw=0.8, ls="--" if edge else "-")
    left.set_title("Treatment minus control")
    left.set_xlabel("look")
    left.legend(loc="best", fontsize=8)
    right.plot(x, [_finite(p["p_value"]) for _, p in points], color="#d62728")
    right.set_yscale("log")
    right.set_title("Always-valid p-value")
    right.set_xlabel("look")
    return _to_data_uri(fig)
