"""Benchmark: one retraining job against `creditops train` on the same rows.

    .venv/bin/python benchmarks/retrain.py [--decisions 30000] [--fresh]

Trains the Taiwan demo model (version 1) in an isolated CREDITOPS_HOME under
benchmarks/.work/retrain/ (once; --fresh starts over), logs ``--decisions`` decisions of
resampled Taiwan applicants with their outcomes straight into the service database, then:

1. runs one retraining job (forced, manual trigger) in a fresh process, as the worker
   would: its wall time, its peak memory (max RSS) and the time of each stage, read from
   the job's log;
2. runs `creditops train` on the rows that job trained on (the Parquet file it registered
   with version 2) with the same spec and policy, in a fresh process: wall time and peak
   memory.

It prints both and their ratio. Aims (issue 12): the job under 60 s on a 2-core machine and
at most 1.5x the plain training. Exit status 0 when the job succeeded (the aims are
reported, not enforced).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work" / "retrain"
DATA = ROOT / "data"
BIN = Path(sys.executable).parent

JOB_SCRIPT = """
import json, sys, time
from creditops.monitoring.triggers import Trigger
from creditops.services import retraining
from creditops.services.context import AppContext
from creditops.settings import get_settings
from creditops.store.engine import create_db_engine, session_factory
settings = get_settings()
sessions = session_factory(create_db_engine(settings.database))
ctx = AppContext(settings)
queued = retraining.request_retrain(
    ctx, sessions, "taiwan", Trigger("manual", "benchmark", {}), force=True, requested_by="bench"
)
started = time.perf_counter()
retraining.run_pending_job(ctx, sessions)
job = retraining.get_job(sessions, queued.job_id)
job["wall_s"] = time.perf_counter() - started
print(json.dumps(job, default=str))
"""


def env(home: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("CREDITOPS_")}
    out.update(
        CREDITOPS_HOME=str(home),
        CREDITOPS_ALERTS__ENABLED="false",
        CREDITOPS_RETRAIN__MAX_PRODUCTION_SHARE="0.6",
    )
    return out


# Runs a command and reports the largest resident set of it (and its children) on stderr:
# getrusage(RUSAGE_CHILDREN) of this small parent sees only that one command.
PEAK_WRAPPER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"peak-rss-kb {peak}", file=sys.stderr)
sys.exit(code)
"""


def measured(command: list[str], environment: dict[str, str]) -> tuple[str, float, float]:
    """(stdout, wall seconds, peak RSS MB) of a command in a fresh process."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_WRAPPER, *command],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    peak_kb = int(done.stderr.strip().splitlines()[-1].split()[-1])
    return done.stdout, wall, peak_kb / 1024


def prepare(home: Path, decisions: int, fresh: bool) -> None:
    sys.path.insert(0, str(ROOT))
    if fresh and WORK.exists():
        shutil.rmtree(WORK)
    if not (home / "mlflow.db").exists():
        from tests.factories import train_demo_model

        print("training version 1 of the Taiwan demo model ...", flush=True)
        train_demo_model(home)
    log_decisions(home, decisions)


def log_decisions(home: Path, count: int) -> None:
    """Replace the decision log with ``count`` decisions of resampled applicants, each with
    its observed outcome, spread over the last 60 days."""
    import numpy as np
    import pandas as pd

    from creditops.settings import Settings
    from creditops.store.decision_records import DecisionRecord
    from creditops.store.engine import create_db_engine, session_factory
    from creditops.store.migrations_api import ensure_current
    from creditops.store.repositories import DecisionRepository, OutcomeRepository

    settings = Settings(home=home)
    db = home / "creditops.db"
    for path in home.glob("creditops.db*"):
        path.unlink()
    ensure_current(settings.database)
    sessions = session_factory(create_db_engine(settings.database))
    # A new sample each run: the same rows again would make the job find its earlier version
    # (same data, spec and settings) and register nothing.
    seed = int(time.time())
    frame = pd.read_csv(DATA / "taiwan_credit_card.csv").sample(
        count, replace=True, random_state=seed
    )
    features = [c for c in frame.columns if c not in ("id", "target", "_is_test")]
    now = datetime.now(UTC)
    rng = np.random.default_rng(0)
    print(f"logging {count} decisions with outcomes into {db} ...", flush=True)
    for start in range(0, count, 5000):
        chunk = frame.iloc[start : start + 5000]
        records = []
        for i, (_, row) in enumerate(chunk.iterrows()):
            n = start + i
            records.append(
                DecisionRecord(
                    decision_id=f"{n:08d}-0000-4000-8000-000000000000",
                    application_id=f"bench-{n}",
                    model_name="taiwan",
                    model_version="1",
                    policy_version="bench",
                    pd=float(rng.random()),
                    score=600.0,
                    decision="approve",
                    reasons=[],
                    inputs={f: int(row[f]) for f in features},
                    latency_ms=1.0,
                    created_at=now - timedelta(days=60) + timedelta(seconds=n * 60),
                    request_id="bench",
                    api_key_id=None,
                    route="production",
                    suspended=False,
                )
            )
        with sessions.begin() as session:
            DecisionRepository(session).add_many(records)
            outcomes = OutcomeRepository(session)
            for record, target in zip(records, chunk["target"], strict=True):
                outcomes.record(record.decision_id, record.application_id, bool(target), now)


def stage_times(log: str) -> dict[str, float]:
    """Seconds per stage, from the timestamps of the job's log lines."""
    marks: list[tuple[datetime, str]] = []
    for line in log.splitlines():
        if " [" not in line:
            continue
        stamp, rest = line.split(" [", 1)
        try:
            marks.append((datetime.fromisoformat(stamp), rest.split("]", 1)[0]))
        except ValueError:
            continue
    times: dict[str, float] = {}
    for (at, stage), (after, _) in itertools.pairwise(marks):
        times[stage] = times.get(stage, 0.0) + (after - at).total_seconds()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--decisions", type=int, default=30_000)
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    home = WORK / "home"
    prepare(home, args.decisions, args.fresh)
    environment = env(home)
    out, job_wall, job_peak = measured([sys.executable, "-c", JOB_SCRIPT], environment)
    job = json.loads(out.strip().splitlines()[-1])
    if job["state"] != "succeeded":
        print(json.dumps(job, indent=2)[-3000:])
        return 1
    version = job["result"]["version"]
    rows = job["result"]["rows"]
    sys.path.insert(0, str(ROOT))
    from creditops.services.context import AppContext
    from creditops.settings import Settings

    ctx = AppContext(Settings(home=home))
    parquet = ctx.registry.download_artifact("taiwan", version, "data/training.parquet", WORK)
    train_home = WORK / "train-home"
    shutil.rmtree(train_home, ignore_errors=True)
    command = [
        str(BIN / "creditops"),
        "train",
        "--spec",
        str(DATA / "specs/taiwan.yaml"),
        "--data",
        str(parquet),
        "--policy",
        str(DATA / "policies/taiwan.yaml"),
        "--json",
    ]
    _, train_wall, train_peak = measured(
        command, {**environment, "CREDITOPS_HOME": str(train_home)}
    )
    print(f"\nrows trained on: {rows['total']} ({rows})")
    print("\n| stage | seconds |\n|---|---|")
    for stage, seconds in stage_times(job["log"]).items():
        print(f"| {stage} | {seconds:.2f} |")
    print("\n| run | wall s | peak RSS MB |\n|---|---|---|")
    print(f"| retraining job (whole process) | {job_wall:.1f} | {job_peak:.0f} |")
    print(f"| retraining job (the job alone) | {job['wall_s']:.1f} | |")
    print(f"| creditops train, same rows | {train_wall:.1f} | {train_peak:.0f} |")
    ratio = job_wall / train_wall
    print(f"\njob / train: {ratio:.2f}x (aim <= 1.5x); job {job_wall:.1f} s (aim < 60 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
