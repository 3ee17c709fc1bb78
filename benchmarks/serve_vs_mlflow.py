"""Benchmark: ``creditops serve`` against MLflow's scoring server and a bare FastAPI floor.

    .venv/bin/python benchmarks/serve_vs_mlflow.py [--requests 4000] [--seconds 10]
        [--concurrency 1,16] [--workers 1] [--skip-mlflow] [--skip-pyfunc] [--skip-floor]
        [--fresh]

Trains and promotes the Taiwan demo model in an isolated ``CREDITOPS_HOME`` under
``benchmarks/.work/`` (once; ``--fresh`` starts over), logs the same LightGBM booster with
``mlflow.lightgbm.log_model`` into a throwaway MLflow store there, and serves it four ways,
one after the other, each with ``--workers`` uvicorn worker processes on 127.0.0.1:

* ``mlflow``: ``mlflow models serve --env-manager local`` (encoded row, ``dataframe_split``);
* ``pyfunc``: ``mlflow models serve --env-manager local`` of the creditops version itself
  (``models:/taiwan@production``, the pyfunc model every registration logs: raw applicant
  columns in ``dataframe_split``, pd, score, decision and reason codes out);
* ``floor``: ``_floor_app.py``, one FastAPI endpoint around ``booster.predict``;
* ``creditops``: ``creditops serve`` with API-key auth, the group-commit decision log on the
  default SQLite, Prometheus metrics and reason codes (for adverse decisions, the default;
  ``--reasons-for all`` for every decision), taking the raw applicant JSON.

The same applicants (rows of the Taiwan test split) go to every server. One load generator
(a separate process: asyncio on keep-alive HTTP/1.1 connections, closed loop) sends
``--warmup`` unrecorded requests, then at most ``--requests`` requests or ``--seconds``
seconds, whichever ends first, at each concurrency. Any non-2xx answer or connection error
counts as an error. It prints req/s and p50/p99 latency per server and concurrency, the
ratios creditops/MLflow and creditops/floor and whether the targets are met. Exit status:
0 when every run completed without errors (targets are reported, not enforced), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work" / "serve_vs_mlflow"
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
MODEL = "taiwan"
DATA = ROOT / "data"
TARGET_THROUGHPUT = 5.0  # creditops req/s >= 5x MLflow's at the highest concurrency
AIM_THROUGHPUT = 10.0
TARGET_P99 = 0.2  # creditops p99 <= 1/5 of MLflow's
TARGET_FLOOR = 0.5  # creditops req/s within 2x of the floor


# -- load generator (runs in its own process: ``serve_vs_mlflow.py _loadgen ...``) --------


class Connection:
    """One keep-alive HTTP/1.1 connection that reconnects after an error or a close."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked, close = 0, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = value == b"close"
        body = await self._chunked() if chunked else await self.reader.readexactly(length)
        if close:
            self.drop()
        return status, body

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append((await self.reader.readexactly(size + 2))[:size])
            if size == 0:
                return b"".join(parts)

    def drop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Phase:
    """Shared state of one closed-loop phase; asyncio is single-threaded, so no locks."""

    total: int
    deadline: float
    issued: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _client(conn: Connection, requests: list[bytes], phase: Phase, offset: int) -> None:
    while phase.issued < phase.total and time.perf_counter() < phase.deadline:
        request = requests[(offset + phase.issued) % len(requests)]
        phase.issued += 1
        started = time.perf_counter_ns()
        try:
            status, body = await conn.exchange(request)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            phase.errors.append(f"{type(e).__name__}: {e}")
            conn.drop()
            continue
        phase.latencies_ns.append(time.perf_counter_ns() - started)
        if not 200 <= status < 300:
            phase.errors.append(f"HTTP {status}: {body[:300].decode(errors='replace')}")


async def _run_phase(
    conns: list[Connection], requests: list[bytes], phase: Phase, offset: int, timeout: float
) -> float:
    """Drive every connection until the phase ends; unanswered requests become errors."""
    started = time.perf_counter()
    tasks = [
        asyncio.ensure_future(_client(conn, requests, phase, offset + i * 7919))
        for i, conn in enumerate(conns)  # clients start on different applicants
    ]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
        phase.errors.append(f"no answer within {timeout:.0f} s")
    for task in done:
        task.result()  # a bug in the generator itself must not pass silently
    return time.perf_counter() - started


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    requests = [r.encode("utf-8") for r in spec["requests"]]
    conns = [Connection(spec["port"]) for _ in range(spec["concurrency"])]
    seconds, timeout = spec["seconds"], spec["seconds"] + 30
    warm = Phase(spec["warmup"], time.perf_counter() + seconds)
    await _run_phase(conns, requests, warm, 0, timeout)
    phase = Phase(spec["requests_max"], time.perf_counter() + seconds)
    elapsed = await _run_phase(conns, requests, phase, spec["warmup"], timeout)
    for conn in conns:
        conn.drop()
    latencies = np.asarray(phase.latencies_ns, dtype=np.float64) / 1e6
    ok = len(latencies) - sum(e.startswith("HTTP") for e in phase.errors)
    errors = warm.errors + phase.errors
    return {
        "requests": len(latencies),
        "ok": ok,
        "errors": len(errors),
        "error_sample": errors[:3],
        "seconds": elapsed,
        "rps": ok / elapsed,
        "p50_ms": float(np.percentile(latencies, 50)) if latencies.size else float("nan"),
        "p99_ms": float(np.percentile(latencies, 99)) if latencies.size else float("nan"),
    }


def loadgen_main(spec_path: str) -> None:
    """uvloop when installed (a cheaper client leaves more CPU to the server under test)."""
    spec = json.loads(Path(spec_path).read_text())
    try:
        import uvloop
    except ImportError:
        print(json.dumps(asyncio.run(_load(spec))))
        return
    print(json.dumps(uvloop.run(_load(spec))))


# -- servers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One server under test: how to start it and the requests it is driven with."""

    name: str
    command: str  # argv() template; {bin} {host} {port} {workers} are filled in at start
    values: dict[str, object]
    env: dict[str, str]
    ready_path: str
    request_path: str
    bodies: list[bytes]
    headers: dict[str, str] = field(default_factory=dict)

    def http_requests(self, port: int) -> list[str]:
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        return [
            f"POST {self.request_path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n{extra}\r\n"
            + b.decode("utf-8")
            for b in self.bodies
        ]


def argv(template: str, **values: object) -> list[str]:
    """Split a command template on spaces first, then fill it in (values may hold spaces)."""
    return [token.format(**values) for token in template.split()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(target: Target, port: int, workers: int) -> Iterator[None]:
    """Start the server in its own process group; always stop the whole group."""
    log_path = WORK / "logs" / f"{target.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = argv(target.command, bin=BIN, host=HOST, port=port, workers=workers, **target.values)
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command,
            env={**os.environ, **target.env},
            cwd=WORK,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_ready(proc, port, target.ready_path, log_path)
            yield
        finally:
            stop(proc)


def wait_ready(proc: subprocess.Popen[bytes], port: int, path: str, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server not ready after 180 s; see {log}:\n{_tail(log)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (uvicorn workers included), SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived their parent


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def post_json(port: int, path: str, body: bytes, headers: dict[str, str]) -> Any:
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}",
        data=body,
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


# -- setup: model, applicants, MLflow copy, floor config -----------------------------


def creditops_cli(home: Path, template: str, **values: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "creditops"), *argv(template, **values)],
        env={**os.environ, "CREDITOPS_HOME": str(home)},
        cwd=WORK,
        capture_output=True,
        text=True,
        check=False,
    )


def checked(result: subprocess.CompletedProcess[str]) -> str:
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(result.args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def prepare_creditops(home: Path) -> str:
    """Train, validate and promote the demo model once; empty decision log; a fresh key."""
    marker = home / "benchmark-model.json"
    if not marker.exists():
        print("training the Taiwan demo model (about 30 s) ...", flush=True)
        train = "train --spec {d}/specs/taiwan.yaml --data {d}/taiwan_credit_card.csv --name {m}"
        policy = " --policy {d}/policies/taiwan.yaml --json"
        trained = json.loads(checked(creditops_cli(home, train + policy, d=DATA, m=MODEL)))
        version = str(trained["version"])
        validate = "validate --name {m} --version {v} --profile {d}/gates/taiwan.yaml --json"
        gate = creditops_cli(home, validate, m=MODEL, v=version, d=DATA)
        force = " --force" if gate.returncode != 0 else ""
        promote = "models promote --name {m} --version {v} --to production" + force
        checked(creditops_cli(home, promote, m=MODEL, v=version))
        marker.write_text(json.dumps({"version": version, "gate_passed": not force}))
    for suffix in ("", "-wal", "-shm"):  # every run starts with an empty decision log
        (home / f"creditops.db{suffix}").unlink(missing_ok=True)
    create = "keys create --name bench --scopes predict --json"
    key = json.loads(checked(creditops_cli(home, create)))
    return str(key["key"])


def load_applicants(count: int, seed: int, features: list[str]) -> list[dict[str, Any]]:
    import pandas as pd

    frame = pd.read_csv(DATA / "taiwan_credit_card.csv")
    test = frame[frame["_is_test"].astype(str).str.lower() == "true"]
    sample = test.sample(n=min(count, len(test)), random_state=seed)
    return [
        {
            "application_id": f"test-{row['id']}",
            "features": {f: _plain(row[f]) for f in features},
        }
        for row in sample.to_dict("records")
    ]


def _plain(value: Any) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() else number


def log_to_mlflow(
    booster_text: str, names: list[str], rows: npt.NDArray[np.float64], sha: str
) -> str:
    """Log the creditops booster as an MLflow LightGBM model; the URI is cached per bundle."""
    cache = WORK / "mlflow" / "model.json"
    if cache.exists() and json.loads(cache.read_text()).get("sha256") == sha:
        return str(json.loads(cache.read_text())["model_uri"])
    import lightgbm as lgb
    import mlflow
    import mlflow.lightgbm
    import pandas as pd
    from mlflow.models import infer_signature

    booster = lgb.Booster(model_str=booster_text)
    frame = pd.DataFrame(rows[:50], columns=names)
    mlflow.set_tracking_uri(mlflow_uri())
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("serve-vs-mlflow")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(
            "serve-vs-mlflow", artifact_location=(WORK / "mlflow" / "artifacts").as_uri()
        )
    )
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(frame, booster.predict(frame)),
            pip_requirements=[f"lightgbm=={lgb.__version__}"],
        )
    cache.write_text(json.dumps({"sha256": sha, "model_uri": info.model_uri}))
    return str(info.model_uri)


def mlflow_uri() -> str:
    return f"sqlite:///{WORK / 'mlflow' / 'mlflow.db'}"


@dataclass(frozen=True)
class Setup:
    targets: dict[str, Target]
    adverse_share: float  # applicants whose decision is review/decline (TreeSHAP reasons)
    expected: dict[str, float]  # pd of the first applicant, computed in this process


def build_setup(args: argparse.Namespace) -> Setup:
    from creditops.services.context import AppContext
    from creditops.services.model_versions import load_model
    from creditops.settings import Settings

    if args.fresh:
        shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "mlflow").mkdir(parents=True, exist_ok=True)
    home = WORK / "home"
    key = prepare_creditops(home)
    loaded = load_model(AppContext(Settings(home=home)), MODEL, "production")
    model = loaded.model
    assert model.booster is not None and model.bundle.booster is not None
    applicants = load_applicants(args.applicants, args.seed, list(model.spec.features))
    names = model.encoder.feature_names
    rows = model.encoder.encode_rows([a["features"] for a in applicants])
    if np.isnan(rows).any():
        raise RuntimeError("encoded applicants contain missing values; JSON cannot carry them")
    rules = model.policy.knockout_features()
    raw = {f: [a["features"].get(f) for a in applicants] for f in rules}
    decisions = model.score_encoded(rows, raw, reasons="none").decision
    model_file = WORK / "floor_model.txt"
    model_file.write_text(model.bundle.booster)
    floor_config = WORK / "floor.json"
    floor_config.write_text(json.dumps({"model_file": str(model_file), "features": names}))
    common = {"OMP_NUM_THREADS": str(args.omp_threads)} if args.omp_threads else {}
    targets: dict[str, Target] = {}
    if not args.skip_mlflow:
        uri = log_to_mlflow(model.bundle.booster, names, rows, loaded.info.tags["bundle_sha256"])
        targets["mlflow"] = mlflow_target(uri, names, rows, common)
    if not args.skip_pyfunc:
        registry_uri = AppContext(Settings(home=home)).registry.tracking_uri
        columns = [*names, *(f for f in rules if f not in names)]
        targets["pyfunc"] = pyfunc_target(registry_uri, columns, applicants, common)
    if not args.skip_floor:
        targets["floor"] = floor_target(floor_config, names, rows, common)
    targets["creditops"] = creditops_target(home, key, applicants, args.reasons_for, common)
    expected = {
        "pd_raw": float(model.booster.predict(rows[:1])[0]),
        "pd_calibrated": float(model.predict_pd(rows[:1])[0]),
    }
    return Setup(targets, float(np.mean(decisions != "approve")), expected)


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def mlflow_target(
    uri: str, names: list[str], rows: npt.NDArray[np.float64], env: dict[str, str]
) -> Target:
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"  # it starts `uvicorn` from PATH
    return Target(
        "mlflow",
        "{bin}/mlflow models serve -m {uri} --env-manager local --workers {workers} "
        "-p {port} --host {host}",
        {"uri": uri},
        {**env, "MLFLOW_TRACKING_URI": mlflow_uri(), "PATH": path},
        "/ping",
        "/invocations",
        [_dumps({"dataframe_split": {"columns": names, "data": [r.tolist()]}}) for r in rows],
    )


def pyfunc_target(
    registry_uri: str, columns: list[str], applicants: list[dict[str, Any]], env: dict[str, str]
) -> Target:
    """The creditops version as MLflow serves it: the pyfunc model registered with it."""
    from mlflow.tracking import MlflowClient

    version = MlflowClient(registry_uri, registry_uri).get_model_version_by_alias(
        MODEL, "production"
    )
    if not str(version.source).startswith("models:/"):
        raise RuntimeError(
            f"{MODEL} v{version.version} was registered without a pyfunc model (before "
            "creditops logged one); run with --fresh or --skip-pyfunc"
        )
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return Target(
        "pyfunc",
        "{bin}/mlflow models serve -m {uri} --env-manager local --workers {workers} "
        "-p {port} --host {host}",
        {"uri": f"models:/{MODEL}@production"},
        {**env, "MLFLOW_TRACKING_URI": registry_uri, "PATH": path},
        "/ping",
        "/invocations",
        [
            _dumps(
                {
                    "dataframe_split": {
                        "columns": columns,
                        "data": [[a["features"][c] for c in columns]],
                    }
                }
            )
            for a in applicants
        ],
    )


def floor_target(
    config: Path, names: list[str], rows: npt.NDArray[np.float64], env: dict[str, str]
) -> Target:
    return Target(
        "floor",
        "{bin}/uvicorn --app-dir {here} --factory _floor_app:create_app --host {host} "
        "--port {port} --workers {workers} --log-level warning --no-access-log",
        {"here": HERE},
        {**env, "FLOOR_CONFIG": str(config)},
        "/health",
        "/predict",
        [_dumps({"features": dict(zip(names, r.tolist(), strict=True))}) for r in rows],
    )


def creditops_target(
    home: Path, key: str, applicants: list[dict[str, Any]], reasons: str, env: dict[str, str]
) -> Target:
    return Target(
        "creditops",
        "{bin}/creditops serve --host {host} --port {port} --workers {workers}",
        {},
        {
            **env,
            "CREDITOPS_HOME": str(home),
            "CREDITOPS_SERVE__AUTH_ENABLED": "true",
            "CREDITOPS_SERVE__REASONS_FOR": reasons,
        },
        "/ready",
        f"/v1/models/{MODEL}/predict",
        [_dumps(a) for a in applicants],
        {"Authorization": f"Bearer {key}"},
    )


# -- orchestration and report --------------------------------------------------------


def sanity_check(target: Target, port: int, expected: dict[str, float]) -> None:
    """One request before the load: the right answer, so a fast error cannot pass as speed."""
    answer = post_json(port, target.request_path, target.bodies[0], target.headers)
    if target.name == "mlflow":
        got, want = float(answer["predictions"][0]), expected["pd_raw"]
    elif target.name == "pyfunc":
        got, want = float(answer["predictions"][0]["pd"]), expected["pd_calibrated"]
    elif target.name == "floor":
        got, want = float(answer["pd"]), expected["pd_raw"]
    else:
        got, want = float(answer["pd"]), expected["pd_calibrated"]
        if answer["decision"] not in ("approve", "review", "decline"):
            raise RuntimeError(f"creditops answered {answer}")
    if not np.isclose(got, want, rtol=1e-9, atol=1e-12):
        raise RuntimeError(f"{target.name} answered pd={got}, expected {want}: {answer}")


def run_load(
    target: Target, port: int, concurrency: int, args: argparse.Namespace
) -> dict[str, Any]:
    spec = {
        "port": port,
        "concurrency": concurrency,
        "warmup": args.warmup,
        "requests_max": args.requests,
        "seconds": args.seconds,
        "requests": target.http_requests(port),
    }
    spec_path = WORK / f"load-{target.name}-{concurrency}.json"
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, __file__, "_loadgen", str(spec_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"server": target.name, "concurrency": concurrency, **result}


def print_report(results: list[dict[str, Any]], setup: Setup, args: argparse.Namespace) -> None:
    print()
    header = f"{'server':<10}{'conc':>5}{'requests':>10}{'req/s':>10}{'p50 ms':>9}"
    print(header + f"{'p99 ms':>9}{'errors':>8}")
    for r in results:
        print(
            f"{r['server']:<10}{r['concurrency']:>5}{r['requests']:>10}{r['rps']:>10.1f}"
            f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['errors']:>8}"
        )
    by = {(r["server"], r["concurrency"]): r for r in results}
    print()
    for c in args.concurrency:
        co = by.get(("creditops", c))
        for other in ("mlflow", "pyfunc", "floor"):
            base = by.get((other, c))
            if co and base:
                print(
                    f"concurrency {c:>2}: creditops/{other:<6} throughput "
                    f"{co['rps'] / base['rps']:6.2f}x, p99 {co['p99_ms'] / base['p99_ms']:6.3f}x"
                )
    top = max(args.concurrency)
    co, ml, fl = (by.get((s, top)) for s in ("creditops", "mlflow", "floor"))
    print(f"\ntargets at concurrency {top}:")
    if co and ml:
        ratio = co["rps"] / ml["rps"]
        aim = "met" if ratio >= AIM_THROUGHPUT else "not met"
        print(
            f"  throughput >= {TARGET_THROUGHPUT:g}x MLflow: {_verdict(ratio >= TARGET_THROUGHPUT)}"
            f" ({ratio:.2f}x; aim {AIM_THROUGHPUT:g}x {aim})"
        )
        p99 = co["p99_ms"] / ml["p99_ms"]
        print(f"  p99 <= 1/5 of MLflow's: {_verdict(p99 <= TARGET_P99)} ({p99:.3f}x)")
    if co and fl:
        ratio = co["rps"] / fl["rps"]
        print(
            f"  throughput within 2x of the floor: {_verdict(ratio >= TARGET_FLOOR)} ({ratio:.2f}x)"
        )
    print(
        f"\nnotes: {args.workers} worker process(es) per server, {os.cpu_count()} CPU(s); the "
        "load generator runs on the same machine and competes with the server for CPU (the "
        "same generator drives every server, so ratios are comparable, absolute numbers are "
        "low). pyfunc: MLflow's server around the creditops model (encoding, calibration, "
        "policy, reason codes for every applicant; no auth, no decision log)."
        f" OMP_NUM_THREADS: {args.omp_threads or 'unset (LightGBM uses every core)'}."
        f"\ncreditops: auth on, decision log on SQLite, metrics on, reason codes for "
        f"'{args.reasons_for}' decisions; {setup.adverse_share:.0%} of the benchmark "
        "applicants get an adverse (review/decline) decision and so TreeSHAP reason codes."
    )


def _verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="Most requests per run.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Longest run, seconds.")
    parser.add_argument("--warmup", type=int, default=200, help="Unrecorded requests first.")
    parser.add_argument("--concurrency", default="1,16", help="Comma-separated levels.")
    parser.add_argument("--workers", type=int, default=1, help="Worker processes per server.")
    parser.add_argument("--applicants", type=int, default=1000, help="Distinct applicants.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the applicant sample.")
    parser.add_argument("--reasons-for", choices=["adverse", "all"], default="adverse")
    parser.add_argument(
        "--omp-threads", type=int, default=0, help="OMP_NUM_THREADS for every server (0: unset)."
    )
    parser.add_argument("--skip-mlflow", action="store_true", help="Do not run MLflow.")
    parser.add_argument(
        "--skip-pyfunc", action="store_true", help="Do not serve the creditops pyfunc model."
    )
    parser.add_argument("--skip-floor", action="store_true", help="Do not run the floor.")
    parser.add_argument("--fresh", action="store_true", help="Retrain; new MLflow store.")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    if not args.concurrency or min(args.concurrency) < 1 or args.requests < 1:
        parser.error("--concurrency needs positive integers and --requests must be >= 1")
    return args


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through every ``running`` block, stopping servers


def main(argv: list[str]) -> int:
    if argv[:1] == ["_loadgen"]:
        loadgen_main(argv[1])
        return 0
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    results: list[dict[str, Any]] = []
    try:
        setup = build_setup(args)
        for target in setup.targets.values():
            port = free_port()
            print(f"starting {target.name} on port {port} ...", flush=True)
            with running(target, port, args.workers):
                sanity_check(target, port, setup.expected)
                for c in args.concurrency:
                    results.append(run_load(target, port, c, args))
                    r = results[-1]
                    print(
                        f"  concurrency {c}: {r['rps']:.1f} req/s, p99 {r['p99_ms']:.1f} ms, "
                        f"{r['errors']} errors",
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    print_report(results, setup, args)
    (WORK / "results.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "adverse_share": setup.adverse_share,
                "expected": setup.expected,
                "results": results,
            },
            indent=2,
        )
    )
    failed = [r for r in results if r["errors"]]
    for r in failed:
        print(f"ERRORS from {r['server']} at {r['concurrency']}: {r['error_sample']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
