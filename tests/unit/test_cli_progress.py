"""The CLI's progress lines: a step is reported done when the next one starts, and a detail
(a tuning trial) is printed within its step without ending it."""

from __future__ import annotations

import pytest

from creditops import cli_support
from creditops.modeling import training


def test_the_cli_and_the_trainer_agree_on_the_detail_prefix() -> None:
    # cli_support repeats the constant so that the CLI starts without importing LightGBM.
    assert cli_support.DETAIL_PREFIX == training.DETAIL_PREFIX


def test_details_are_printed_within_their_step(capsys: pytest.CaptureFixture[str]) -> None:
    detail = training.DETAIL_PREFIX
    with cli_support.progress(True) as say:
        say("tuning LightGBM with Optuna (2 trials max)")
        say(f"{detail}trial 1/2: CV AUC 0.7000, best so far 0.7000")
        say(f"{detail}trial 2/2: CV AUC 0.6500, best so far 0.7000")
        say("training LightGBM")

    lines = [line.strip() for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines[0] == "trial 1/2: CV AUC 0.7000, best so far 0.7000"
    assert lines[1] == "trial 2/2: CV AUC 0.6500, best so far 0.7000"
    assert lines[2].startswith("done tuning LightGBM with Optuna (2 trials max) (")
    assert lines[3].startswith("done training LightGBM (")
    assert len(lines) == 4
