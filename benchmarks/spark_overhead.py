"""Benchmark: what the Spark engine costs on one machine, against the local path.

    .venv/bin/python benchmarks/spark_overhead.py [--rows 1000000] [--master local[2]]

Trains the Taiwan demo model once (``benchmarks/.work/spark_overhead/home``; ``--fresh``
starts over), resamples the Taiwan rows with replacement (seed 0) to ``--rows`` applicants
with unique ids, and writes them twice: as one Parquet file (the local path's input) and as
``--files`` Parquet files in a directory (Spark's, one partition per file). Then, in one run:

1. scoring: ``creditops score``'s function (:func:`creditops.services.scoring.score_file`)
   vs :func:`creditops.services.spark_engine.score_spark` on ``--master``; the SparkSession
   is started first and its start-up is reported on its own line; both outputs are read
   back and compared (pd, score, decision per id: they must be identical);
2. drift: the local binned mode (:func:`creditops.services.monitoring.binned_file_drift`) vs
   the Spark aggregation (:func:`creditops.services.spark_engine.drift_spark`) on the same
   rows against the model's reference profile (the results must be equal).

Prints seconds, rows per second and the ratio Spark / local per step. On one small machine
Spark can only add overhead (a JVM, Arrow transfers to Python workers, task scheduling):
the figure says what that overhead is; Spark pays off where the data already lives on a
cluster.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "spark_overhead"
DATA = ROOT / "data"
MODEL = "taiwan"


def trained_home(fresh: bool) -> Path:
    home = WORK / "home"
    marker = home / "trained"
    if fresh and home.exists():
        shutil.rmtree(home)
    if marker.exists():
        return home
    sys.path.insert(0, str(ROOT))
    from tests.factories import train_demo_model

    print("training the Taiwan demo model (once)", flush=True)
    train_demo_model(home, mlflow_uri=None)
    marker.write_text("ok\n")
    return home


def write_inputs(rows: int, files: int) -> tuple[Path, Path]:
    """The resampled rows as one Parquet file and as a directory of ``files`` files."""
    single, folder = WORK / f"input-{rows}.parquet", WORK / f"input-{rows}"
    if single.exists() and folder.exists() and len(list(folder.glob("*.parquet"))) == files:
        return single, folder
    source = pd.read_csv(DATA / "taiwan_credit_card.csv")
    picked = np.random.default_rng(0).integers(0, len(source), size=rows)
    frame = source.iloc[picked].reset_index(drop=True)
    frame["id"] = np.arange(1, rows + 1)
    frame.to_parquet(single, index=False)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(rows), files)):
        frame.iloc[part].to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    return single, folder


def start_spark(master: str) -> tuple[Any, float]:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    started = time.perf_counter()
    session = (
        SparkSession.builder.master(master)
        .appName("creditops-spark-overhead")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session, time.perf_counter() - started


def timed(action: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def same_scores(local: Path, spark: Path) -> bool:
    columns = ["id", "pd", "score", "decision"]
    a = pd.read_parquet(local, columns=columns).sort_values("id").reset_index(drop=True)
    b = pd.read_parquet(spark, columns=columns).sort_values("id").reset_index(drop=True)
    return bool(a.equals(b))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8, help="Parquet files of Spark's input")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--fresh", action="store_true", help="retrain the model")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)

    from creditops.services import monitoring
    from creditops.services.context import AppContext
    from creditops.services.scoring import score_file
    from creditops.services.spark_engine import drift_spark, score_spark
    from creditops.settings import Settings

    ctx = AppContext(Settings(home=trained_home(args.fresh), mlflow_uri=None))
    single, folder = write_inputs(args.rows, args.files)
    local_out, spark_out = WORK / "scored-local.parquet", WORK / "scored-spark"
    shutil.rmtree(spark_out, ignore_errors=True)
    print(f"{args.rows} rows; Spark on {args.master} with {args.files} input files", flush=True)

    _, local_s = timed(lambda: score_file(ctx, MODEL, "production", single, local_out))
    print(f"local score: {local_s:.1f} s", flush=True)
    _, session_s = start_spark(args.master)
    print(f"Spark session start: {session_s:.1f} s", flush=True)
    _, spark_s = timed(
        lambda: score_spark(ctx, MODEL, "production", folder, spark_out, args.master)
    )
    print(f"Spark score: {spark_s:.1f} s", flush=True)
    identical = same_scores(local_out, spark_out)

    reference = monitoring.binned_reference(ctx, MODEL, "production")
    local_drift, local_drift_s = timed(lambda: monitoring.binned_file_drift(reference, single))
    spark_drift, spark_drift_s = timed(lambda: drift_spark(reference, folder, args.master))
    equal_drift = local_drift.to_dict() == spark_drift.to_dict()

    print()
    print(
        f"{'step':<22}{'local s':>10}{'Spark s':>10}{'local rows/s':>15}{'Spark rows/s':>15}"
        f"{'Spark/local':>13}"
    )
    for step, a, b in (
        ("score", local_s, spark_s),
        ("drift (binned)", local_drift_s, spark_drift_s),
    ):
        print(
            f"{step:<22}{a:>10.1f}{b:>10.1f}{args.rows / a:>15,.0f}{args.rows / b:>15,.0f}"
            f"{b / a:>12.2f}x"
        )
    print(f"Spark session start-up (once per process, not in the rows above): {session_s:.1f} s")
    print(f"scores identical (pd, score, decision per id): {'yes' if identical else 'NO'}")
    print(f"drift results equal: {'yes' if equal_drift else 'NO'}")
    return 0 if identical and equal_drift else 1


if __name__ == "__main__":
    raise SystemExit(main())
