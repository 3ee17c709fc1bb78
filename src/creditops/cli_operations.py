"""Commands of the ``creditops`` command line that run or administer the service: ``serve``,
``worker``, ``drift``, and the ``db``, ``keys`` and ``decisions`` groups. :func:`register`
adds them to the application defined in :mod:`creditops.cli`; shared helpers are in
:mod:`creditops.cli_support`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from creditops.cli_support import (
    JsonOpt,
    context,
    fail,
    fmt,
    out,
    parse_since,
    print_json,
    run,
    sessions,
)
from creditops.errors import InvalidInputError
from creditops.services.context import make_home_private
from creditops.settings import get_settings

keys_app = typer.Typer(help="API keys for the decision service.", no_args_is_help=True)
decisions_app = typer.Typer(help="The decision log: export and retention.", no_args_is_help=True)
db_app = typer.Typer(help="The service database.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the service commands and groups to ``app``."""
    app.add_typer(keys_app, name="keys")
    app.add_typer(decisions_app, name="decisions")
    app.add_typer(db_app, name="db")
    app.command()(serve)
    app.command()(drift)
    app.command()(worker)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Apply the database migrations (the service does this at start-up too)."""
    from creditops.store.migrations_api import current_revision, upgrade_database

    settings = get_settings()
    make_home_private(settings)
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
    from creditops.services.access import cli_actor, create_key

    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    created = run(lambda: create_key(sessions(), name, wanted, SCOPES, cli_actor()))
    if as_json:
        print_json(
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
    from creditops.services.access import list_keys

    rows = run(lambda: list_keys(sessions()))
    if as_json:
        print_json(rows)
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
    from creditops.services.access import cli_actor, revoke_key

    run(lambda: revoke_key(sessions(), key_id, cli_actor()))
    out.print(f"revoked {key_id}")


@decisions_app.command("export")
def decisions_export(
    output: Annotated[Path, typer.Option(help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    since: Annotated[str | None, typer.Option(help="e.g. 24h, 7d or 2026-11-01.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """One row per decision, with reasons and inputs, for analysts. The file appears whole
    or not at all; in CSV, text a spreadsheet would run as a formula starts with '."""
    from creditops.services.archive import ExportRequest, export_decisions

    since_at = run(lambda: parse_since(since))
    request = ExportRequest(output, fmt, since_at, model, force=force)
    rows = run(lambda: export_decisions(sessions(), request))
    out.print(f"exported {rows} decisions to {output}")


@decisions_app.command("purge")
def decisions_purge(
    retention_days: Annotated[
        int | None, typer.Option(help="Override CREDITOPS_SERVE__RETENTION_DAYS.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete decisions (and their outcomes and reviews) older than the retention period."""
    from creditops.services.access import cli_actor
    from creditops.services.archive import purge_decisions

    days = retention_days if retention_days is not None else get_settings().serve.retention_days
    result = run(lambda: purge_decisions(sessions(), days, cli_actor()))
    if as_json:
        print_json(result)
    else:
        out.print(f"removed {result['removed']} decisions older than {result['cutoff']}")


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
    make_home_private(settings)
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
        raise fail(InvalidInputError("give either --name or --spec/--reference/--current"))
    if name:
        since_at = run(lambda: parse_since(since))
        request = monitoring.CheckRequest(
            model=name,
            since=since_at,
            triggered_by="cli",
            kinds=("data_drift", "prediction_drift"),
        )
        outcome = run(lambda: monitoring.run_checks(context(), sessions(), request))
        result = outcome.results["data_drift"] | {
            "prediction_drift": outcome.results["prediction_drift"]
        }
    elif spec and reference and current:
        config = run(lambda: monitoring.drift_config(settings.monitor.drift))
        result = run(
            lambda: monitoring.file_drift(load_spec(spec), reference, current, config).to_dict()
        )
    else:
        raise fail(InvalidInputError("give --name NAME, or --spec SPEC --reference A --current B"))
    if report is not None and result["level"] == "insufficient_data":
        report = None  # nothing was judged, so there is nothing to draw
    if report is not None:
        from creditops.reporting.drift_report import render_drift_report

        run(lambda: render_drift_report(result, report, title=f"Drift report: {name or spec}"))
    if as_json:
        print_json(result)
    else:
        _print_drift(result, report)
    if result["level"] == "critical":
        raise typer.Exit(1)


def _print_drift(result: dict[str, Any], report: Path | None) -> None:
    if result["level"] == "insufficient_data":
        out.print(f"insufficient data: {result['message']}; nothing judged, level not set")
        return
    table = Table(title=f"Data drift ({result.get('mode', '')}): level {result['level']}")
    for column in ("feature", "method", "statistic", "p (adj.)", "PSI", "drifted"):
        table.add_column(column)
    for f in result["features"]:
        table.add_row(
            f["feature"],
            f["method"],
            fmt(f.get("statistic")),
            fmt(f.get("p_value_adjusted")),
            fmt(f.get("psi")),
            "[red]yes[/]" if f["drifted"] else "no",
        )
    out.print(table)
    out.print(
        f"drift score {result['drift_score']:.3f}, drifted share "
        f"{result['drifted_share']:.1%}, level {result['level']}"
        + (f"; report: {report}" if report else "")
    )


def worker(
    once: Annotated[bool, typer.Option(help="Run one scheduler pass and exit.")] = False,
) -> None:
    """Run scheduled monitoring checks and alerts (the background worker process)."""
    import logging

    from creditops.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run(lambda: run_worker(get_settings(), once=once))
