"""``creditops --version`` prints the package version and exits 0 (issue 15, section 4)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from creditops import __version__
from creditops.cli import app

pytestmark = pytest.mark.unit


def test_version_flag() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"creditops {__version__}"
    assert __version__ and __version__[0].isdigit()
