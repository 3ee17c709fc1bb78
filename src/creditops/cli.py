"""The ``creditops`` command line: parse, build the context, call one use case, print.

The service commands (``serve``, ``worker``, ``drift``, ``db``, ``keys``, ``decisions``) are
in :mod:`creditops.cli_operations`, shared helpers in :mod:`creditops.cli_support`.

Errors raised on purpose (:class:`creditops.errors.CreditopsError`) become one line on
stderr and a non-zero exit code: 2 for bad input or unknown names, 1 for everything else
(and for a failed validation gate).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from creditops import cli_operations
from creditops.cli_support import (
    JsonOpt,
    NameOpt,
    context,
    err,
    fail,
    out,
    print_json,
    progress,
    run,
    sessions,
)
from creditops.errors import InvalidInputError
from creditops.settings import get_settings

app = typer.Typer(
    name="creditops",
    help="Train, gate, register and score credit-risk (PD) models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List and promote registered model versions.", no_args_is_help=True)
policy_app = typer.Typer(help="Decision policy tools.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(policy_app, name="policy")


def _print_version(value: bool) -> None:
    if value:
        from creditops import __version__

        out.print(f"creditops {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            metavar="",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Train, gate, register and score credit-risk (PD) models."""


def _metrics_table(title: str, metrics: dict[str, Any], baseline: dict[str, Any] | None) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("test", justify="right")
    if baseline:
        table.add_column("scorecard baseline", justify="right")
    for key in ("auc", "gini", "ks", "brier", "log_loss", "accuracy", "precision", "recall", "f1"):
        value = metrics.get(key)
        row = [key, "n/a" if value is None else f"{value:.4f}"]
        if baseline:
            base = baseline.get(key)
            row.append("n/a" if base is None else f"{base:.4f}")
        table.add_row(*row)
    return table


@app.command()
def train(
    spec: Annotated[Path, typer.Option("--spec", help="Spec YAML (the data contract).")],
    data: Annotated[Path, typer.Option("--data", help="Training data (CSV or Parquet).")],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Model name (wins over the spec's).")
    ] = None,
    algorithm: Annotated[
        Literal["lightgbm", "logistic"], typer.Option(help="Model family.")
    ] = "lightgbm",
    policy: Annotated[Path | None, typer.Option(help="Decision policy YAML.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    calibration: Annotated[
        Literal["auto", "isotonic", "platt", "none"] | None,
        typer.Option(help="Calibration method (default auto: chosen by CV Brier)."),
    ] = None,
    tune_trials: Annotated[int, typer.Option(min=0, help="Optuna trials (0 = no tuning).")] = 0,
    tune_timeout: Annotated[float | None, typer.Option(help="Tuning time budget, seconds.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train, evaluate on the test split, register a new version and write its report."""
    from creditops.services.training import TrainRequest, train_and_register

    request = TrainRequest(
        spec_path=spec,
        data_path=data,
        name=name,
        algorithm=algorithm,
        policy_path=policy,
        seed=seed,
        calibration=calibration,
        tune_trials=tune_trials,
        tune_timeout_s=tune_timeout,
    )
    ctx = context()
    with progress(not as_json) as say:
        outcome = run(lambda: train_and_register(ctx, request, say))
    if as_json:
        print_json(outcome.to_dict())
        return
    out.print(
        f"Registered [bold]{outcome.name}[/] version [bold]{outcome.version}[/] "
        f"({outcome.model_uri})"
    )
    out.print(_metrics_table("Test metrics", outcome.metrics, outcome.baseline_metrics))
    out.print(f"Report: {outcome.report}")
    out.print(f"MLflow: {outcome.tracking_uri}")


@app.command()
def validate(
    name: NameOpt,
    version: Annotated[str | None, typer.Option(help="Version or alias (default: newest).")] = None,
    profile: Annotated[
        str | None, typer.Option(help="Gate profile YAML, or a built-in: default, seed.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the validation gate; exit 0 when it passes, 1 when it fails."""
    from creditops.services.validation import validate as run_gate

    ctx = context()
    with progress(not as_json) as say:
        say("validating")
        outcome = run(lambda: run_gate(ctx, name, version, profile))
    if as_json:
        print_json(outcome.to_dict())
    else:
        table = Table(title=f"Gate '{outcome.result.profile}' for {name} v{outcome.version}")
        for column in ("check", "attribute", "value", "threshold", "result"):
            table.add_column(column)
        for check in outcome.result.checks:
            value = "n/a" if check.value is None else f"{check.value:.4f}"
            op = ">=" if check.kind == "min" else "<="
            verdict = "[green]pass[/]" if check.passed else "[red]FAIL[/]"
            table.add_row(
                check.metric, check.attribute or "", value, f"{op} {check.threshold:g}", verdict
            )
        out.print(table)
        verdict = "[bold green]PASSED[/]" if outcome.result.passed else "[bold red]FAILED[/]"
        out.print(f"Gate {verdict}. Report: {outcome.report}")
    if not outcome.result.passed:
        raise typer.Exit(1)


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Option("--name", "-n", help="Only this model.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List registered versions, newest first."""
    from creditops.services.model_versions import list_models

    ctx = context()
    rows = run(lambda: list_models(ctx, name))
    if as_json:
        print_json(rows)
        return
    table = Table(title="Registered model versions")
    for column in ("name", "version", "aliases", "algorithm", "auc", "gate", "created"):
        table.add_column(column)
    for row in rows:
        auc = row["metrics"].get("auc")
        table.add_row(
            row["name"],
            row["version"],
            ",".join(row["aliases"]),
            row["algorithm"],
            "" if auc is None else f"{auc:.4f}",
            {True: "passed", False: "failed"}.get(row["gate_passed"], "-"),
            row["created_at"][:19],
        )
    out.print(table)


@models_app.command("promote")
def models_promote(
    name: NameOpt,
    version: Annotated[str, typer.Option(help="Version to promote.")],
    to: Annotated[str, typer.Option("--to", help="staging or production.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force", metavar="", help="Promote without a passed gate (needs --reason; recorded)."
        ),
    ] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit trail).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Point the staging or production alias at a version (directly, no deployment: the
    serving processes follow within their reload interval)."""
    from creditops.services.access import cli_actor
    from creditops.services.deployments import promote_alias

    ctx = context()
    info = run(
        lambda: promote_alias(
            ctx, sessions(), name, version, to, force=force, reason=reason, actor=cli_actor()
        )
    )
    if as_json:
        print_json({"name": info.name, "version": info.version, "aliases": list(info.aliases)})
    else:
        out.print(
            f"{info.name} version {info.version} is now {to} (aliases: {', '.join(info.aliases)})"
        )


@models_app.command("rollback")
def models_rollback(
    name: NameOpt,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit trail).")],
    to: Annotated[
        str | None,
        typer.Option("--to", help="A version (default: the previous production version)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Back to the previous production version: a deployment in progress is rolled back,
    else the production alias moves back to the version the last deployment replaced."""
    from creditops.services.access import cli_actor
    from creditops.services.deployments import rollback

    result = run(lambda: rollback(context(), sessions(), name, cli_actor(), reason, to))
    if as_json:
        print_json(result)
    elif "deployment_id" in result:
        out.print(
            f"{name}: deployment {result['deployment_id']} rolled back; "
            f"v{result['stable_version']} answers everything"
        )
    else:
        out.print(
            f"{name}: production is v{result['to_version']} again (was v{result['from_version']})"
        )


@models_app.command("history")
def models_history(
    name: NameOpt,
    at: Annotated[str, typer.Option(help="An ISO 8601 instant (naive = UTC).")],
    as_json: JsonOpt = False,
) -> None:
    """Which versions answered at that instant, with which share, and who put them there
    (replayed from the audit trail)."""
    from creditops.domain.windows import parse_time
    from creditops.services.audit import history_at

    result = run(lambda: history_at(sessions(), name, parse_time(at, field="at")))
    if as_json:
        print_json(result)
        return
    if not result["serving"]:
        out.print(f"{name}: nothing recorded as serving at {result['at']}")
    for entry in result["serving"]:
        out.print(f"{name} v{entry['version']}: {entry['share']:.0%} ({entry['arm']})")
    if result["deployment"]:
        d = result["deployment"]
        out.print(f"  under {d['strategy']} {d['deployment_id']}, started by {d['started_by']}")
    if result["production_put_by"]:
        out.print(
            f"  production v{result['production']} put there by {result['production_put_by']}"
        )


@app.command()
def score(
    name: NameOpt,
    input_path: Annotated[
        Path,
        typer.Option("--input", help="Applicants: a CSV or Parquet file, or a directory of them."),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            help="Where to write the scored file (Parquet by its suffix, else CSV); with "
            "--engine spark, a directory of Parquet files.",
        ),
    ],
    version: Annotated[str | None, typer.Option(help="Version number.")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias, e.g. production.")] = None,
    engine: Annotated[
        Literal["local", "spark"],
        typer.Option(
            help="Score here, in chunks on every core, or on Spark (pip install "
            "'creditops[spark]'); both write the same rows."
        ),
    ] = "local",
    master: Annotated[
        str, typer.Option(help="Spark master URL, with --engine spark: local[2], spark://h:7077.")
    ] = "local[*]",
    chunk_rows: Annotated[
        int | None,
        typer.Option(
            "--chunk-rows",
            help="Rows scored at a time per worker (local engine; default 50,000): memory "
            "grows with it, not with the input.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes (local engine; default: every core)."),
    ] = None,
    reasons_for: Annotated[
        Literal["all", "adverse"],
        typer.Option(
            "--reasons-for",
            help="Reason codes for every row, or only for review and decline rows (as the "
            "API answers by default; about half the work).",
        ),
    ] = "all",
    as_json: JsonOpt = False,
) -> None:
    """Score a file or a directory of files: input columns plus pd, score, decision and
    reason codes, row for row in input order."""
    if engine == "local":
        from creditops.services.worker_pool import start_early

        start_early(input_path, ["creditops.services.scoring"], workers)
    from creditops.services.model_versions import resolve_ref

    ctx = context()
    started = time.perf_counter()
    if engine == "spark":
        try:
            from creditops.services.spark_engine import score_spark
        except ImportError:
            raise fail(
                InvalidInputError("--engine spark is not available in this installation")
            ) from None
        outcome = run(
            lambda: score_spark(
                ctx, name, resolve_ref(version, alias), input_path, output, master, reasons_for
            )
        )
    else:
        from creditops.services.batch import DEFAULT_CHUNK_ROWS, BatchOptions
        from creditops.services.scoring import score_file

        rows = DEFAULT_CHUNK_ROWS if chunk_rows is None else chunk_rows
        with _rows_progress(err.is_terminal and not as_json) as on_progress:
            options = run(lambda: BatchOptions(rows, workers, on_progress, reasons_for))
            outcome = run(
                lambda: score_file(
                    ctx, name, resolve_ref(version, alias), input_path, output, options
                )
            )
    elapsed = time.perf_counter() - started
    if as_json:
        print_json(outcome.to_dict() | {"seconds": round(elapsed, 3)})
    else:
        summary = ", ".join(f"{k} {v}" for k, v in sorted(outcome.decisions.items()))
        out.print(
            f"Scored {outcome.rows} rows with {name} v{outcome.version} in {elapsed:.2f}s "
            f"({summary}) -> {outcome.output}"
        )


@contextmanager
def _rows_progress(enabled: bool) -> Iterator[Callable[[int, int | None], None] | None]:
    """A progress bar on stderr: rows scored of rows expected, rows per second since the
    first chunk was written, and the time left at that rate."""
    if not enabled:
        yield None
        return
    from datetime import timedelta

    from rich.progress import BarColumn, Progress, ProgressColumn, Task
    from rich.text import Text

    class RowsColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            total = f"{task.total:,.0f}" if task.total else "?"
            text = f"{task.completed:,.0f}/{total} rows"
            rate = float(task.fields.get("rate") or 0.0)
            if rate > 0:
                text += f", {rate:,.0f} rows/s"
                if task.total and task.total > task.completed:
                    left = timedelta(seconds=round((task.total - task.completed) / rate))
                    text += f", {left} left"
            return Text(text)

    with Progress("scoring", BarColumn(), RowsColumn(), console=err) as bar:
        task = bar.add_task("scoring", total=None, rate=0.0)
        first: list[tuple[float, int]] = []

        def update(done: int, expected: int | None) -> None:
            now = time.perf_counter()
            if not first:
                first.append((now, done))
            since, rows = first[0]
            rate = (done - rows) / (now - since) if now > since else 0.0
            bar.update(task, completed=done, total=expected, rate=rate)

        yield update


@policy_app.command("what-if")
def policy_what_if(
    name: NameOpt,
    version: Annotated[str | None, typer.Option(help="Version number.")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias, e.g. production.")] = None,
    cutoffs: Annotated[
        str | None, typer.Option(help="Comma-separated approve cutoffs (score points).")
    ] = None,
    lgd: Annotated[float, typer.Option(help="Loss given default for expected loss.")] = 0.45,
    as_json: JsonOpt = False,
) -> None:
    """Approval rate, bad rate and expected loss at candidate cutoffs, on the test split."""
    from creditops.services.model_versions import resolve_ref
    from creditops.services.scoring import WhatIf, what_if

    def parse() -> list[float] | None:
        if not cutoffs:
            return None
        try:
            return [float(c) for c in cutoffs.split(",") if c.strip()]
        except ValueError:
            raise InvalidInputError(
                f"--cutoffs must be numbers separated by commas; got {cutoffs!r}", field="cutoffs"
            ) from None

    ctx = context()
    rows = run(lambda: what_if(ctx, name, resolve_ref(version, alias), WhatIf(parse(), lgd)))
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"What-if for {name} (test split, LGD {lgd:g})")
    for column in (
        "cutoff",
        "approval rate",
        "expected bad rate",
        "observed bad rate",
        "EL / applicant",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        mark = " *" if row["is_current"] else ""
        table.add_row(
            f"{row['cutoff']:g}{mark}",
            f"{row['approval_rate']:.1%}",
            f"{row['expected_bad_rate']:.2%}",
            f"{row['observed_bad_rate']:.2%}",
            f"{row['expected_loss_per_applicant']:.4f}",
        )
    out.print(table)
    out.print("* the policy's current approve cutoff")


@app.command()
def evidence(
    name: NameOpt,
    version: Annotated[str | None, typer.Option(help="Version number.")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias, e.g. production.")] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="Directory of the pack (default: reports/evidence/NAME-vVERSION under "
            "CREDITOPS_HOME).",
        ),
    ] = None,
    later: Annotated[
        Path | None,
        typer.Option(
            "--later",
            help="A later sample of applicants (CSV or Parquet; with the target column for "
            "the AUC-decline test): adds score PSI, CSI and the score-shift attribution.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The model-risk evidence pack of a version: model card, discrimination, benchmark,
    calibration back-tests, fairness in lending terms, stability and the governance record
    (HTML, JSON and the predictions behind every number; docs/evidence.md)."""
    from creditops.services.evidence import EvidenceRequest, build_evidence
    from creditops.services.model_versions import resolve_ref

    ctx = context()
    result = run(
        lambda: build_evidence(
            ctx, sessions(), EvidenceRequest(name, resolve_ref(version, alias), output, later)
        )
    )
    if as_json:
        print_json(result.to_dict())
        return
    out.print(f"Evidence pack of {name} v{result.version} -> {result.directory}")
    for finding in result.findings:
        out.print(f"  finding: {finding}")


@app.command()
def scorecard(
    name: NameOpt,
    version: Annotated[str | None, typer.Option(help="Version number.")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias, e.g. production.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The scorecard's points and binning tables (logistic: the model; LightGBM: its
    baseline)."""
    from creditops.services.model_versions import resolve_ref
    from creditops.services.scorecard import version_scorecard

    ctx = context()
    result = run(lambda: version_scorecard(ctx, name, resolve_ref(version, alias)))
    if as_json:
        print_json(result.to_dict())
        return
    tables = result.tables
    scaling = tables.scale.scaling
    role = "the model" if tables.role == "model" else "the logistic WoE baseline"
    out.print(f"Scorecard of {name} v{result.version} ({role})")
    out.print(
        f"Base points {tables.base_points:.2f}; {scaling.base_score:g} points at "
        f"{scaling.base_odds:g}:1 good:bad odds, {scaling.pdo:g} points to double the odds; "
        f"calibration {tables.scale.calibration}"
    )
    points = Table(title="Points (score = base points + one bin per characteristic)")
    for column in ("characteristic", "bin", "WoE", "points"):
        points.add_column(column, justify="right" if column in ("WoE", "points") else "left")
    for row in tables.points:
        points.add_row(row.feature, row.label, f"{row.woe:+.4f}", f"{row.points:+.2f}")
    out.print(points)
    for table in tables.binning:
        grid = Table(title=f"{table.feature}: IV {table.iv:.4f}")
        for column in ("bin", "count", "defaults", "default rate", "WoE", "IV part"):
            grid.add_column(column, justify="left" if column == "bin" else "right")
        for r in table.rows:
            grid.add_row(
                r.label,
                "n/a" if r.count is None else f"{r.count:,}",
                "n/a" if r.n_event is None else f"{r.n_event:,}",
                "n/a" if r.event_rate is None else f"{r.event_rate:.2%}",
                f"{r.woe:+.4f}",
                "n/a" if r.iv_contribution is None else f"{r.iv_contribution:.4f}",
            )
        out.print(grid)


@app.command()
def info(as_json: JsonOpt = False) -> None:
    """Where creditops keeps its state, and how to open the MLflow UI on it."""
    settings = get_settings()
    if as_json:
        print_json(
            {
                "home": str(settings.home_dir),
                "tracking_uri": settings.tracking_uri,
                "reports": str(settings.reports_dir),
                "artifact_root": settings.artifact_root.as_uri(),
            }
        )
        return
    out.print(f"CREDITOPS_HOME: {settings.home_dir}")
    out.print(f"MLflow tracking URI: {settings.tracking_uri}")
    out.print(f"Reports: {settings.reports_dir}")
    out.print(
        "MLflow UI: mlflow ui --backend-store-uri "
        f"{settings.tracking_uri} --default-artifact-root {settings.artifact_root.as_uri()}"
    )


cli_operations.register(app)  # after the commands above, so `--help` lists them first


def main() -> None:
    """The ``creditops`` console script. Everything it creates (the service database, the
    MLflow store and artefacts, reports, exports) is readable by its owner only."""
    import os

    from creditops.services.context import OWNER_ONLY_UMASK

    os.umask(OWNER_ONLY_UMASK)
    app()


if __name__ == "__main__":
    main()
