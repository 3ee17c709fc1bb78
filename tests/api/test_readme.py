"""The README's decision-service commands, run as written (on a free port)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.api.conftest import ROOT

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## The decision service", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "no bash block in the decision-service section"
    return match.group(1)


def test_readme_curl_examples(served_home: Path) -> None:
    port = _free_port()
    script = readme_block().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    # bounded: the wait loop must not spin forever if the server fails to start
    script = "set -e\n" + script.replace("until curl", "timeout 90 bash -c 'until curl").replace(
        "do sleep 1; done", "do sleep 1; done'"
    )
    env = {**os.environ, "CREDITOPS_HOME": str(served_home), "CREDITOPS_SERVE__PORT": str(port)}
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    ready, decision, feedback = (json.loads(ln) for ln in lines[:3])
    assert ready["status"] == "ready"
    assert decision["decision"] == "decline" and decision["adverse_action"] is not None
    assert feedback["created"] + feedback["updated"] + feedback["unchanged"] == 1
    assert "creditops_predictions_total{" in proc.stdout
