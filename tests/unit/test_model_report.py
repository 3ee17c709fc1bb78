"""The offline HTML model report: content, self-containment, escaping, determinism."""

from __future__ import annotations

import base64
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fairlearn.metrics import MetricFrame, demographic_parity_ratio, selection_rate
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from creditops.errors import InvalidInputError
from creditops.reporting import plots
from creditops.reporting.model_report import (
    ModelReportData,
    fairness_view,
    fmt_count,
    fmt_label,
    fmt_num,
    fmt_pct,
    fmt_pvalue,
    iv_strength,
    metric_rows,
    render_model_report,
    render_model_report_html,
)

pytestmark = pytest.mark.unit

SVG_URI = re.compile(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"')


# ----------------------------------------------------------------------------- fixtures


def _calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    order = np.argsort(p, kind="stable")
    return [
        {
            "bin": float(i),
            "count": float(part.size),
            "mean_pd": float(p[part].mean()),
            "observed_default_rate": float(y[part].mean()),
        }
        for i, part in enumerate(np.array_split(order, bins))
    ]


def _gains_table(y: np.ndarray, score: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    order = np.argsort(score, kind="stable")  # riskiest (lowest score) first
    rows, seen, caught = [], 0, 0
    for i, part in enumerate(np.array_split(order, bins)):
        seen += part.size
        caught += int(y[part].sum())
        rows.append(
            {
                "bin": float(i),
                "score_min": float(score[part].min()),
                "score_max": float(score[part].max()),
                "count": float(part.size),
                "bads": float(y[part].sum()),
                "bad_rate": float(y[part].mean()),
                "cumulative_bad_capture": caught / float(y.sum()),
                "cumulative_count_share": seen / float(y.size),
            }
        )
    return rows


def _fairness(groups: np.ndarray, approved: np.ndarray, y: np.ndarray, name: str) -> dict[str, Any]:
    labels = sorted(set(groups.tolist()))
    rows = []
    for g in labels:
        mask = groups == g
        good = mask & (y == 0)
        rows.append(
            {
                "group": g,
                "count": int(mask.sum()),
                "approval_rate": float(approved[mask].mean()),
                "true_positive_rate": float(approved[good].mean()) if good.any() else None,
                "default_rate": float(y[mask].mean()),
            }
        )
    reference = max(rows, key=lambda r: r["approval_rate"])["group"]
    return {
        "attribute": name,
        "reference_group": reference,
        "demographic_parity_ratio": float(
            demographic_parity_ratio(y, approved, sensitive_features=groups)
        ),
        "equal_opportunity_ratio": None,
        "disparate_impact_ratio": 0.91,
        "fairness_score": 0.88,
        "groups": rows,
    }


def make_data(seed: int = 7, n: int = 600, **overrides: Any) -> ModelReportData:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=n)
    pd_test = 1.0 / (1.0 + np.exp(-(latent - 2.0)))
    y = (rng.random(n) < pd_test).astype(np.int_)
    baseline_pd = 1.0 / (1.0 + np.exp(-(0.6 * latent + 0.8 * rng.normal(size=n) - 2.0)))
    score = 600.0 - 20.0 / math.log(2) * np.log(pd_test / (1 - pd_test) * 50)
    approved = score >= np.quantile(score, 0.3)
    region = rng.choice(np.array(["north", "south", "Zürich-West"]), n, p=[0.5, 0.3, 0.2])
    region[(region == "Zürich-West") & (rng.random(n) < 0.5)] = "north"
    # make one group clearly disadvantaged so that the four-fifths rule flags it
    approved = approved & ~((region == "south") & (rng.random(n) < 0.45))
    sex = rng.choice(np.array(["F", "M"]), n)

    def metrics(p: np.ndarray) -> dict[str, float]:
        auc = float(roc_auc_score(y, p))
        return {
            "auc": auc,
            "auc_lower": auc - 0.03,
            "auc_upper": auc + 0.03,
            "gini": 2 * auc - 1,
            "ks": 0.4123,
            "brier": float(brier_score_loss(y, p)),
            "log_loss": float(log_loss(y, p)),
            "accuracy": 0.8,
            "precision": math.nan,
        }

    fields: dict[str, Any] = {
        "title": "Evaluation report: pd-model v3",
        "model_name": "pd-model",
        "version": "3",
        "generated_at": "2025-01-02T03:04:05+00:00",
        "algorithm": "lightgbm",
        "lineage": {"data_sha256": "a" * 64, "git_commit": "0123abcd"},
        "metrics": metrics(pd_test),
        "y_test": y,
        "pd_test": pd_test,
        "score_test": score,
        "calibration_table": _calibration_table(y, pd_test),
        "gains_table": _gains_table(y, score),
        "fairness": [
            _fairness(region, approved, y, "region"),
            _fairness(sex, approved, y, "sex"),
        ],
        "baseline_name": "logistic scorecard",
        "baseline_metrics": metrics(baseline_pd),
        "baseline_pd_test": baseline_pd,
        "uncalibrated_metrics": {"brier": 0.2, "log_loss": 0.7, "auc": 0.7},
        "iv_table": [
            {
                "feature": "utilisation",
                "iv": 0.21,
                "n_bins": 6,
                "used": True,
                "leakage_suspect": False,
            },
            {
                "feature": "days_in_collection",
                "iv": 1.7,
                "n_bins": 4,
                "used": False,
                "leakage_suspect": True,
            },
        ],
        "feature_importance": [
            {"feature": f"feature_{i:02d}", "importance": 1.0 / (i + 1)} for i in range(25)
        ],
        "monotonicity": [
            {"feature": "utilisation", "direction": "increasing", "passed": True, "violations": 0},
            {"feature": "income", "direction": "decreasing", "passed": False, "violations": 2},
        ],
        "gate": {
            "passed": True,
            "profile": "default",
            "checks": [
                {"metric": "auc", "value": 0.8, "threshold": 0.7, "kind": "min", "passed": True},
                {"metric": "brier", "value": 0.1, "threshold": 0.2, "kind": "max", "passed": True},
            ],
        },
        "champion": {
            "version": "2",
            "auc_champion": 0.79,
            "auc_candidate": 0.81,
            "difference": 0.02,
            "p_value": 0.9731,
            "passed": True,
            "tolerance": 0.01,
        },
        "notes": ("12 rows dropped: missing target",),
    }
    fields.update(overrides)
    return ModelReportData(**fields)


MINIMAL: dict[str, Any] = {
    "baseline_name": None,
    "baseline_metrics": None,
    "baseline_pd_test": None,
    "uncalibrated_metrics": None,
    "iv_table": None,
    "feature_importance": None,
    "monotonicity": None,
    "gate": None,
    "champion": None,
    "notes": (),
}


@pytest.fixture(scope="module")
def full_data() -> ModelReportData:
    return make_data()


@pytest.fixture(scope="module")
def full_html(full_data: ModelReportData, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("report") / "nested" / "report.html"
    returned = render_model_report(full_data, path)
    assert returned == path
    assert path.is_file()
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def minimal_html() -> str:
    return render_model_report_html(make_data(**MINIMAL))


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _svgs(html: str) -> list[str]:
    return [base64.b64decode(m).decode("utf-8") for m in SVG_URI.findall(html)]


def _plain_text(svg: str) -> str:
    return " ".join(t.text or "" for t in ET.fromstring(svg).iter() if t.tag.endswith("text"))


# ----------------------------------------------------------------------------- structure


@pytest.mark.parametrize("which", ["full", "minimal"])
def test_report_is_html_with_embedded_valid_svgs(
    which: str, full_html: str, minimal_html: str
) -> None:
    html = full_html if which == "full" else minimal_html
    assert html.startswith("<!DOCTYPE html>")
    assert html.rstrip().endswith("</html>")
    parser = _TagCollector()
    parser.feed(html)
    tags = [t for t, _ in parser.tags]
    for required in ("html", "head", "meta", "title", "style", "body", "table"):
        assert required in tags
    svgs = _svgs(html)
    assert len(svgs) >= 5
    assert len(svgs) == (6 if which == "full" else 5)
    for svg in svgs:
        root = ET.fromstring(svg)  # well-formed XML
        assert root.tag == "{http://www.w3.org/2000/svg}svg"


@pytest.mark.parametrize("which", ["full", "minimal"])
def test_report_has_no_network_references(which: str, full_html: str, minimal_html: str) -> None:
    html = full_html if which == "full" else minimal_html
    assert "http://" not in html
    assert "https://" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()
    assert "@import" not in html and "url(" not in html
    parser = _TagCollector()
    parser.feed(html)
    for _tag, attrs in parser.tags:
        for attr in ("src", "href"):
            if attrs.get(attr) is not None:
                assert str(attrs[attr]).startswith(("data:", "#"))
    for svg in _svgs(html):
        # inside the SVGs, only internal references (clip paths, defs)
        for ref in re.findall(r'href="([^"]*)"', svg):
            assert ref.startswith("#")
        assert "<script" not in svg and "<image" not in svg


# ----------------------------------------------------------------------------- content


def test_metrics_baseline_uplift_and_lineage_appear(
    full_data: ModelReportData, full_html: str
) -> None:
    assert full_data.baseline_metrics is not None
    for key in ("auc", "gini", "brier", "log_loss"):
        assert fmt_num(full_data.metrics[key]) in full_html
        assert fmt_num(full_data.baseline_metrics[key]) in full_html
        uplift = full_data.metrics[key] - full_data.baseline_metrics[key]
        assert f"{uplift:+.4f}" in full_html
    assert "logistic scorecard" in full_html
    assert "Uplift" in full_html
    assert "n/a" in full_html  # NaN precision
    assert "a" * 64 in full_html and "0123abcd" in full_html
    assert "lightgbm" in full_html and "2025-01-02T03:04:05+00:00" in full_html
    assert "12 rows dropped: missing target" in full_html


def test_fairness_groups_iv_monotonicity_champion_appear(full_html: str) -> None:
    for group in ("north", "south", "Zürich-West", "F", "M", "region", "sex"):
        assert f">{group}" in full_html
    assert re.search(r'<tr class="fail">\s*<td>south</td>', full_html)
    assert re.search(r'<tr class="ref">\s*<td>north \(reference\)</td>', full_html)
    assert re.search(r'<tr class="">\s*<td>Zürich-West</td>', full_html)
    assert "days_in_collection" in full_html
    assert re.search(r'<tr class="fail">\s*<td>days_in_collection</td>', full_html)
    assert "suspicious" in full_html
    assert re.search(r'<tr class="fail">\s*<td>income</td><td>decreasing</td>', full_html)
    assert "Champion / challenger" in full_html and "0.9731" in full_html
    assert "PASS" in full_html and "FAIL</strong>" not in full_html


def test_minimal_report_omits_optional_sections(minimal_html: str) -> None:
    for absent in (
        "Uplift",
        'id="gate"',
        'id="iv"',
        'id="monotonicity"',
        'id="champion"',
        'id="notes"',
        "Effect of calibration",
        "Feature importance",
    ):
        assert absent not in minimal_html
    assert 'id="fairness"' in minimal_html and "Headline metrics" in minimal_html


def test_roc_legend_auc_matches_sklearn(full_data: ModelReportData, full_html: str) -> None:
    assert full_data.baseline_pd_test is not None
    roc_text = _plain_text(_svgs(full_html)[0])
    expected = roc_auc_score(full_data.y_test, full_data.pd_test)
    expected_base = roc_auc_score(full_data.y_test, full_data.baseline_pd_test)
    assert f"candidate (AUC = {expected:.3f})" in roc_text
    assert f"logistic scorecard (AUC = {expected_base:.3f})" in roc_text


def test_feature_importance_plot_keeps_top_20(full_html: str) -> None:
    text = _plain_text(_svgs(full_html)[-1])
    assert "top 20" in text
    assert "feature_00" in text and "feature_19" in text
    assert "feature_20" not in text and "feature_24" not in text


def test_fairness_ratio_matches_fairlearn_and_flags_four_fifths(
    full_data: ModelReportData,
) -> None:
    rng = np.random.default_rng(3)
    groups = rng.choice(np.array(["a", "b", "c"]), 500)
    approved = rng.random(500) < np.where(groups == "c", 0.4, 0.75)
    y = (rng.random(500) < 0.1).astype(int)
    view = fairness_view([_fairness(groups, approved, y, "g")])[0]
    rates = MetricFrame(
        metrics=selection_rate, y_true=y, y_pred=approved, sensitive_features=groups
    ).by_group
    # reference = most-approved group, so the smallest ratio is fairlearn's DP ratio
    ratios = {g["group"]: g["ratio"] for g in view["groups"]}
    assert min(ratios.values()) == pytest.approx(
        demographic_parity_ratio(y, approved, sensitive_features=groups)
    )
    reference_rate = float(rates.max())
    for g in view["groups"]:
        assert g["ratio"] == pytest.approx(float(rates[g["group"]]) / reference_rate)
        assert g["flagged"] == (float(rates[g["group"]]) < 0.8 * reference_rate)
    assert [g["group"] for g in view["groups"] if g["flagged"]] == ["c"]


# ----------------------------------------------------------------------------- escaping


def test_untrusted_strings_are_escaped(tmp_path: Path) -> None:
    evil = "<script>alert('x')</script>"
    data = make_data(
        **{**MINIMAL, "notes": (evil,)},
        model_name=evil,
        title=f"Report {evil}",
        lineage={"git_commit": '"><img src=x onerror=alert(1)>'},
    )
    html = render_model_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


# ----------------------------------------------------------------------------- gate


def test_failing_gate_shows_fail_and_failed_metrics() -> None:
    gate = {
        "passed": False,
        "profile": "strict",
        "checks": [
            {
                "metric": "auc",
                "value": 0.81,
                "threshold": 0.7,
                "kind": "min",
                "passed": True,
                "category": "performance",
            },
            {
                "metric": "ks_statistic",
                "value": 0.12,
                "threshold": 0.3,
                "kind": "min",
                "passed": False,
                "category": "performance",
            },
            {
                "metric": "disparate_impact_ratio",
                "value": None,
                "threshold": 0.8,
                "kind": "min",
                "passed": False,
                "category": "fairness",
                "attribute": "region",
            },
        ],
    }
    html = render_model_report_html(make_data(**{**MINIMAL, "gate": gate}))
    banner = html[html.index('<div class="banner') : html.index("</div>")]
    assert 'class="banner fail"' in banner
    assert "<strong>FAIL</strong>" in banner
    assert "1 of 3 checks passed" in banner
    assert "ks_statistic" in banner and "required ≥ 0.3000" in banner
    assert "Disparate impact ratio (vs reference group), region:" in banner and "n/a" in banner
    assert "AUC (area under ROC):" not in banner  # passing checks are not listed as failures
    assert re.search(r'<tr class="fail">\s*<td>Performance</td><td>ks_statistic</td>', html)
    assert re.search(r'<tr class="">\s*<td>Performance</td><td>AUC \(area under ROC\)</td>', html)


def test_passing_gate_shows_pass(full_html: str) -> None:
    assert 'class="banner pass"' in full_html
    assert "<strong>PASS</strong>" in full_html
    assert "2 of 2 checks passed" in full_html


# ----------------------------------------------------------------------------- determinism


def test_same_input_gives_identical_bytes(full_data: ModelReportData, full_html: str) -> None:
    # a second render in the same process: without a fixed SVG hash salt, matplotlib would
    # draw fresh random ids for the clip paths and the bytes would differ
    again = render_model_report_html(full_data)
    assert again.encode("utf-8") == full_html.encode("utf-8")


def test_svg_has_no_date_metadata(full_html: str) -> None:
    for svg in _svgs(full_html):
        assert "<dc:date>" not in svg


# ----------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("key", "model", "baseline", "better"),
    [
        ("auc", 0.80, 0.75, True),
        ("auc", 0.70, 0.75, False),
        ("brier", 0.08, 0.10, True),
        ("log_loss", 0.40, 0.30, False),
        ("ks", 0.3, 0.3, None),
        ("gini", math.nan, 0.3, None),
    ],
    ids=["auc-up", "auc-down", "brier-down", "logloss-up", "tie", "nan"],
)
def test_uplift_direction(key: str, model: float, baseline: float, better: bool | None) -> None:
    (row,) = metric_rows({key: model}, {key: baseline})
    assert row["better"] is better
    if math.isnan(model):
        assert row["uplift"] is None
    else:
        assert row["uplift"] == pytest.approx(model - baseline)


def test_metric_rows_order_known_first_then_alphabetical() -> None:
    rows = metric_rows({"zeta": 1.0, "f1": 0.5, "auc": 0.8, "alpha": 2.0, "brier": 0.1}, None)
    assert [r["key"] for r in rows] == ["auc", "brier", "f1", "alpha", "zeta"]
    assert "uplift" not in rows[0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "unpredictive"),
        (0.019, "unpredictive"),
        (0.05, "weak"),
        (0.2, "medium"),
        (0.45, "strong"),
        (0.5, "suspicious"),
        (None, "n/a"),
        (math.nan, "n/a"),
    ],
    ids=str,
)
def test_iv_strength_bands(value: float | None, expected: str) -> None:
    assert iv_strength(value) == expected


@pytest.mark.parametrize(
    ("func", "value", "expected"),
    [
        (fmt_num, 0.123456, "0.1235"),
        (fmt_num, math.inf, "n/a"),
        (fmt_num, "abc", "n/a"),
        (fmt_pct, 0.05, "5.0%"),
        (fmt_pct, None, "n/a"),
        (fmt_pvalue, 0.00001, "< 0.0001"),
        (fmt_pvalue, 0.04321, "0.0432"),
        (fmt_label, 3.0, "3"),
        (fmt_label, "(600, 650]", "(600, 650]"),
        (fmt_count, 12345.0, "12,345"),
    ],
    ids=[
        "num",
        "num-inf",
        "num-str",
        "pct",
        "pct-none",
        "p-tiny",
        "p",
        "label-int",
        "label-str",
        "count",
    ],
)
def test_formatters(func: Any, value: Any, expected: str) -> None:
    assert func(value) == expected


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "overrides",
    [
        {"pd_test": np.full(10, 0.1)},
        {"score_test": np.full(10, 600.0)},
        {
            "y_test": np.array([], dtype=np.int_),
            "pd_test": np.array([]),
            "score_test": np.array([]),
        },
    ],
    ids=["pd-length", "score-length", "empty"],
)
def test_inconsistent_inputs_are_rejected(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        render_model_report_html(make_data(**MINIMAL, **overrides))


def test_non_binary_target_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="only 0 and 1"):
        plots.roc_plot(np.array([0, 1, 2]), np.array([0.1, 0.5, 0.9]))


def test_one_class_test_set_still_renders() -> None:
    n = 50
    data = make_data(
        **MINIMAL,
        y_test=np.zeros(n, dtype=np.int_),
        pd_test=np.linspace(0.01, 0.2, n),
        score_test=np.linspace(500, 700, n),
    )
    html = render_model_report_html(data)
    assert "ROC undefined" in _plain_text(_svgs(html)[0])


def test_unwritable_path_raises_invalid_input(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidInputError, match="Cannot write the report"):
        render_model_report(make_data(**MINIMAL), blocker / "report.html")
