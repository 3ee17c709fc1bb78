"""Benchmark: what a shadow deployment costs the answers (issue 13's aim: at most 35% fewer
requests per second at concurrency 16 on a 2-core machine).

    .venv/bin/python benchmarks/shadow_cost.py [--seconds 10] [--pairs 2] [--concurrency 16]

One ``creditops serve`` process (one worker, API keys, the SQLite decision log) serves the
Taiwan demo model (trained once under ``benchmarks/.work/shadow_cost``, as in
``serve_vs_mlflow.py``, whose load generator and helpers this script uses). A second
version (the same bundle, validated) is registered. The same server is then loaded in
alternating phases: without a deployment, and with that version in shadow (started with
``creditops deploy start --strategy shadow`` and driven by ``creditops worker --once``), so
that both conditions share the process, the warm caches and the machine's state. Each
phase is a closed loop of at most ``--seconds`` seconds at ``--concurrency`` connections on
127.0.0.1. It prints req/s and p99 per phase, the median ratio shadow/none, and how many
shadow decisions were stored against the answers given.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import serve_vs_mlflow as sv  # noqa: E402 - the sibling benchmark's helpers

AIM = 0.65  # shadow req/s >= 65% of the req/s without shadow


def register_second_version(home: Path) -> str:
    from creditops.registry.records import RegistrationRequest
    from creditops.services.context import AppContext
    from creditops.settings import Settings

    ctx = AppContext(Settings(home=home))
    info = ctx.registry.get_version(sv.MODEL, "production")
    bundle = ctx.registry.download_bundle(sv.MODEL, info.version, sv.WORK / "bundle")
    made = ctx.registry.register(
        RegistrationRequest(
            name=sv.MODEL,
            bundle_path=bundle,
            bundle_sha256=info.tags["bundle_sha256"],
            params={},
            metrics=info.metrics,
            tags={"gate_passed": "true", "benchmark": "shadow"},
            artifacts={},
        )
    )
    return made.version


def deploy(home: Path, action: str, version: str, deployment_id: str | None) -> str | None:
    if action == "start":
        started = sv.checked(
            sv.creditops_cli(
                home,
                "deploy start --name {m} --version {v} --strategy shadow --json",
                m=sv.MODEL,
                v=version,
            )
        )
        sv.checked(sv.creditops_cli(home, "worker --once"))
        return str(json.loads(started)["deployment_id"])
    sv.checked(sv.creditops_cli(home, "deploy abort {d}", d=deployment_id))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    sv.WORK = HERE / ".work" / "shadow_cost"
    sv.WORK.mkdir(parents=True, exist_ok=True)
    home = sv.WORK / "home"
    key = sv.prepare_creditops(home)
    version = register_second_version(home)
    import pandas as pd

    frame = pd.read_csv(sv.DATA / "taiwan_credit_card.csv").head(2000)
    columns = [c for c in frame.columns if c not in ("id", "target", "_is_test")]
    applicants = [
        {"application_id": f"bench-{i}", "features": {c: sv._plain(row[c]) for c in columns}}
        for i, (_, row) in enumerate(frame.iterrows())
    ]
    target = sv.creditops_target(
        home, key, applicants, "adverse", {"CREDITOPS_SERVE__RELOAD_INTERVAL_S": "0.5"}
    )
    port = sv.free_port()
    phases: list[dict[str, Any]] = []
    with sv.running(target, port, 1):
        deployment_id = None
        for pair in range(args.pairs):
            for mode in ("none", "shadow"):
                if mode == "shadow":
                    deployment_id = deploy(home, "start", version, None)
                time.sleep(2.0)  # the server follows within its reload interval
                result = sv.run_load(target, port, args.concurrency, args)
                phases.append({"pair": pair, "mode": mode, **result})
                rps, p99 = result["rps"], result["p99_ms"]
                print(f"pair {pair} {mode:<7} {rps:>8.1f} req/s  p99 {p99:.1f} ms", flush=True)
                if mode == "shadow":
                    time.sleep(1.0)  # let the last shadow batch be stored
                    deploy(home, "abort", version, deployment_id)
    with sqlite3.connect(home / "creditops.db") as db:
        answered = db.execute(
            "SELECT count(*) FROM decisions WHERE deployment_id IS NOT NULL"
        ).fetchone()[0]
        shadowed = db.execute("SELECT count(*) FROM shadow_decisions").fetchone()[0]
    ratios = [
        next(p for p in phases if p["pair"] == i and p["mode"] == "shadow")["rps"]
        / next(p for p in phases if p["pair"] == i and p["mode"] == "none")["rps"]
        for i in range(args.pairs)
    ]
    ratio = statistics.median(ratios)
    print()
    print(f"{'phase':<16}{'req/s':>10}{'p99 ms':>10}{'errors':>8}")
    for p in phases:
        print(
            f"pair {p['pair']} {p['mode']:<9}{p['rps']:>10.1f}{p['p99_ms']:>10.1f}{p['errors']:>8}"
        )
    print(
        f"\nshadow/none req/s, median of {args.pairs} pairs: {ratio:.2f} "
        f"(aim >= {AIM:.2f}: {'met' if ratio >= AIM else 'NOT met'})"
    )
    print(
        f"decisions answered during shadow phases: {answered}; shadow decisions stored: {shadowed}"
    )
    sys.exit(0 if all(p["errors"] == 0 for p in phases) else 1)


if __name__ == "__main__":
    main()
