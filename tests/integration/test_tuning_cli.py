"""A tuning run as ``creditops train --tune-trials`` shows it (a real CLI process, so that
LightGBM's own logging, written by its C++ core, would show too): a trial counter with the
best CV AUC so far, "done tuning" after the last trial, and none of LightGBM's
``[Fatal] Reducing min_data_in_leaf`` or ``[Warning]`` noise."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.factories import synthetic_credit, synthetic_spec, write_spec
from tests.integration.server_harness import run_cli

pytestmark = pytest.mark.integration
TRIALS = 4  # with the default seed, trials 3 and 4 lower min_data_in_leaf below its default
TRIAL_LINE = re.compile(r"trial (\d+)/(\d+): CV AUC (0\.\d{4}), best so far (0\.\d{4})")


def test_tuning_shows_a_trial_counter_and_no_lightgbm_noise(tmp_path: Path) -> None:
    data = tmp_path / "credit.csv"
    synthetic_credit(2000, seed=5).to_csv(data, index=False)
    spec = write_spec(tmp_path / "spec.yaml", synthetic_spec())
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDITOPS_")}
    env.update(CREDITOPS_HOME=str(tmp_path / "home"), NO_COLOR="1", COLUMNS="200")
    args = ["train", "--spec", str(spec), "--data", str(data), "--name", "tuned"]

    done = run_cli([*args, "--tune-trials", str(TRIALS)], env, cwd=tmp_path)

    output = done.stdout + done.stderr
    for noise in ("[LightGBM]", "[Fatal]", "[Warning]", "min_data_in_leaf", "UserWarning"):
        assert noise not in output, output
    trials = TRIAL_LINE.findall(done.stderr)
    assert [int(t[0]) for t in trials] == list(range(1, TRIALS + 1)), done.stderr
    assert {int(t[1]) for t in trials} == {TRIALS}
    best = 0.0
    for _, _, auc, best_so_far in trials:
        best = max(best, float(auc))
        assert float(best_so_far) == pytest.approx(best, abs=1e-4)
    last_trial = done.stderr.index(f"trial {TRIALS}/{TRIALS}")
    assert done.stderr.index("done tuning", last_trial) > last_trial
    assert "done trial" not in done.stderr  # trials are not steps of their own
