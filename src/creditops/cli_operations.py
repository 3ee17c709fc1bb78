"""Commands of the ``creditops`` command line that run or administer the service: ``serve``,
``worker``, ``drift``, ``replay``, and the ``db``, ``keys`` and ``decisions`` groups.
:func:`register` adds them to the application defined in :mod:`creditops.cli`; shared
helpers are in :mod:`creditops.cli_support`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from creditops.cli_support import (
    JsonOpt,
    NameOpt,
    context,
    err,
    fail,
    fmt,
    out,
    parse_since,
    print_json,
    run,
    sessions,
)
from creditops.domain.windows import utc_text
from creditops.errors import InvalidInputError
from creditops.services.context import make_home_private
from creditops.settings import get_settings

keys_app = typer.Typer(help="API keys for the decision service.", no_args_is_help=True)
decisions_app = typer.Typer(help="The decision log: export and retention.", no_args_is_help=True)
db_app = typer.Typer(help="The service database.", no_args_is_help=True)
jobs_app = typer.Typer(help="Background jobs (retraining) run by the worker.", no_args_is_help=True)
deploy_app = typer.Typer(
    help="Deployments: start one (immediate, canary, blue_green, shadow, rolling), follow, "
    "pause, resume or abort it. The worker drives them.",
    no_args_is_help=True,
)


ab_app = typer.Typer(
    help="A/B tests: start one against production, follow it, stop or conclude it.",
    no_args_is_help=True,
)
audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the service commands and groups to ``app``."""
    app.add_typer(keys_app, name="keys")
    app.add_typer(decisions_app, name="decisions")
    app.add_typer(db_app, name="db")
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(deploy_app, name="deploy")
    app.add_typer(ab_app, name="ab")
    app.add_typer(audit_app, name="audit")
    app.command()(retrain)
    app.command()(serve)
    app.command()(drift)
    app.command()(worker)
    app.command()(publish)
    app.command()(replay)


def retrain(
    name: Annotated[str, typer.Option("--name", "-n", help="Registered model name.")],
    reason: Annotated[str, typer.Option(help="Why (recorded with the job).")] = "manual request",
    force: Annotated[
        bool, typer.Option("--force", metavar="", help="Skip the cool-down after the last job.")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", metavar="", help="Follow the job to its end (a worker must be running)."
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Longest wait with --wait, seconds.")] = 3600,
    as_json: JsonOpt = False,
) -> None:
    """Queue a retraining job of a model; `creditops worker` runs it."""
    from creditops.monitoring.triggers import Trigger
    from creditops.services.access import cli_actor
    from creditops.services.model_versions import registered_versions
    from creditops.services.retraining import request_retrain

    ctx, store = context(), sessions()
    run(lambda: registered_versions(ctx, name))
    actor = cli_actor()
    trigger = Trigger("manual", reason, {"requested_by": actor})
    outcome = run(
        lambda: request_retrain(ctx, store, name, trigger, force=force, requested_by=actor)
    )
    if outcome.job_id is None:
        if as_json:
            print_json(outcome.to_dict())
        err.print(f"[yellow]no job queued:[/] {outcome.detail}")
        raise typer.Exit(1)
    if not wait:
        if as_json:
            print_json(outcome.to_dict())
        else:
            out.print(f"job {outcome.job_id} queued; `creditops jobs show {outcome.job_id}`")
        return
    job = _follow(store, outcome.job_id, timeout, quiet=as_json)
    if as_json:
        print_json(job)
    else:
        result = job["result"]
        said = result.get("summary") or result.get("reason", "")
        out.print(f"job {job['job_id']} {job['state']}: {said}")
    if job["state"] != "succeeded":
        raise typer.Exit(1)


def _follow(store: Any, job_id: str, timeout: float, *, quiet: bool) -> dict[str, Any]:
    """Poll a job until it ends, with a progress bar over its stages."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from creditops.services.retraining import STAGES, get_job

    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
    ) as bar:
        task = bar.add_task("waiting for a worker", total=len(STAGES))
        while True:
            job = run(lambda: get_job(store, job_id))
            stage = job["stage"]
            done = STAGES.index(stage) if stage in STAGES else 0
            label = (
                f"{job['state']}: {stage}" if stage else f"{job['state']} (waiting for a worker)"
            )
            bar.update(task, completed=done, description=label)
            if job["state"] in ("succeeded", "failed", "cancelled"):
                bar.update(task, completed=len(STAGES))
                return dict(job)
            if time.monotonic() > deadline:
                raise fail(
                    InvalidInputError(f"job {job_id} still {job['state']} after {timeout:g} s")
                )
            time.sleep(1.0)


@jobs_app.command("list")
def jobs_list(
    name: Annotated[str | None, typer.Option("--name", "-n", help="Only this model.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Most jobs shown.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Jobs, newest first."""
    from creditops.services.retraining import list_jobs

    rows = run(lambda: list_jobs(sessions(), name, limit, 0))
    if as_json:
        print_json(rows)
        return
    table = Table(title="Jobs")
    for column in ("id", "model", "trigger", "state", "stage", "created", "result"):
        table.add_column(column)
    for row in rows:
        result = row["result"]
        table.add_row(
            row["job_id"][:8],
            row["model"],
            row["trigger"]["kind"],
            row["state"],
            row["stage"] or "",
            row["created_at"][:19],
            str(result.get("summary") or result.get("reason") or "")[:60],
        )
    out.print(table)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    as_json: JsonOpt = False,
) -> None:
    """One job: state, stage, result and log."""
    from creditops.services.retraining import get_job

    job = run(lambda: get_job(sessions(), job_id))
    if as_json:
        print_json(job)
        return
    out.print(f"job {job['job_id']} ({job['model']}): {job['state']}, stage {job['stage']}")
    out.print(f"trigger {job['trigger']['kind']}: {job['trigger']['reason']}")
    out.print(job["log"], soft_wrap=True)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="Job id.")], as_json: JsonOpt = False
) -> None:
    """Cancel a queued job at once; a running one stops at its next stage."""
    from creditops.services.retraining import cancel_job

    job = run(lambda: cancel_job(sessions(), job_id))
    if as_json:
        print_json(job)
    elif job["state"] == "cancelled":
        out.print(f"job {job_id} cancelled")
    else:
        out.print(f"job {job_id} is {job['state']}: it stops at its next stage")


@deploy_app.command("start")
def deploy_start(
    name: Annotated[str, typer.Option("--name", "-n", help="Model name.")],
    version: Annotated[str, typer.Option(help="The candidate version.")],
    strategy: Annotated[
        str, typer.Option(help="immediate, canary, blue_green, shadow or rolling.")
    ] = "canary",
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    steps: Annotated[str | None, typer.Option(help="Canary shares, e.g. 0.05,0.25,0.5,1.")] = None,
    step_interval: Annotated[
        float | None, typer.Option("--step-interval", help="Seconds per canary step.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a deployment of a validated version next to the production one."""
    from creditops.services.access import cli_actor
    from creditops.services.deployments import DeployRequest, start

    shares = None
    if steps:
        try:
            shares = [float(s) for s in steps.split(",")]
        except ValueError:
            raise fail(
                InvalidInputError(
                    f"--steps must be numbers separated by commas; got {steps!r}", field="steps"
                )
            ) from None
    request = DeployRequest(name, version, strategy, reason, shares, step_interval)
    row = run(lambda: start(context(), sessions(), request, cli_actor()))
    if as_json:
        print_json(row)
        return
    out.print(
        f"deployment {row['deployment_id']}: {row['model']} v{row['candidate_version']} "
        f"({row['strategy']}) next to v{row['stable_version']}, {row['state']}; "
        "the worker drives it (`creditops deploy status`)"
    )


@deploy_app.command("status")
def deploy_status(
    deployment_id: Annotated[
        str | None, typer.Argument(help="A deployment id (default: the list).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Only this model.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Deployments, newest first, or one with its history."""
    from creditops.services.deployments import get, list_deployments

    if deployment_id is not None:
        row = run(lambda: get(sessions(), deployment_id))
        if as_json:
            print_json(row)
            return
        out.print(
            f"{row['model']}: v{row['stable_version']} -> v{row['candidate_version']} "
            f"({row['strategy']}), {row['state']}, candidate share {row['traffic_share']:.0%}"
        )
        for event in row["history"]:
            when, what, who = event["at"][:19], event["event"], event["actor"]
            out.print(f"  {when}  {what:<12} {who:<14} {event.get('detail', '')}")
        return
    rows = run(lambda: list_deployments(sessions(), name, 20, 0))
    if as_json:
        print_json(rows)
        return
    table = Table(title="Deployments")
    for column in ("id", "model", "strategy", "stable", "candidate", "share", "state", "created"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["deployment_id"][:8],
            row["model"],
            row["strategy"],
            str(row["stable_version"] or "-"),
            row["candidate_version"],
            f"{row['traffic_share']:.0%}",
            row["state"],
            (row["created_at"] or "")[:19],
        )
    out.print(table)


def _deploy_action(action: str) -> Any:
    def command(
        deployment_id: Annotated[str, typer.Argument(help="Deployment id.")],
        reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
        as_json: JsonOpt = False,
    ) -> None:
        from creditops.services.access import cli_actor
        from creditops.services.deployments import act

        row = run(
            lambda: act(
                sessions(), deployment_id, action, cli_actor(), reason, get_settings().events
            )
        )
        if as_json:
            print_json(row)
        else:
            out.print(f"deployment {row['deployment_id']} is {row['state']}")

    command.__doc__ = {
        "pause": "Pause a deployment: its traffic split stays, its steps stop.",
        "resume": "Resume a paused deployment.",
        "abort": "Abort a deployment: the stable version answers everything again.",
        "approve": "Four-eyes: approve a requested deployment (not the requester).",
        "reject": "Four-eyes: reject a requested deployment.",
    }[action]
    return command


for _action in ("pause", "resume", "abort", "approve", "reject"):
    deploy_app.command(_action)(_deploy_action(_action))


@ab_app.command("start")
def ab_start(
    name: Annotated[str, typer.Option("--name", "-n", help="Model name.")],
    treatment: Annotated[str, typer.Option(help="The treatment version.")],
    metric: Annotated[
        str, typer.Option(help="approval_rate, default_rate, auc or expected_loss.")
    ] = "approval_rate",
    mde: Annotated[float, typer.Option(help="Smallest difference that matters.")] = 0.02,
    split: Annotated[float, typer.Option(help="The treatment's share.")] = 0.5,
    max_hours: Annotated[float, typer.Option("--max-hours", help="Maximum duration.")] = 48.0,
    maturity_days: Annotated[float, typer.Option("--maturity-days", help="Outcome window.")] = 0.0,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Start an A/B test of a validated treatment against the production version."""
    from creditops.services.access import cli_actor
    from creditops.services.experiments import ExperimentRequest, start, summary

    request = ExperimentRequest(
        model=name, treatment=treatment, split=split, max_duration_h=max_hours, metric=metric,
        mde=mde, maturity_days=maturity_days, reason=reason,
    )  # fmt: skip
    row = summary(run(lambda: start(context(), sessions(), request, cli_actor())))
    if as_json:
        print_json(row)
        return
    out.print(
        f"A/B test {row['id']}: {name} v{row['control_version']} (control) vs "
        f"v{row['treatment_version']} on {metric}; the worker looks at it (`creditops ab status`)"
    )


@ab_app.command("status")
def ab_status(
    experiment_id: Annotated[str, typer.Argument(help="The A/B test id.")],
    as_json: JsonOpt = False,
) -> None:
    """An A/B test: arms, the last look (difference, confidence sequence, p-value, verdict)."""
    from creditops.services.deployments import get
    from creditops.services.experiments import summary

    row = summary(run(lambda: get(sessions(), experiment_id)))
    if as_json:
        print_json(row)
        return
    last = row["last_look"] or {}
    out.print(
        f"{row['model']}: v{row['control_version']} vs v{row['treatment_version']}, {row['state']}"
    )
    for arm, facts in row["arms"].items():
        approval, bad = fmt(facts["approval_rate"]), fmt(facts["default_rate_approved"])
        out.print(f"  {arm:<10} n={facts['n']} approval={approval} default(approved)={bad}")
    if last:
        out.print(
            f"  difference {fmt(last['estimate'])} in "
            f"[{fmt(last['lower'])}, {fmt(last['upper'])}], "
            f"p={fmt(last['p_value'])}: {last['verdict']}"
        )


def _ab_end(action: str) -> Any:
    def command(
        experiment_id: Annotated[str, typer.Argument(help="The A/B test id.")],
        as_json: JsonOpt = False,
    ) -> None:
        from creditops.services.access import cli_actor
        from creditops.services.deployments import act, get
        from creditops.services.experiments import conclude

        if action == "stop":
            row = run(lambda: act(sessions(), experiment_id, "abort", cli_actor(), "stopped"))
            message = f"A/B test {experiment_id} stopped: {row['state']}, control answers"
        else:
            message = run(lambda: conclude(context(), sessions(), experiment_id, cli_actor()))
            row = run(lambda: get(sessions(), experiment_id))
        if as_json:
            print_json(row | {"message": message})
        else:
            out.print(message)

    command.__doc__ = {
        "stop": "Stop an A/B test now: control keeps answering.",
        "conclude": "Conclude on the last verdict: a winning treatment is promoted.",
    }[action]
    return command


for _ab_action in ("stop", "conclude"):
    ab_app.command(_ab_action)(_ab_end(_ab_action))


@audit_app.command("verify")
def audit_verify(as_json: JsonOpt = False) -> None:
    """Walk the hash chain; name the first record changed, removed or reordered (exit 1)."""
    from creditops.services.audit import verify

    result = run(lambda: verify(sessions()))
    if as_json:
        print_json(result)
    elif result["ok"]:
        head = result["head"]
        out.print(
            f"audit trail intact: {result['records']} records; head {head['seq']} {head['hash']}"
        )
    else:
        bad = result["first_bad"]
        err.print(f"error: audit record {bad['seq']} (id {bad['id']}): {bad['problem']}")
    if not result["ok"]:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    output: Annotated[Path, typer.Option("--output", "-o", help="JSON lines file to write.")],
    as_json: JsonOpt = False,
) -> None:
    """Write the audit trail, in chain order, as JSON lines (with both hashes)."""
    from creditops.services.audit import export

    count = run(lambda: export(sessions(), output))
    if as_json:
        print_json({"records": count, "output": str(output)})
    else:
        out.print(f"{count} audit records written to {output}")


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
def keys_revoke(
    key_id: Annotated[str, typer.Option("--id", help="Key id to revoke.")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API key (effective on every worker within seconds)."""
    from creditops.services.access import cli_actor, revoke_key

    run(lambda: revoke_key(sessions(), key_id, cli_actor()))
    if as_json:
        print_json({"id": key_id, "revoked": True})
    else:
        out.print(f"revoked {key_id}")


@decisions_app.command("export")
def decisions_export(
    output: Annotated[Path, typer.Option(help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    since: Annotated[str | None, typer.Option(help="e.g. 24h, 7d or 2026-11-01.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    force: Annotated[
        bool, typer.Option("--force", metavar="", help="Replace an existing output file.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """One row per decision, with reasons and inputs, for analysts. The file appears whole
    or not at all; in CSV, text a spreadsheet would run as a formula starts with '."""
    from creditops.services.archive import ExportRequest, export_decisions

    since_at = run(lambda: parse_since(since))
    request = ExportRequest(output, fmt, since_at, model, force=force)
    rows = run(lambda: export_decisions(sessions(), request))
    if as_json:
        print_json({"rows": rows, "output": str(output), "format": fmt, "model": model})
    else:
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
    log_level: Annotated[
        str, typer.Option(help="debug, info, warning or error (creditops and uvicorn).")
    ] = "info",
    access_log: Annotated[
        bool, typer.Option("--access-log", metavar="", help="Log every request (off by default).")
    ] = False,
) -> None:
    """Run the decision service (uvicorn) on the embedded defaults or configured stores.

    Logs one line per process with the models, versions and address it serves."""
    import os
    import tempfile

    import uvicorn

    from creditops.store.migrations_api import ensure_current

    level = log_level.lower()
    if level not in {"debug", "info", "warning", "error"}:
        raise fail(
            InvalidInputError(
                f"--log-level must be debug, info, warning or error; got {log_level!r}"
            )
        )
    settings = get_settings()
    make_home_private(settings)
    run(lambda: ensure_current(settings.database))
    n_workers = workers or settings.serve.workers
    os.environ["CREDITOPS_HOME"] = str(settings.home_dir)
    # every worker process reads the address it serves on (for its start-up line)
    os.environ["CREDITOPS_SERVE__HOST"] = host or settings.serve.host
    os.environ["CREDITOPS_SERVE__PORT"] = str(port or settings.serve.port)
    if n_workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = Path(tempfile.mkdtemp(prefix="metrics-", dir=settings.home_dir))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    uvicorn.run(
        "creditops.api.app:create_app",
        factory=True,
        host=host or settings.serve.host,
        port=port or settings.serve.port,
        workers=n_workers,
        log_level=level,
        log_config=_log_config(level),
        access_log=access_log,
    )


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration plus the ``creditops`` loggers at ``level``: uvicorn
    applies it in every worker process it starts."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["creditops"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def drift(
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Served model (log window).")
    ] = None,
    since: Annotated[str, typer.Option(help="Window of logged decisions: 24h, 7d, ISO.")] = "24h",
    spec: Annotated[Path | None, typer.Option(help="Spec, for file mode.")] = None,
    reference: Annotated[Path | None, typer.Option(help="Reference file (file mode).")] = None,
    current: Annotated[
        Path | None,
        typer.Option(
            help="Current file, or directory of Parquet or CSV files: against --reference "
            "(exact), or with --name against the version's reference profile (binned)."
        ),
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="With --name --current: the version number.")
    ] = None,
    alias: Annotated[
        str | None, typer.Option(help="With --name --current: the alias (default production).")
    ] = None,
    engine: Annotated[
        Literal["local", "spark"],
        typer.Option(
            help="Where --name --current is counted into the bins: here, or on Spark "
            "(pip install 'creditops[spark]'); both give the same numbers."
        ),
    ] = "local",
    master: Annotated[
        str | None,
        typer.Option(help="Spark master: local[2], spark://host:7077 (default: Spark's)."),
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write an HTML report here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Data drift: a model's logged window vs its reference, a file or directory vs a
    version's reference profile (binned, here or on Spark), or two files vs each other."""
    from creditops.features.spec import load_spec
    from creditops.services import monitoring

    settings = get_settings()
    if name and (reference or spec):
        raise fail(InvalidInputError("give either --name or --spec/--reference/--current"))
    if not (name and current) and (engine == "spark" or version or alias):
        raise fail(
            InvalidInputError("--engine spark, --version and --alias go with --name and --current")
        )
    scope: dict[str, object]
    if name and current:
        scope, result = _binned_drift(name, current, (version, alias), (engine, master))
    elif name:
        scope, result = _window_drift(name, since)
    elif spec and reference and current:
        config = run(lambda: monitoring.drift_config(settings.monitor.drift))
        scope = {"spec": str(spec), "reference": str(reference), "current": str(current)}
        result = run(
            lambda: monitoring.file_drift(load_spec(spec), reference, current, config).to_dict()
        )
    else:
        raise fail(
            InvalidInputError(
                "give --name NAME [--current PATH], or --spec SPEC --reference A --current B"
            )
        )
    result = scope | result
    if report is not None and result["level"] == "insufficient_data":
        report = None  # nothing was judged, so there is nothing to draw
    if report is not None:
        from creditops.reporting.drift_report import render_drift_report

        title = f"Data drift: {name} v{scope['version']}" if name else f"Data drift: {spec}"
        run(lambda: render_drift_report(result, report, title=title, scope=scope))
    if as_json:
        print_json(result)
    else:
        _print_drift(result, report)
    if result["level"] == "critical":
        raise typer.Exit(1)


def _window_drift(name: str, since: str) -> tuple[dict[str, object], dict[str, Any]]:
    """(scope, result) of the data and prediction drift of a served model's logged window."""
    from creditops.services import monitoring

    since_at = run(lambda: parse_since(since))
    request = monitoring.CheckRequest(
        model=name,
        since=since_at,
        triggered_by="cli",
        kinds=("data_drift", "prediction_drift"),
    )
    outcome = run(lambda: monitoring.run_checks(context(), sessions(), request))
    scope: dict[str, object] = {
        "model": name,
        "version": outcome.version,
        "window": f"{utc_text(since_at)} to now",
    }
    result = outcome.results["data_drift"] | {
        "prediction_drift": outcome.results["prediction_drift"]
    }
    return scope, result


def _binned_drift(
    name: str, current: Path, ref: tuple[str | None, str | None], engine: tuple[str, str | None]
) -> tuple[dict[str, object], dict[str, Any]]:
    """(scope, result) of ``current`` against the reference profile of ``name`` at ``ref``
    (version, alias), counted here or on Spark (engine, master)."""
    from creditops.services import monitoring
    from creditops.services.model_versions import resolve_ref

    kind, master = engine
    if kind == "spark":
        from creditops.services import spark_engine

        run(spark_engine.require_pyspark)
    reference = run(lambda: monitoring.binned_reference(context(), name, resolve_ref(*ref)))
    if kind == "spark":
        drift = run(lambda: spark_engine.drift_spark(reference, current, master))
    else:
        drift = run(lambda: monitoring.binned_file_drift(reference, current))
    scope: dict[str, object] = {
        "model": name,
        "version": reference.version,
        "current": str(current),
        "engine": kind,
    }
    return scope, drift.to_dict()


def _print_drift(result: dict[str, Any], report: Path | None) -> None:
    if result["level"] == "insufficient_data":
        out.print(f"insufficient data: {result['message']}; nothing judged, level not set")
        return
    table = Table(title=f"Data drift ({result.get('mode', '')}): level {result['level']}")
    for column in ("feature", "method", "statistic", "p (adj.)", "PSI", "level", "verdict"):
        table.add_column(column)
    colour = {"ok": "green", "warning": "yellow", "critical": "red"}
    for f in result["features"]:
        table.add_row(
            f["feature"],
            f["method"],
            fmt(f.get("statistic")),
            fmt(f.get("p_value_adjusted")),
            fmt(f.get("psi")),
            f"[{colour[f['level']]}]{f['level']}[/]",
            f["verdict"].split(": ", 1)[1],
        )
    out.print(table)
    out.print(
        f"drift score {result['drift_score']:.3f}, drifted share "
        f"{result['drifted_share']:.1%}, level {result['level']}"
        + (f"; report: {report}" if report else "")
    )


def worker(
    once: Annotated[
        bool, typer.Option("--once", metavar="", help="Run one scheduler pass and exit.")
    ] = False,
) -> None:
    """Run scheduled monitoring checks and alerts (the background worker process)."""
    import logging

    from creditops.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run(lambda: run_worker(get_settings(), once=once))


def publish(
    once: Annotated[
        bool,
        typer.Option("--once", metavar="", help="Publish until the outbox is empty, then exit."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Publish the event outbox to NATS JetStream (as the worker does with events.enabled)."""
    import logging

    from creditops.worker import run_publisher

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    summary = run(lambda: run_publisher(get_settings(), once=once)).to_dict()
    if as_json:
        print_json(summary)
    else:
        out.print(
            f"published {summary['published']} events ({summary['duplicates']} duplicates "
            f"dropped by the broker); backlog {summary['backlog']}, lag {summary['lag_seconds']}s"
        )


def replay(
    name: NameOpt,
    version: Annotated[str, typer.Option(help="The version to verify (number or alias).")],
    url: Annotated[
        str, typer.Option(help="Base URL of the running service, e.g. http://127.0.0.1:8000.")
    ],
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="CREDITOPS_API_KEY",
            show_envvar=False,
            help="A key with the predict scope (default: $CREDITOPS_API_KEY).",
        ),
    ] = None,
    rows: Annotated[
        int | None, typer.Option(min=1, help="Only the first N rows of the test split.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Longest wait for one answer, seconds.")] = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Implementation verification: send the version's stored test split through the
    running service and compare its answers row for row with the development scoring
    (recorded in the audit trail and on the version's MLflow run; exit 1 on a difference)."""
    from creditops.services.access import cli_actor
    from creditops.services.replay import record_replay
    from creditops.services.replay import replay as replay_version

    ctx = context()
    result = run(
        lambda: replay_version(ctx, name, version, url, api_key, rows=rows, timeout_s=timeout)
    )
    result = run(lambda: record_replay(ctx, sessions(), result, cli_actor()))
    if as_json:
        print_json(result.to_dict())
    else:
        out.print(result.message, markup=False, soft_wrap=True)
        for example in result.examples:
            out.print(
                f"  row {example.row_id}: {example.field} development {example.development!r}, "
                f"served {example.served!r}",
                markup=False,
                soft_wrap=True,
            )
    if not result.passed:
        raise typer.Exit(1)
