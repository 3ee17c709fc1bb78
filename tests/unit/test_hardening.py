"""Regression tests of the hardening findings that need no server (issue 11): each fails on
the code before the fix. The server-side ones are in tests/api/test_hardening.py and
tests/integration/test_hardening_server.py."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from creditops.alerts.senders import DeliveryError, WebhookSender
from creditops.alerts.settings import AlertSettings, EmailSettings, forbidden_target
from creditops.domain.windows import MAX_YEAR, MIN_YEAR, parse_since
from creditops.errors import ConfigError, InvalidInputError
from creditops.modeling.gate import GateProfile, load_gate_profile
from creditops.services.archive import neutralise_formula

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

# value, why it must be refused (each raised OverflowError or ValueError before the fix)
BAD_SINCE = {
    "days past a century": "999999d",
    "too many digits": "999999999999d",
    "superscript digit": "²h",
    "arabic-indic digits": "٣h",
    "year 1": "0001-01-01T00:00:00",
    "year 9999 with an offset": "9999-12-31T23:59:59-14:00",
    "empty": "",
    "unit only": "h",
    "negative": "-5d",
}


@pytest.mark.parametrize("value", BAD_SINCE.values(), ids=BAD_SINCE)
def test_bad_since_is_an_input_error_naming_the_field(value: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_since(value, now=NOW)
    assert caught.value.field == "since"


GOOD_SINCE = {"24h": 24 * 3600, "7d": 7 * 86400, "30m": 1800, "2w": 14 * 86400}


@pytest.mark.parametrize(("value", "seconds"), GOOD_SINCE.items(), ids=GOOD_SINCE)
def test_durations_count_back_from_now(value: str, seconds: int) -> None:
    assert (NOW - parse_since(value, now=NOW)).total_seconds() == seconds


def test_iso_times_are_utc() -> None:
    assert parse_since("2026-11-01", now=NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T02:00:00+02:00", now=NOW) == datetime(2026, 11, 1, tzinfo=UTC)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_is_refused_cleanly(value: str) -> None:
    """The promise behind the 5xx findings: whatever the text, either a time the stores can
    hold or an InvalidInputError; never another exception."""
    try:
        at = parse_since(value, now=NOW)
    except InvalidInputError as exc:
        assert exc.field == "since"
    else:
        assert at.tzinfo is not None and MIN_YEAR - 1 <= at.year <= MAX_YEAR


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10**15), st.sampled_from("mhdw"))
def test_any_duration_parses_or_is_refused_cleanly(amount: int, unit: str) -> None:
    try:
        at = parse_since(f"{amount}{unit}", now=NOW)
    except InvalidInputError:
        return
    assert at <= NOW and at.year >= 1900


# -- alert settings: webhook targets and mail headers ------------------------------------------
TARGETS = {
    "aws metadata": ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
    "gcp metadata": ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata"),
    "link-local": ("http://169.254.10.20/hook", "link-local"),
    "ipv6 link-local": ("http://[fe80::1]/hook", "link-local"),
    "unspecified": ("http://0.0.0.0:8080/hook", "unspecified"),
}


@pytest.mark.parametrize(("url", "why"), TARGETS.values(), ids=TARGETS)
def test_webhooks_to_metadata_and_link_local_are_refused(url: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        AlertSettings(channels=["webhook"], webhook_url=url)
    allowed = AlertSettings(channels=["webhook"], webhook_url=url, allow_private_targets=True)
    assert allowed.webhook_url is not None
    with pytest.raises(DeliveryError, match=f"refused, it points at .*{why}"):
        WebhookSender(url)._check_target()  # also at send time, before any connection


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "10.0.0.7", "192.168.1.2", "hooks.slack.com"])
def test_loopback_private_and_public_receivers_stay_allowed(host: str) -> None:
    assert forbidden_target(host) is None


@pytest.mark.parametrize("field", ["from_addr", "to_addrs"], ids=["from_addr", "to_addrs"])
def test_line_breaks_in_mail_addresses_are_refused(field: str) -> None:
    injected = "ops@bank.test\r\nBcc: everyone@bank.test"
    value: object = injected if field == "from_addr" else [injected]
    with pytest.raises(ValidationError, match="line breaks"):
        EmailSettings(host="smtp.bank.test", **{field: value})


# -- gate profile names ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../x", "..", "a/b", "", "x" * 65])
def test_gate_profile_names_cannot_be_paths(name: str) -> None:
    with pytest.raises(ValidationError):
        GateProfile(name=name)


def test_a_profile_file_with_a_path_as_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("name: ../../outside\n")
    with pytest.raises(ConfigError, match="name"):
        load_gate_profile(str(path))


# -- CSV export cells -----------------------------------------------------------------------
CELLS = {
    "formula": ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
    "plus": ("+1+1", "'+1+1"),
    "minus text": ("-2+3", "'-2+3"),
    "at": ("@SUM(A1)", "'@SUM(A1)"),
    "tab": ("\tcmd", "'\tcmd"),
    "carriage return": ("\rcmd", "'\rcmd"),
    "plain text": ("app-1", "app-1"),
    "negative number": (-2.5, -2.5),
    "missing": (None, None),
}


@pytest.mark.parametrize(("cell", "written"), CELLS.values(), ids=CELLS)
def test_csv_cells_that_would_run_as_formulas_are_neutralised(
    cell: object, written: object
) -> None:
    out = neutralise_formula(cell)
    assert out == written or (isinstance(out, float) and math.isnan(out) and written is None)


def test_fairness_groups_are_the_training_categories() -> None:
    """A caller sending made-up values in a protected attribute cannot mint new group labels
    (they reached Prometheus as label values): unseen values count as 'other'."""
    import numpy as np
    import pandas as pd

    from creditops.features.spec import parse_spec
    from creditops.monitoring.fairness import DecisionWindow, FairnessConfig, fairness_in_production
    from tests.factories import synthetic_spec

    spec = parse_spec(synthetic_spec())
    sexes = ["F", "M"] * 50 + [f"made-up-{i}" for i in range(40)]
    window = DecisionWindow(
        inputs=pd.DataFrame({"sex": sexes, "age": [30] * len(sexes)}),
        approved=np.arange(len(sexes)) % 3 != 0,
        defaulted=[None] * len(sexes),
    )
    known = FairnessConfig(known_groups={"sex": frozenset({"F", "M"})})
    result = fairness_in_production(window, None, spec, known)
    sex = next(a for a in result["attributes"] if a["attribute"] == "sex")
    assert {g["group"] for g in sex["groups"]} == {"F", "M", "other"}
    unbounded = fairness_in_production(window, None, spec, FairnessConfig())
    sex = next(a for a in unbounded["attributes"] if a["attribute"] == "sex")
    assert len(sex["groups"]) == 42  # what the gauges exported before
