"""What every use case needs: settings and the adapters built from them (the MLflow
registry, the alert channels), each created once, on first use."""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from creditops.alerts.dispatch import AlertDispatcher, build_dispatcher
from creditops.registry.mlflow_registry import ModelRegistry
from creditops.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    _cache: dict[str, object] = field(default_factory=dict)

    @cached_property
    def registry(self) -> ModelRegistry:
        make_home_private(self.settings)
        return ModelRegistry(self.settings.tracking_uri, artifact_root=self.settings.artifact_root)

    @cached_property
    def alert_dispatcher(self) -> AlertDispatcher:
        """The senders of the selected alert channels, built once from the settings."""
        return build_dispatcher(self.settings.alerts)

    @property
    def reports_dir(self) -> Path:
        return self.settings.reports_dir


# Local state that holds applicant data, key hashes or the model registry.
_STATE_FILES = ("creditops.db", "mlflow.db", "worker.lock")
OWNER_ONLY_UMASK = 0o077


def make_home_private(settings: Settings) -> Path:
    """Create ``CREDITOPS_HOME`` readable by its owner only (0700), and close up the state
    files in it (the service database, the MLflow store, their WAL files: 0600) that an
    older version or another umask left readable. Files created later follow the process
    umask, which the entry points set to 077 (:data:`OWNER_ONLY_UMASK`)."""
    home = settings.home_dir
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if home.stat().st_uid == os.getuid():
        home.chmod(0o700)
        for name in _STATE_FILES:
            for path in home.glob(f"{name}*"):
                if path.is_file() and stat.S_IMODE(path.stat().st_mode) & 0o077:
                    path.chmod(0o600)
    return home


def git_commit(cwd: Path | None = None) -> str:
    """The current git commit of ``cwd``, or "" outside a repository."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""
