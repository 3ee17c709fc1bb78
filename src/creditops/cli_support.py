"""Shared pieces of the ``creditops`` command line (:mod:`creditops.cli`,
:mod:`creditops.cli_operations`): the consoles, option types, the error handling that turns a
:class:`~creditops.errors.CreditopsError` into one line and an exit code, progress output
and small helpers.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from creditops.errors import CreditopsError, InvalidInputError, NotFoundError
from creditops.settings import get_settings

T = TypeVar("T")

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

# ``metavar=""`` keeps Typer from printing a flag as if it took a value ("--json <bool>").
JsonOpt = Annotated[
    bool, typer.Option("--json", metavar="", help="Print one JSON object on stdout.")
]
NameOpt = Annotated[str, typer.Option("--name", "-n", help="Registered model name.")]


def context() -> Any:
    from creditops.services.context import AppContext

    return AppContext(get_settings())


def fail(exc: CreditopsError) -> typer.Exit:
    code = 2 if isinstance(exc, (InvalidInputError, NotFoundError)) else 1
    # The message is text, not markup: "creditops[spark]" must not be read as a style.
    err.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True, soft_wrap=True)
    return typer.Exit(code)


# creditops.modeling.training.DETAIL_PREFIX, not imported: the CLI starts without LightGBM.
DETAIL_PREFIX = "  "


def run(action: Callable[[], T]) -> T:
    """Call a use case and turn domain errors into one line and an exit code."""
    try:
        return action()
    except CreditopsError as exc:
        raise fail(exc) from None
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
            if message.startswith(DETAIL_PREFIX):  # within the current step (a tuning trial)
                err.print(message, markup=False, highlight=False)
                status.update(f"{state['step']}:{message}")
                return
            if state["step"]:
                err.print(f"[green]done[/] {state['step']} ({now - float(state['started']):.1f}s)")
            state.update(step=message, started=now)
            status.update(message)

        yield report
        if state["step"]:
            took = time.monotonic() - float(state["started"])
            err.print(f"[green]done[/] {state['step']} ({took:.1f}s)")


def _json_default(value: object) -> object:
    """Times as RFC 3339 in UTC with ``Z`` (the API's format); anything else as text."""
    from datetime import datetime

    from creditops.domain.windows import utc_text

    return utc_text(value) if isinstance(value, datetime) else str(value)


def print_json(payload: object) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=_json_default) + "\n")


def sessions() -> Any:
    from creditops.services.context import make_home_private
    from creditops.store.engine import create_db_engine, session_factory
    from creditops.store.migrations_api import ensure_current

    settings = get_settings()
    make_home_private(settings)
    ensure_current(settings.database)
    return session_factory(create_db_engine(settings.database))


def parse_since(since: str | None) -> Any:
    from creditops.domain.windows import parse_since

    return parse_since(since) if since else None


def fmt(value: object) -> str:
    return "" if value is None else f"{float(value):.4g}"  # type: ignore[arg-type]
