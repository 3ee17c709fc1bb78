"""The drift report says what it covers and gives each feature one verdict (issue 15)."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from creditops.monitoring.drift.exact import data_drift_exact
from creditops.reporting.drift_report import render_drift_report

pytestmark = pytest.mark.unit


def test_report_names_its_scope_and_one_verdict_per_feature(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"a": rng.normal(size=3000), "b": rng.normal(size=3000)})
    cur = pd.DataFrame({"a": rng.normal(size=3000) + 1.0, "b": rng.normal(size=3000)})
    result = data_drift_exact(ref, cur, {"a": "numeric", "b": "numeric"}).to_dict()
    scope = {"model": "taiwan", "version": "7", "window": "2026-12-01T00:00:00Z to now"}
    before = datetime.now(UTC).replace(microsecond=0)
    page = render_drift_report(result, tmp_path / "r.html", title="t", scope=scope).read_text()
    for key, value in scope.items():
        assert f"<th>{key}</th><td>{value}</td>" in page
    stamp = re.search(r"<th>generated</th><td>([0-9T:\-]+Z)</td>", page)
    assert stamp and datetime.fromisoformat(stamp[1]) >= before
    # the drifted share as the CLI prints it: one decimal of a percent
    assert f"drifted share {result['drifted_share']:.1%}" in page
    captions = [html.unescape(c) for c in re.findall(r"<figcaption>(.*?)</figcaption>", page)]
    by_feature = {f["feature"]: f for f in result["features"]}
    assert captions == [by_feature[n]["verdict"] for n in "ab"]
    assert by_feature["a"]["level"] == "critical" and captions[0].startswith("critical: ")
    assert "severity" not in page and "stable" not in page
