"""The processes say what they do (issue 15, section 4): the worker logs its start at INFO,
and `creditops serve` refuses a bad --log-level in one line. (The line `serve` logs with the
models, versions and address it serves is checked on a real server in test_api_server.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.server_harness import creditops_command, service_env

pytestmark = pytest.mark.integration


def test_the_worker_logs_its_start_at_info(tmp_path: Path) -> None:
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'service.db'}")
    done = subprocess.run(
        [*creditops_command(), "worker", "--once"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    started = [line for line in done.stderr.splitlines() if "creditops worker started" in line]
    assert len(started) == 1 and " INFO " in started[0], done.stderr
    assert "WARNING" not in started[0]


def test_serve_refuses_an_unknown_log_level(tmp_path: Path) -> None:
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'service.db'}")
    done = subprocess.run(
        [*creditops_command(), "serve", "--log-level", "loud"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "--log-level must be debug, info, warning or error" in done.stderr
