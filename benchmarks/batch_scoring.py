"""Benchmark: ``creditops score`` on a monthly book against what a user would write, and MLflow.

    .venv/bin/python benchmarks/batch_scoring.py [--sizes 1m,10m] [--peers-at 1m]
        [--chunk-rows 50000] [--workers N] [--row-group-rows 100000] [--timeout 3600]
        [--tools creditops,creditops-adverse,handwritten,mlflow-pyfunc,mlflow-booster]
        [--fresh] [--engine local|spark] [--master local[2]]

Trains and promotes the Taiwan demo model in ``benchmarks/.work/batch_scoring/home`` (once;
``--fresh`` starts over) and writes Parquet books of Taiwan rows resampled with replacement
(new ids, seeded; ``--row-group-rows`` per row group), then scores each book, one run after
the other, each in its own process:

* ``creditops``: ``creditops score --alias production --input BOOK --output OUT.parquet``:
  pd, score, decision and four reason codes with their texts for **every** row, streamed on
  every core (the default options, or ``--chunk-rows`` / ``--workers``);
* ``creditops-adverse``: the same with ``--reasons-for adverse``: reason codes for the rows
  not approved only, as the API answers by default and as the hand-written script does (the
  like-for-like comparison with it);
* ``handwritten``: the script a user would write around the same LightGBM booster (from the
  version's bundle): read the Parquet file, ``predict``, ``pred_contrib`` for the rows not
  approved, the top four features as reasons, write Parquet (:data:`HANDWRITTEN`);
* ``mlflow-pyfunc``: MLflow's batch path on the registered version itself,
  ``mlflow.pyfunc.load_model("models:/taiwan@production").predict(frame)`` (pd, score,
  decision and the reason codes joined by ``;``, every row), then Parquet;
* ``mlflow-booster``: the same booster logged with ``mlflow.lightgbm.log_model`` (an
  experiment of its own), ``mlflow.pyfunc.load_model(...).predict(frame)``: the raw PD, no
  reasons.

Peers run on the ``--peers-at`` sizes only (they hold the whole book in memory; 10M rows
would need about 10x their 1M peak). For each run: wall time of the process (start-up
included), peak memory three ways: ``/usr/bin/time -v``'s maximum resident set size (the
largest single process it waited for), and the peak over time of the sum of RSS and of PSS
(proportional set size: shared pages split between the processes that share them) over
the whole process tree, sampled every 0.1 s from ``/proc`` (creditops' workers are
processes: RSS summed counts the shared libraries once per process, PSS does not). Each
creditops output is checked against the model computed in this process on its first rows
(the reference :func:`scored_frame`), each peer's output for its row count.

It prints a table and the ratios, and whether the aims (issue 16) hold: 1M rows with reasons
in at most 10 s, peak memory at most 700 MB and the same for 1M and 10M rows, at least 4x
faster than the hand-written script. Results go to ``benchmarks/.work/batch_scoring/
results.json``. Exit status 0 when every run completed and the checks passed (the aims are
reported, not enforced), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work" / "batch_scoring"
HOME = WORK / "home"
DATA = ROOT / "data"
BIN = Path(sys.executable).parent
MODEL = "taiwan"
SIZES = {"1m": 1_000_000, "10m": 10_000_000}
AIM_SECONDS_1M = 10.0
AIM_PEAK_MB = 700.0
AIM_SPEEDUP = 4.0
SAMPLE_S = 0.1
CHECK_ROWS = 2000
TOOLS = ("creditops", "creditops-adverse", "handwritten", "mlflow-pyfunc", "mlflow-booster")
# creditops with reason codes for every row, and for review and decline rows only
# (`--reasons-for adverse`: the API's default, and what the hand-written script does)
OURS = {"creditops": "all", "creditops-adverse": "adverse"}

# The script a user would write around the booster: read, predict, explain the rows not
# approved with LightGBM's own TreeSHAP, keep the top four features, write.
HANDWRITTEN = """
import json, sys
import lightgbm as lgb
import numpy as np
import pandas as pd

book, out, model_dir = sys.argv[1:4]
card = json.load(open(f"{model_dir}/card.json"))  # features, categories, PD cutoffs
booster = lgb.Booster(model_file=f"{model_dir}/booster.txt")

frame = pd.read_parquet(book)
x = frame[card["features"]].astype("float64")
for name, categories in card["categories"].items():
    codes = pd.Categorical(frame[name].astype(str), categories=categories).codes
    x[name] = np.where(codes < 0, np.nan, codes)
x = x.to_numpy()

pd_ = booster.predict(x)
decision = np.where(pd_ <= card["approve_max_pd"], "approve",
                    np.where(pd_ <= card["review_max_pd"], "review", "decline"))
adverse = np.flatnonzero(decision != "approve")
contrib = booster.predict(x[adverse], pred_contrib=True)[:, :-1]  # last column: the bias
top = np.argsort(-contrib, axis=1)[:, :4]
names = np.array(card["features"] + [None], dtype=object)
top[np.take_along_axis(contrib, top, axis=1) <= 0] = len(card["features"])  # not adverse
reasons = np.full((len(frame), 4), None, dtype=object)
reasons[adverse] = names[top]

out_frame = frame.assign(pd=pd_, decision=decision)
for i in range(4):
    out_frame[f"reason_{i + 1}"] = reasons[:, i]
out_frame.to_parquet(out, index=False)
print(json.dumps({"rows": len(out_frame), "explained": int(adverse.size)}))
"""

MLFLOW_PYFUNC = """
import json, sys
import mlflow
import pandas as pd

book, out, model_uri = sys.argv[1:4]
model = mlflow.pyfunc.load_model(model_uri)
frame = pd.read_parquet(book)
# MLflow refuses int64 columns for the signature's doubles (docs/mlflow.md)
frame = frame.astype({c: "float64" for c in frame.select_dtypes("integer").columns})
predictions = model.predict(frame)
predictions = pd.DataFrame(predictions)
predictions.to_parquet(out, index=False)
print(json.dumps({"rows": len(predictions)}))
"""

# The bare booster reads the encoded features, as its author would prepare them.
MLFLOW_BOOSTER = """
import json, sys
import mlflow
import numpy as np
import pandas as pd

book, out, model_uri, model_dir = sys.argv[1:5]
card = json.load(open(f"{model_dir}/card.json"))
model = mlflow.pyfunc.load_model(model_uri)
frame = pd.read_parquet(book)
x = frame[card["features"]].astype("float64")
for name, categories in card["categories"].items():
    codes = pd.Categorical(frame[name].astype(str), categories=categories).codes
    x[name] = np.where(codes < 0, np.nan, codes)
predictions = pd.DataFrame({"pd": np.asarray(model.predict(x))})
predictions.to_parquet(out, index=False)
print(json.dumps({"rows": len(predictions)}))
"""


# -- setup --------------------------------------------------------------------------------


def env() -> dict[str, str]:
    return os.environ | {"CREDITOPS_HOME": str(HOME), "MLFLOW_TRACKING_URI": tracking_uri()}


def tracking_uri() -> str:
    return f"sqlite:///{HOME / 'mlflow.db'}"


def creditops(*args: str) -> str:
    proc = subprocess.run(
        [str(BIN / "creditops"), *args],
        env=env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"creditops {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def ensure_model(fresh: bool) -> None:
    if fresh and WORK.exists():
        shutil.rmtree(WORK)
    if (HOME / "mlflow.db").exists():
        return
    print("training and promoting the Taiwan demo model (once) ...", flush=True)
    trained = json.loads(
        creditops(
            "train",
            "--spec",
            str(DATA / "specs/taiwan.yaml"),
            "--data",
            str(DATA / "taiwan_credit_card.csv"),
            "--name",
            MODEL,
            "--policy",
            str(DATA / "policies/taiwan.yaml"),
            "--json",
        )
    )
    version = str(trained["version"])
    creditops(
        "models",
        "promote",
        "--name",
        MODEL,
        "--version",
        version,
        "--to",
        "production",
        "--force",
        "--reason",
        "benchmark",
    )


def load_production() -> Any:
    sys.path.insert(0, str(ROOT / "src"))
    from creditops.services.context import AppContext
    from creditops.services.model_versions import load_model
    from creditops.settings import Settings

    return load_model(AppContext(Settings(home=HOME)), MODEL, "production")


def write_model_card(loaded: Any) -> Path:
    """What the hand-written script reads: the booster text from the version's bundle and
    the facts its author would have kept from training (features, categories, cutoffs)."""
    model = loaded.model
    folder = WORK / "handwritten_model"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "booster.txt").write_text(model.bundle.booster)
    scaling, policy = model.scaling, model.policy
    card = {
        "features": list(model.encoder.feature_names),
        "categories": model.encoder.categories_,
        "approve_max_pd": float(scaling.pd_at(policy.approve_min_score)),
        "review_max_pd": float(scaling.pd_at(policy.decline_below_score)),
    }
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def booster_model_uri(loaded: Any) -> str:
    """The same booster logged with MLflow's LightGBM flavour (in an experiment of its own
    in the benchmark home's store)."""
    cache = WORK / "mlflow-booster.json"
    sha = loaded.info.tags.get("bundle_sha256", "")
    if cache.exists() and json.loads(cache.read_text()).get("sha256") == sha:
        return str(json.loads(cache.read_text())["model_uri"])
    import lightgbm as lgb
    import mlflow
    import mlflow.lightgbm

    mlflow.set_tracking_uri(tracking_uri())  # the benchmark home's store, beside the version
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("batch-scoring-booster")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(
            "batch-scoring-booster", artifact_location=(WORK / "mlflow-booster").as_uri()
        )
    )
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.lightgbm.log_model(
            lgb.Booster(model_str=loaded.model.bundle.booster),
            name="model",
            pip_requirements=[f"lightgbm=={lgb.__version__}"],
        )
    cache.write_text(json.dumps({"sha256": sha, "model_uri": info.model_uri}))
    return str(info.model_uri)


def ensure_book(rows: int, row_group_rows: int) -> Path:
    """Taiwan rows resampled with replacement (seeded), new ids, written a million at a
    time so that writing 10M rows stays small."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = WORK / f"book-{rows}-rg{row_group_rows}.parquet"
    if path.exists():
        return path
    print(f"writing {path.name} ...", flush=True)
    source = pd.read_csv(DATA / "taiwan_credit_card.csv").drop(columns=["target", "_is_test"])
    rng = np.random.default_rng(16)
    partial = path.with_suffix(".partial")
    writer = None
    for start in range(0, rows, 1_000_000):
        n = min(1_000_000, rows - start)
        part = source.iloc[rng.integers(0, len(source), n)].reset_index(drop=True)
        part["id"] = np.arange(start + 1, start + n + 1)
        table = pa.Table.from_pandas(part, preserve_index=False)
        writer = writer or pq.ParquetWriter(partial, table.schema)
        writer.write_table(table, row_group_size=row_group_rows)
    assert writer is not None
    writer.close()
    partial.replace(path)
    return path


# -- measuring one run --------------------------------------------------------------------


def _tree(root: int) -> list[int]:
    pids, queue = [], [root]
    while queue:
        pid = queue.pop()
        pids.append(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                queue.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _memory_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return rss, pss


class TreeSampler(threading.Thread):
    """Peak sum of RSS and of PSS over a process and its descendants, and their CPU time
    (each process's last sample: a process that ends between samples loses at most 0.1 s)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0
        self.peak_processes = 0
        self.cpu_s: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_S):
            pids = _tree(self.pid)
            sizes = [_memory_kb(p) for p in pids]
            self.peak_rss_kb = max(self.peak_rss_kb, sum(r for r, _ in sizes))
            self.peak_pss_kb = max(self.peak_pss_kb, sum(p for _, p in sizes))
            self.peak_processes = max(self.peak_processes, len(pids))
            for pid in pids:
                self.cpu_s[pid] = max(self.cpu_s.get(pid, 0.0), _cpu_s(pid))


@dataclass
class Run:
    tool: str
    rows: int
    wall_s: float
    cpu_s: float
    time_v_max_rss_mb: float
    tree_peak_rss_mb: float
    tree_peak_pss_mb: float
    processes: int
    ok: bool
    note: str = ""


def measure(tool: str, rows: int, command: list[str], timeout: float) -> tuple[Run, str]:
    """Run ``command`` under ``/usr/bin/time -v`` and sample its process tree."""
    timing = WORK / f"time-{tool}.txt"
    started = time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-v", "-o", str(timing), *command],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = TreeSampler(proc.pid)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err = f"timed out after {timeout:.0f} s\n{err}"
    wall = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    max_rss_kb = 0
    if timing.exists():
        for line in timing.read_text().splitlines():
            if "Maximum resident set size" in line:
                max_rss_kb = int(line.split(":")[1])
    ok = proc.returncode == 0
    run = Run(
        tool=tool,
        rows=rows,
        wall_s=round(wall, 2),
        cpu_s=round(sum(sampler.cpu_s.values()), 1),
        time_v_max_rss_mb=round(max_rss_kb / 1024, 1),
        tree_peak_rss_mb=round(sampler.peak_rss_kb / 1024, 1),
        tree_peak_pss_mb=round(sampler.peak_pss_kb / 1024, 1),
        processes=sampler.peak_processes,
        ok=ok,
        note="" if ok else err.strip().splitlines()[-1][:200] if err.strip() else "failed",
    )
    return run, out


def check_creditops(output: Path, book: Path, loaded: Any, reasons_for: str) -> str:
    """The first rows of the output against the model computed here (scored_frame)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from creditops.services.scoring import scored_frame

    head = next(pq.ParquetFile(book).iter_batches(batch_size=CHECK_ROWS)).to_pandas()
    expected = scored_frame(head, loaded.model, MODEL, loaded.info.version, reasons_for)  # type: ignore[arg-type]
    got = next(pq.ParquetFile(output).iter_batches(batch_size=CHECK_ROWS)).to_pandas()
    columns = ["id", "pd", "score", "decision", "reason_1", "reason_2", "reason_3", "reason_4"]
    pd.testing.assert_frame_equal(got[columns], expected[columns], check_dtype=False)
    return f"first {CHECK_ROWS} rows equal scored_frame's"


def output_rows(output: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(output).metadata.num_rows)


# -- the runs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    sizes: list[int]
    peers_at: set[int]
    chunk_rows: int | None
    workers: int | None
    row_group_rows: int
    timeout: float
    tools: list[str]


def run_creditops(book: Path, rows: int, plan: Plan, loaded: Any, tool: str) -> Run:
    output = WORK / f"out-{tool}-{rows}.parquet"
    output.unlink(missing_ok=True)
    command = [
        str(BIN / "creditops"),
        "score",
        "--name",
        MODEL,
        "--alias",
        "production",
        "--input",
        str(book),
        "--output",
        str(output),
        "--reasons-for",
        OURS[tool],
        "--json",
    ]
    if plan.chunk_rows:
        command += ["--chunk-rows", str(plan.chunk_rows)]
    if plan.workers:
        command += ["--workers", str(plan.workers)]
    run, out = measure(tool, rows, command, plan.timeout)
    if run.ok:
        result = json.loads(out)
        counts = result["decisions"]
        share = 1 - counts.get("approve", 0) / max(1, result["rows"])
        run.ok = result["rows"] == rows == output_rows(output)
        which = "every row" if OURS[tool] == "all" else f"the {share:.0%} not approved"
        run.note = (
            f"{check_creditops(output, book, loaded, OURS[tool])}; "
            f"in-command {result['seconds']:.1f} s; reasons for {which}"
        )
    output.unlink(missing_ok=True)
    return run


def run_peer(tool: str, script: str, book: Path, rows: int, extra: list[str], plan: Plan) -> Run:
    path = WORK / f"{tool}.py"
    path.write_text(script)
    output = WORK / f"out-{tool}-{rows}.parquet"
    output.unlink(missing_ok=True)
    run, out = measure(
        tool, rows, [sys.executable, str(path), str(book), str(output), *extra], plan.timeout
    )
    if run.ok:
        result = json.loads(out.strip().splitlines()[-1])
        run.ok = result["rows"] == rows == output_rows(output)
        if "explained" in result:
            run.note = f"pred_contrib on {result['explained'] / rows:.0%} of rows (not approved)"
    output.unlink(missing_ok=True)
    return run


def run_all(plan: Plan) -> list[Run]:
    loaded = load_production()
    card = str(write_model_card(loaded))
    peers: dict[str, tuple[str, list[str]]] = {}
    if "handwritten" in plan.tools:
        peers["handwritten"] = (HANDWRITTEN, [card])
    if "mlflow-pyfunc" in plan.tools:
        peers["mlflow-pyfunc"] = (MLFLOW_PYFUNC, [f"models:/{MODEL}@production"])
    if "mlflow-booster" in plan.tools:
        peers["mlflow-booster"] = (MLFLOW_BOOSTER, [booster_model_uri(loaded), card])
    runs: list[Run] = []
    for rows in plan.sizes:
        book = ensure_book(rows, plan.row_group_rows)
        print(f"\n{rows:,} rows ({book.stat().st_size / 2**20:.0f} MB Parquet)", flush=True)
        tools = [t for t in OURS if t in plan.tools]
        tools += list(peers) if rows in plan.peers_at else []
        for tool in tools:
            print(f"  {tool} ...", end=" ", flush=True)
            if tool in OURS:
                run = run_creditops(book, rows, plan, loaded, tool)
            else:
                script, extra = peers[tool]
                run = run_peer(tool, script, book, rows, extra, plan)
            failed = "" if run.ok else f"  FAILED: {run.note}"
            print(f"{run.wall_s:.1f} s, PSS {run.tree_peak_pss_mb:.0f} MB{failed}", flush=True)
            runs.append(run)
    return runs


def report(runs: list[Run]) -> None:
    print()
    header = (
        f"{'tool':<15}{'rows':>12}{'wall s':>9}{'cpu s':>8}{'rows/s':>11}{'time -v MB':>12}"
        f"{'tree RSS MB':>13}{'tree PSS MB':>13}{'procs':>7}  note"
    )
    print(header)
    print("-" * len(header))
    for r in runs:
        print(
            f"{r.tool:<15}{r.rows:>12,}{r.wall_s:>9.1f}{r.cpu_s:>8.1f}{r.rows / r.wall_s:>11,.0f}"
            f"{r.time_v_max_rss_mb:>12.0f}{r.tree_peak_rss_mb:>13.0f}{r.tree_peak_pss_mb:>13.0f}"
            f"{r.processes:>7}  {r.note}"
        )
    by = {(r.tool, r.rows): r for r in runs if r.ok}
    print()
    for rows in sorted({r.rows for r in runs}):
        for tool in OURS:
            ours = by.get((tool, rows))
            if ours is None:
                continue
            for peer in ("handwritten", "mlflow-pyfunc", "mlflow-booster"):
                theirs = by.get((peer, rows))
                if theirs is not None:
                    print(
                        f"{rows:,} rows: {tool} is {theirs.wall_s / ours.wall_s:.2f}x as fast "
                        f"as {peer}, with "
                        f"{ours.tree_peak_pss_mb / theirs.tree_peak_pss_mb:.2f}x its peak PSS"
                    )
    aims(by)


def aims(by: dict[tuple[str, int], Run]) -> None:
    hand = by.get(("handwritten", SIZES["1m"]))
    for tool in OURS:
        one = by.get((tool, SIZES["1m"]))
        ten = by.get((tool, SIZES["10m"]))
        if one is None:
            continue
        print()
        print(
            f"aim: 1M rows with reasons in <= {AIM_SECONDS_1M:.0f} s ({tool}): "
            f"{one.wall_s:.1f} s ({'met' if one.wall_s <= AIM_SECONDS_1M else 'not met'})"
        )
        peaks = [r.tree_peak_pss_mb for r in (one, ten) if r]
        print(
            f"aim: peak PSS <= {AIM_PEAK_MB:.0f} MB ({tool}): "
            f"{', '.join(f'{p:.0f}' for p in peaks)} MB "
            f"({'met' if max(peaks) <= AIM_PEAK_MB else 'not met'})"
        )
        if ten:
            print(
                f"aim: the same peak for 1M and 10M rows ({tool}): {one.tree_peak_pss_mb:.0f} / "
                f"{ten.tree_peak_pss_mb:.0f} MB PSS, {one.tree_peak_rss_mb:.0f} / "
                f"{ten.tree_peak_rss_mb:.0f} MB RSS summed"
            )
        if hand:
            speedup = hand.wall_s / one.wall_s
            like = " (like for like)" if OURS[tool] == "adverse" else " (reasons for every row)"
            print(
                f"aim: >= {AIM_SPEEDUP:.0f}x the hand-written script at 1M rows ({tool}{like}): "
                f"{speedup:.2f}x ({'met' if speedup >= AIM_SPEEDUP else 'not met'})"
            )


def spark_overhead(sizes: list[int], master: str, fresh: bool) -> int:
    """``--engine spark``: the Spark engine against the local one, per size, by
    ``benchmarks/spark_overhead.py`` (scoring and binned drift, outputs compared)."""
    script = ROOT / "benchmarks" / "spark_overhead.py"
    status = 0
    for rows in sizes:
        command = [sys.executable, str(script), "--rows", str(rows), "--master", master]
        status |= subprocess.run(
            [*command, *(["--fresh"] if fresh else [])], check=False
        ).returncode
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1m,10m", help="book sizes: 1m, 10m or row counts")
    parser.add_argument("--peers-at", default="1m", help="sizes the peers also run at")
    parser.add_argument("--chunk-rows", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--row-group-rows", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=3600.0, help="per run, seconds")
    parser.add_argument("--tools", default=",".join(TOOLS), help="which of them to run")
    parser.add_argument("--fresh", action="store_true", help="retrain and rewrite the books")
    parser.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="spark: the Spark engine's overhead against the local one (spark_overhead.py)",
    )
    parser.add_argument("--master", default="local[2]", help="with --engine spark")
    args = parser.parse_args()

    def sizes(text: str) -> list[int]:
        return [SIZES.get(s.strip().lower()) or int(s) for s in text.split(",") if s.strip()]

    if args.engine == "spark":
        return spark_overhead(sizes(args.sizes), args.master, args.fresh)

    plan = Plan(
        sizes=sizes(args.sizes),
        peers_at=set(sizes(args.peers_at)),
        chunk_rows=args.chunk_rows,
        workers=args.workers,
        row_group_rows=args.row_group_rows,
        timeout=args.timeout,
        tools=[t.strip() for t in args.tools.split(",") if t.strip() in TOOLS],
    )
    WORK.mkdir(parents=True, exist_ok=True)
    ensure_model(args.fresh)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    runs = run_all(plan)
    report(runs)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    results = WORK / "results.json"
    results.write_text(json.dumps([asdict(r) for r in runs], indent=2))
    print(f"results: {results.relative_to(ROOT)}")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
