"""The command line talks the same way everywhere (issue 15, section 4): every command that
prints a result has ``--json``, flags are shown as flags, and JSON times are RFC 3339 UTC."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from creditops.cli import app
from creditops.cli_support import print_json

pytestmark = pytest.mark.unit

# Long-running processes and schema migrations print logs, not a result.
NO_RESULT = {"serve", "worker", "db upgrade", "db downgrade"}


def _leaves(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return [(path, command)]
    found = []
    for name, sub in sorted(subcommands.items()):
        found += _leaves(sub, (*path, name))
    return found


LEAVES = _leaves(typer.main.get_command(app))


def test_the_tree_is_walked() -> None:
    names = {" ".join(p) for p, _ in LEAVES}
    assert {"score", "drift", "deploy abort", "ab conclude", "keys revoke", "info"} <= names


@pytest.mark.parametrize(
    "path", [p for p, _ in LEAVES if " ".join(p) not in NO_RESULT], ids=" ".join
)
def test_every_command_with_a_result_has_json(path: tuple[str, ...]) -> None:
    params = dict(LEAVES)[path].params
    assert any("--json" in p.opts for p in params), f"creditops {' '.join(path)} has no --json"


@pytest.mark.parametrize("path", [p for p, _ in LEAVES], ids=" ".join)
def test_flags_are_shown_as_flags(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    flags = [line for line in result.output.splitlines() if "<bool>" in line]
    # Typer prints its own --help flag with a type; every flag of ours is bare
    assert all("--help" in line for line in flags), flags


def test_json_times_are_rfc3339_utc(capsys: pytest.CaptureFixture[str]) -> None:
    east = timezone(timedelta(hours=2))
    print_json(
        {
            "aware": datetime(2026, 12, 3, 19, 0, 1, tzinfo=east),
            "naive": datetime(2026, 12, 3, 17, 0, 2),  # the stores keep UTC without a zone
            "micro": datetime(2026, 12, 3, 17, 0, 3, 250, tzinfo=UTC),
        }
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed == {
        "aware": "2026-12-03T17:00:01Z",
        "naive": "2026-12-03T17:00:02Z",
        "micro": "2026-12-03T17:00:03.000250Z",
    }
