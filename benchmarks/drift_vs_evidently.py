"""Benchmark: creditops data drift (exact and binned modes) against Evidently's DataDriftPreset.

    .venv/bin/python benchmarks/drift_vs_evidently.py [--rows 1000000] [--stream-rows 10000000]

1. Makes (once) a separate virtualenv for Evidently under ``benchmarks/.venvs/evidently``
   (``evidently==0.7.*``, which needs ``pandas<3``; creditops' own venv has pandas 3).
2. Builds a reference and a current frame of ``--rows`` rows each by resampling the Taiwan
   data (every spec feature), shifts a few columns of the current one, and writes both to
   Parquet under ``benchmarks/.work/``.
3. Runs creditops' exact mode (our venv) and Evidently's DataDriftPreset (its venv), each in
   its own subprocess that reads the two Parquet files and checks every feature. Wall time
   and peak RSS are taken per subprocess (``os.wait4``), so both include interpreter start,
   imports and reading the data. The parent process imports nothing heavy (a forked
   child's peak RSS includes what it shares with its parent until exec).
4. Compares the per-feature decisions with the same test and threshold on both sides: KS
   for numeric and chi-square for categorical features at alpha 0.05, with creditops'
   Benjamini-Hochberg correction and effect-size floors switched off (Evidently has
   neither). Evidently's chi-square is a goodness-of-fit test of the current counts against
   the reference shares, creditops' a test of homogeneity of the 2 x k table; their p-values
   differ slightly, and so could a decision right at the threshold. KS p-values are both
   scipy's and must match to 1e-9.
5. Streams ``--stream-rows`` synthetic rows in chunks through the binned mode's
   ``BinnedAccumulator`` (against a profile of the Taiwan data), twice: with a tenth of the
   rows and with all of them; equal peak memory shows that it is bounded.

Exits non-zero when the decisions disagree, the KS p-values differ, or creditops is less
than ``--min-speedup`` (10) times faster or uses more than 1 / ``--min-memory-ratio`` (3) of
Evidently's peak memory. Everything runs under ``--timeout`` seconds per subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "benchmarks" / ".venvs" / "evidently"
WORK = ROOT / "benchmarks" / ".work" / "drift"
DATA = ROOT / "data" / "taiwan_credit_card.csv"
SPEC = ROOT / "data" / "specs" / "taiwan.yaml"
REQUIREMENTS = ["evidently==0.7.*", "pandas<3", "pyarrow"]
ALPHA = 0.05
CHUNK_ROWS = 500_000

# Shifts applied to the current frame: (column, kind, amount).
SHIFTS: list[tuple[str, str, Any]] = [
    ("limit_bal", "scale", 1.05),  # a 5% higher credit limit for everybody
    ("bill_amt1", "add_std", 0.02),  # a 0.02-SD mean shift: tiny, but visible at 1M rows
    ("pay_amt1", "add_std", 0.10),
    ("age", "add", 1.0),  # everybody a year older
    ("education", "recode", ("2", "1", 0.05)),  # 5% of "2" become "1"
]


# --------------------------------------------------------------------------- helpers


def feature_types() -> dict[str, str]:
    """The spec's features, read without YAML (the Evidently venv has no PyYAML)."""
    types: dict[str, str] = {}
    inside = False
    for line in SPEC.read_text().splitlines():
        if line.startswith("features:"):
            inside = True
            continue
        if inside:
            if not line.startswith("  ") or ":" not in line:
                break
            name, kind = (part.strip() for part in line.split(":", 1))
            types[name] = kind
    return types


def ensure_venv(timeout: float) -> Path:
    python = VENV / "bin" / "python"
    marker = VENV / ".installed"
    wanted = " ".join(REQUIREMENTS)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"creating {VENV.relative_to(ROOT)} with {wanted} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
        check=True,
        timeout=timeout,
        stderr=subprocess.DEVNULL,
    )
    marker.write_text(wanted)
    return python


def run_worker(
    python: Path, args: list[str], timeout: float
) -> tuple[dict[str, Any], float, float]:
    """Run this script as a worker; return (its JSON result, wall seconds, peak RSS MB)."""
    out = WORK / f"result-{args[0]}-{os.getpid()}.json"
    command = [str(python), str(Path(__file__).resolve()), "--worker", *args, "--out", str(out)]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT)
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            process.send_signal(signal.SIGKILL)
            os.wait4(process.pid, 0)
            raise SystemExit(f"worker {args[0]} timed out after {timeout:.0f} s")
        time.sleep(0.05)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"worker {args[0]} failed with status {status}")
    result = json.loads(out.read_text())
    out.unlink()
    return result, wall, usage.ru_maxrss / 1024.0  # Linux reports kB


# --------------------------------------------------------------------------- data


def apply_shifts(frame: Any, rng: Any) -> None:
    for column, kind, amount in SHIFTS:
        if kind == "scale":
            frame[column] = frame[column] * amount
        elif kind == "add":
            frame[column] = frame[column] + amount
        elif kind == "add_std":
            frame[column] = frame[column] + amount * float(frame[column].std())
        else:
            source, target, share = amount
            flip = (frame[column] == source).to_numpy() & (rng.random(len(frame)) < share)
            frame.loc[flip, column] = target


def load_base() -> Any:
    """The Taiwan features, categories as canonical strings (as creditops reads them)."""
    import pandas as pd

    from creditops.features.dataset import normalise_categorical

    base = pd.read_csv(DATA, usecols=list(feature_types()))
    for name, kind in feature_types().items():
        if kind == "categorical":
            base[name] = normalise_categorical(base[name]).astype(str)
    return base


def build_frames(rows: int, seed: int) -> None:
    import numpy as np

    base = load_base()
    rng = np.random.default_rng(seed)
    WORK.mkdir(parents=True, exist_ok=True)
    for name in ("reference", "current"):
        frame = base.iloc[rng.integers(0, len(base), rows)].reset_index(drop=True)
        if name == "current":
            apply_shifts(frame, rng)
        frame.to_parquet(WORK / f"{name}.parquet", index=False)


# --------------------------------------------------------------------------- workers


def read_frame(path: Path) -> Any:
    """Read a Parquet file column by column into pandas (both tools read it this way).

    Converting one column at a time keeps the peak near the frame's own size; a plain
    ``pd.read_parquet`` briefly holds the Arrow table and the frame side by side.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)
    columns = {
        name: source.read(columns=[name]).column(0).to_pandas()
        for name in source.schema_arrow.names
    }
    return pd.DataFrame(columns, copy=False)


def worker_creditops(out: Path, defaults: bool) -> None:
    """Exact mode; ``defaults`` keeps BH and the floors (reported, not compared or timed)."""

    from creditops.monitoring.drift.data import DriftConfig
    from creditops.monitoring.drift.exact import data_drift_exact, prepare_reference

    types = feature_types()
    start = time.perf_counter()
    reference = prepare_reference(read_frame(WORK / "reference.parquet"), types)
    current = read_frame(WORK / "current.parquet")
    plain = DriftConfig(correction="none", ks_effect_floor=0.0, chi2_effect_floor=0.0)
    result = data_drift_exact(reference, current, types, DriftConfig() if defaults else plain)
    seconds = time.perf_counter() - start
    payload = {
        "seconds": seconds,
        "p_value": {f.feature: f.p_value for f in result.features},
        "drifted": {f.feature: f.drifted for f in result.features},
        "drifted_features": result.drifted_features,
        "level": result.level,
        "score": result.drift_score,
    }
    out.write_text(json.dumps(payload))


def worker_evidently(out: Path) -> None:
    from evidently import DataDefinition, Dataset, Report  # type: ignore[import-not-found]
    from evidently.presets import DataDriftPreset  # type: ignore[import-not-found]

    types = feature_types()
    start = time.perf_counter()
    reference = read_frame(WORK / "reference.parquet")
    current = read_frame(WORK / "current.parquet")
    definition = DataDefinition(
        numerical_columns=[n for n, k in types.items() if k == "numeric"],
        categorical_columns=[n for n, k in types.items() if k == "categorical"],
    )
    preset = DataDriftPreset(
        num_method="ks", cat_method="chisquare", num_threshold=ALPHA, cat_threshold=ALPHA
    )
    snapshot = Report([preset]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds = time.perf_counter() - start
    p_values = {
        m["config"]["column"]: float(m["value"])
        for m in snapshot.dict()["metrics"]
        if m["config"].get("type") == "evidently:metric_v2:ValueDrift"
    }
    # Evidently's rules: KS drifts at p <= threshold, chi-square at p < threshold.
    drifted = {n: (p <= ALPHA if types[n] == "numeric" else p < ALPHA) for n, p in p_values.items()}
    out.write_text(json.dumps({"seconds": seconds, "p_value": p_values, "drifted": drifted}))


def worker_stream(out: Path, rows: int, seed: int) -> None:
    import numpy as np

    from creditops.features.profile import build_reference_profile
    from creditops.monitoring.drift.binned import BinnedAccumulator

    types = feature_types()
    base = load_base()
    zeros = np.zeros(len(base))
    profile = build_reference_profile(base, types, zeros, zeros)
    rng = np.random.default_rng(seed)
    accumulator = BinnedAccumulator(profile)
    start = time.perf_counter()
    done = 0
    while done < rows:
        size = min(CHUNK_ROWS, rows - done)
        chunk = base.iloc[rng.integers(0, len(base), size)].reset_index(drop=True)
        apply_shifts(chunk, rng)
        accumulator.update(chunk)
        done += size
    result = accumulator.result()
    seconds = time.perf_counter() - start
    out.write_text(
        json.dumps(
            {
                "seconds": seconds,
                "rows": accumulator.n_rows,
                "drifted": result.drifted_features,
                "level": result.level,
            }
        )
    )


# --------------------------------------------------------------------------- report


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    types = feature_types()
    problems = []
    print(f"{'feature':<11} {'type':<11} {'p creditops':>12} {'p evidently':>12}  drifted (c / e)")
    for name, kind in types.items():
        p_ours, p_theirs = ours["p_value"][name], theirs["p_value"][name]
        d_ours, d_theirs = ours["drifted"][name], theirs["drifted"][name]
        mark = "" if d_ours == d_theirs else "  <- DISAGREE"
        decisions = f"{d_ours!s:>5} / {d_theirs!s:<5}"
        print(f"{name:<11} {kind:<11} {p_ours:>12.3g} {p_theirs:>12.3g}  {decisions}{mark}")
        if d_ours != d_theirs:
            problems.append(f"{name}: creditops drifted={d_ours}, evidently drifted={d_theirs}")
        if kind == "numeric" and abs(p_ours - p_theirs) > 1e-9:
            problems.append(f"{name}: KS p-values differ ({p_ours!r} vs {p_theirs!r})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--stream-rows", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=480.0, help="seconds per subprocess")
    parser.add_argument("--min-speedup", type=float, default=10.0)
    parser.add_argument("--min-memory-ratio", type=float, default=3.0)
    parser.add_argument("--worker", choices=["build", "creditops", "evidently", "stream"])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--defaults", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker == "creditops":
        worker_creditops(args.out, args.defaults)
        return 0
    if args.worker == "evidently":
        worker_evidently(args.out)
        return 0
    if args.worker == "build":
        build_frames(args.rows, args.seed)
        args.out.write_text("{}")
        return 0
    if args.worker == "stream":
        worker_stream(args.out, args.stream_rows, args.seed)
        return 0

    evidently_python = ensure_venv(args.timeout)
    start = time.perf_counter()
    # In a subprocess too: a child's peak RSS counts the pages it shares with its parent
    # until exec, so the parent must stay small for the per-worker peaks to be right.
    run_worker(
        Path(sys.executable),
        ["build", "--rows", str(args.rows), "--seed", str(args.seed)],
        args.timeout,
    )
    print(
        f"{args.rows:,} rows x {len(feature_types())} features each, built in "
        f"{time.perf_counter() - start:.1f} s; shifted: {', '.join(s[0] for s in SHIFTS)}"
    )
    ours, ours_wall, ours_rss = run_worker(Path(sys.executable), ["creditops"], args.timeout)
    theirs, theirs_wall, theirs_rss = run_worker(evidently_python, ["evidently"], args.timeout)
    problems = compare(ours, theirs)

    speedup, memory_ratio = theirs_wall / ours_wall, theirs_rss / ours_rss
    print()
    print(f"{'exact mode':<12} {'wall s':>8} {'compute s':>10} {'peak RSS MB':>12}")
    print(f"{'creditops':<12} {ours_wall:>8.1f} {ours['seconds']:>10.2f} {ours_rss:>12.0f}")
    print(f"{'evidently':<12} {theirs_wall:>8.1f} {theirs['seconds']:>10.2f} {theirs_rss:>12.0f}")
    print(
        f"{'ratio':<12} {speedup:>7.1f}x {theirs['seconds'] / ours['seconds']:>9.1f}x "
        f"{memory_ratio:>11.1f}x"
    )
    agree = sum(ours["drifted"][n] == theirs["drifted"][n] for n in feature_types())
    print(f"decisions agree on {agree} of {len(feature_types())} features")
    defaults, _, _ = run_worker(Path(sys.executable), ["creditops", "--defaults"], args.timeout)
    print(
        f"creditops defaults (BH + effect floors): level {defaults['level']}, "
        f"score {defaults['score']:.3f}, drifted {defaults['drifted_features']}"
    )

    print()
    print(f"{'binned stream':<14} {'rows':>12} {'seconds':>8} {'rows/s':>10} {'peak RSS MB':>12}")
    small_rows = max(args.stream_rows // 10, CHUNK_ROWS)
    for rows in (small_rows, args.stream_rows):
        stream, _, rss = run_worker(
            Path(sys.executable),
            ["stream", "--stream-rows", str(rows), "--seed", str(args.seed)],
            args.timeout,
        )
        rate = stream["rows"] / stream["seconds"]
        print(
            f"{'':<14} {stream['rows']:>12,} {stream['seconds']:>8.1f} {rate:>10,.0f} {rss:>12.0f}"
        )
    print(f"binned drifted features: {stream['drifted']} (level {stream['level']})")

    if speedup < args.min_speedup:
        problems.append(f"speed-up {speedup:.1f}x < {args.min_speedup:g}x")
    if memory_ratio < args.min_memory_ratio:
        problems.append(f"memory ratio {memory_ratio:.1f}x < {args.min_memory_ratio:g}x")
    for problem in problems:
        print(f"FAIL {problem}")
    if not problems:
        print(
            f"OK: same decisions, >= {args.min_speedup:g}x faster, "
            f"<= 1/{args.min_memory_ratio:g} of the memory"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
