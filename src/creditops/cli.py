"""The ``creditops`` command line: parse, build the context, call one use case, print.

Errors raised on purpose (:class:`creditops.errors.CreditopsError`) become one line on
stderr and a non-zero exit code: 2 for bad input or unknown names, 1 for everything else
(and for a failed validation gate).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from creditops.errors import CreditopsError, InvalidInputError, NotFoundError
from creditops.settings import get_settings

T = TypeVar("T")

app = typer.Typer(
    name="creditops",
    help="Train, gate, register and score credit-risk (PD) models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List and promote registered model versions.", no_args_is_help=True)
policy_app = typer.Typer(help="Decision policy tools.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys for the decision service.", no_args_is_help=True)
decisions_app = typer.Typer(help="The decision log: export and retention.", no_args_is_help=True)
db_app = typer.Typer(help="The service database.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(policy_app, name="policy")
app.add_typer(keys_app, name="keys")
app.add_typer(decisions_app, name="decisions")
app.add_typer(db_app, name="db")

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
NameOpt = Annotated[str, typer.Option("--name", "-n", help="Registered model name.")]


def _context() -> Any:
    from creditops.services.context import AppContext

    return AppContext(get_settings())


def _fail(exc: CreditopsError) -> typer.Exit:
    code = 2 if isinstance(exc, (InvalidInputError, NotFoundError)) else 1
    err.print(f"[bold red]error:[/] {exc.message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def run(action: Callable[[], T]) -> T:
    """Call a use case and turn domain errors into one line and an exit code."""
    try:
        return action()
    except CreditopsError as exc:
        raise _fail(exc) from None
    except OSError as exc:
        err.print(f"[bold red]error:[/] {exc.strerror or exc}: {exc.filename or ''}")
        raise typer.Exit(1) from None


@contextmanager
def progress(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A spinner with the current step; finished steps are listed with their duration."""
    if not enabled:
        yield lambda _msg: None
        return
    state: dict[str, Any] = {"step": "", "started": time.monotonic()}
    with err.status("starting") as status:

        def report(message: str) -> None:
            now = time.monotonic()
            if message.startswith("warning:"):
                err.print(f"[yellow]{message}[/]")
                return
            if state["step"]:
                err.print(f"[green]done[/] {state['step']} ({now - float(state['started']):.1f}s)")
            state.update(step=message, started=now)
            status.update(message)

        yield report
        if state["step"]:
            took = time.monotonic() - float(state["started"])
            err.print(f"[green]done[/] {state['step']} ({took:.1f}s)")


def _print_json(payload: object) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


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
    ctx = _context()
    with progress(not as_json) as say:
        outcome = run(lambda: train_and_register(ctx, request, say))
    if as_json:
        _print_json(outcome.to_dict())
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

    ctx = _context()
    with progress(not as_json) as say:
        say("validating")
        outcome = run(lambda: run_gate(ctx, name, version, profile))
    if as_json:
        _print_json(outcome.to_dict())
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
    from creditops.services.models import list_models

    ctx = _context()
    rows = run(lambda: list_models(ctx, name))
    if as_json:
        _print_json(rows)
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
            {"true": "passed", "false": "failed"}.get(row["gate_passed"] or "", "-"),
            row["created_at"][:19],
        )
    out.print(table)


@models_app.command("promote")
def models_promote(
    name: NameOpt,
    version: Annotated[str, typer.Option(help="Version to promote.")],
    to: Annotated[str, typer.Option("--to", help="staging or production.")],
    force: Annotated[bool, typer.Option(help="Promote even without a passed gate.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Point the staging or production alias at a version."""
    from creditops.services.models import promote

    ctx = _context()
    info = run(lambda: promote(ctx, name, version, to, force=force))
    if as_json:
        _print_json({"name": info.name, "version": info.version, "aliases": list(info.aliases)})
    else:
        out.print(
            f"{info.name} version {info.version} is now {to} (aliases: {', '.join(info.aliases)})"
        )


@app.command()
def score(
    name: NameOpt,
    input_path: Annotated[Path, typer.Option("--input", help="Applicants (CSV or Parquet).")],
    output: Annotated[Path, typer.Option("--output", help="Where to write the scored file.")],
    version: Annotated[str | None, typer.Option(help="Version number.")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias, e.g. production.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a file: input columns plus pd, score, decision and reason codes."""
    from creditops.services.models import resolve_ref
    from creditops.services.scoring import score_file

    ctx = _context()
    started = time.perf_counter()
    outcome = run(lambda: score_file(ctx, name, resolve_ref(version, alias), input_path, output))
    elapsed = time.perf_counter() - started
    if as_json:
        _print_json(outcome.to_dict() | {"seconds": round(elapsed, 3)})
    else:
        summary = ", ".join(f"{k} {v}" for k, v in sorted(outcome.decisions.items()))
        out.print(
            f"Scored {outcome.rows} rows with {name} v{outcome.version} in {elapsed:.2f}s "
            f"({summary}) -> {outcome.output}"
        )


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
    from creditops.services.models import resolve_ref
    from creditops.services.scoring import what_if

    def parse() -> list[float] | None:
        if not cutoffs:
            return None
        try:
            return [float(c) for c in cutoffs.split(",") if c.strip()]
        except ValueError:
            raise InvalidInputError(
                f"--cutoffs must be numbers separated by commas; got {cutoffs!r}", field="cutoffs"
            ) from None

    ctx = _context()
    rows = run(lambda: what_if(ctx, name, resolve_ref(version, alias), parse(), lgd))
    if as_json:
        _print_json(rows)
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
def info() -> None:
    """Where creditops keeps its state, and how to open the MLflow UI on it."""
    settings = get_settings()
    out.print(f"CREDITOPS_HOME: {settings.home_dir}")
    out.print(f"MLflow tracking URI: {settings.tracking_uri}")
    out.print(f"Reports: {settings.reports_dir}")
    out.print(
        "MLflow UI: mlflow ui --backend-store-uri "
        f"{settings.tracking_uri} --default-artifact-root {settings.artifact_root.as_uri()}"
    )


def _sessions() -> Any:
    from creditops.store.engine import create_db_engine, session_factory
    from creditops.store.migrations_api import ensure_current

    settings = get_settings()
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    ensure_current(settings.database)
    return session_factory(create_db_engine(settings.database))


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Apply the database migrations (the service does this at start-up too)."""
    from creditops.store.migrations_api import current_revision, upgrade_database

    settings = get_settings()
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    run(lambda: upgrade_database(settings.database, revision))
    out.print(f"database at revision {current_revision(settings.database)}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Option(help="Target revision, e.g. base.")],
) -> None:
    """Revert migrations down to a revision."""
    from creditops.store.migrations_api import current_revision, downgrade_database

    settings = get_settings()
    run(lambda: downgrade_database(settings.database, revision))
    out.print(f"database at revision {current_revision(settings.database)}")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated scopes, e.g. predict,explain.")],
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; the key is printed once and stored only as a hash."""
    from creditops.domain.access import SCOPES
    from creditops.services.records import cli_actor, create_key

    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    created = run(lambda: create_key(_sessions(), name, wanted, SCOPES, cli_actor()))
    if as_json:
        _print_json(
            {
                "key": created.key,
                "id": created.key_id,
                "name": created.name,
                "scopes": created.scopes,
            }
        )
    else:
        out.print(
            f"API key {created.key_id} ({', '.join(created.scopes)}). Store it now; "
            "it is not shown again:"
        )
        out.print(created.key, soft_wrap=True)


@keys_app.command("list")
def keys_list(as_json: JsonOpt = False) -> None:
    """List API keys (never the secrets)."""
    from creditops.services.records import list_keys

    rows = run(lambda: list_keys(_sessions()))
    if as_json:
        _print_json(rows)
        return
    table = Table(title="API keys")
    for column in ("id", "name", "scopes", "created", "last used", "revoked"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["id"],
            row["name"],
            ",".join(row["scopes"]),
            row["created_at"][:19],
            (row["last_used_at"] or "")[:19],
            (row["revoked_at"] or "")[:19],
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Option("--id", help="Key id to revoke.")]) -> None:
    """Revoke an API key (effective on every worker within seconds)."""
    from creditops.services.records import cli_actor, revoke_key

    run(lambda: revoke_key(_sessions(), key_id, cli_actor()))
    out.print(f"revoked {key_id}")


def _parse_since(since: str | None) -> Any:
    from creditops.domain.windows import parse_since

    return parse_since(since) if since else None


@decisions_app.command("export")
def decisions_export(
    output: Annotated[Path, typer.Option(help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    since: Annotated[str | None, typer.Option(help="e.g. 24h, 7d or 2026-11-01.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
) -> None:
    """One row per decision, with reasons and inputs, for analysts."""
    from creditops.services.records import export_decisions

    rows = run(lambda: export_decisions(_sessions(), output, fmt, _parse_since(since), model))
    out.print(f"exported {rows} decisions to {output}")


@decisions_app.command("purge")
def decisions_purge(
    retention_days: Annotated[
        int | None, typer.Option(help="Override CREDITOPS_SERVE__RETENTION_DAYS.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete decisions (and their outcomes and reviews) older than the retention period."""
    from creditops.services.records import cli_actor, purge_decisions

    days = retention_days if retention_days is not None else get_settings().serve.retention_days
    if days < 1:
        raise _fail(InvalidInputError("--retention-days must be at least 1"))
    result = run(lambda: purge_decisions(_sessions(), days, cli_actor()))
    if as_json:
        _print_json(result)
    else:
        out.print(f"removed {result['removed']} decisions older than {result['cutoff']}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
) -> None:
    """Run the decision service (uvicorn) on the embedded defaults or configured stores."""
    import os
    import tempfile

    import uvicorn

    from creditops.store.migrations_api import ensure_current

    settings = get_settings()
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    run(lambda: ensure_current(settings.database))
    n_workers = workers or settings.serve.workers
    os.environ["CREDITOPS_HOME"] = str(settings.home_dir)
    if n_workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = Path(tempfile.mkdtemp(prefix="metrics-", dir=settings.home_dir))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    uvicorn.run(
        "creditops.api.app:create_app",
        factory=True,
        host=host or settings.serve.host,
        port=port or settings.serve.port,
        workers=n_workers,
        log_level="warning",
        access_log=False,
    )


@app.command()
def drift(
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Served model (log window).")
    ] = None,
    since: Annotated[str, typer.Option(help="Window of logged decisions: 24h, 7d, ISO.")] = "24h",
    spec: Annotated[Path | None, typer.Option(help="Spec, for file mode.")] = None,
    reference: Annotated[Path | None, typer.Option(help="Reference file (file mode).")] = None,
    current: Annotated[Path | None, typer.Option(help="Current file (file mode).")] = None,
    report: Annotated[Path | None, typer.Option(help="Write an HTML report here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Data drift: a model's logged window vs its reference, or two files vs each other."""
    from creditops.features.spec import load_spec
    from creditops.services import monitoring

    settings = get_settings()
    if name and (reference or current):
        raise _fail(InvalidInputError("give either --name or --spec/--reference/--current"))
    if name:
        since_at = run(lambda: _parse_since(since))
        outcome = run(
            lambda: monitoring.run_checks(
                _context(),
                _sessions(),
                name,
                since=since_at,
                triggered_by="cli",
                kinds=("data_drift", "prediction_drift"),
            )
        )
        result = outcome.results["data_drift"] | {
            "prediction_drift": outcome.results["prediction_drift"]
        }
    elif spec and reference and current:
        config = run(lambda: monitoring.drift_config(settings.monitor.drift))
        result = run(
            lambda: monitoring.file_drift(load_spec(spec), reference, current, config).to_dict()
        )
    else:
        raise _fail(InvalidInputError("give --name NAME, or --spec SPEC --reference A --current B"))
    if report is not None:
        from creditops.reporting.drift_report import render_drift_report

        run(lambda: render_drift_report(result, report, title=f"Drift report: {name or spec}"))
    if as_json:
        _print_json(result)
    else:
        table = Table(title=f"Data drift ({result.get('mode', '')}): level {result['level']}")
        for column in ("feature", "method", "statistic", "p (adj.)", "PSI", "drifted"):
            table.add_column(column)
        for f in result["features"]:
            p = f.get("p_value_adjusted")
            table.add_row(
                f["feature"],
                f["method"],
                _fmt(f.get("statistic")),
                _fmt(p),
                _fmt(f.get("psi")),
                "[red]yes[/]" if f["drifted"] else "no",
            )
        out.print(table)
        out.print(
            f"drift score {result['drift_score']:.3f}, drifted share "
            f"{result['drifted_share']:.1%}, level {result['level']}"
            + (f"; report: {report}" if report else "")
        )
    if result["level"] == "critical":
        raise typer.Exit(1)


def _fmt(value: object) -> str:
    return "" if value is None else f"{float(value):.4g}"  # type: ignore[arg-type]


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Run one scheduler pass and exit.")] = False,
) -> None:
    """Run scheduled monitoring checks and alerts (the background worker process)."""
    import logging

    from creditops.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run(lambda: run_worker(get_settings(), once=once))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
