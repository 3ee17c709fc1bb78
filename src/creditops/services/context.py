"""What every use case needs: settings and the adapters built from them (the MLflow
registry, the alert channels), each created once, on first use."""

from __future__ import annotations

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
        home = self.settings.home_dir
        home.mkdir(parents=True, exist_ok=True)
        return ModelRegistry(self.settings.tracking_uri, artifact_root=self.settings.artifact_root)

    @cached_property
    def alert_dispatcher(self) -> AlertDispatcher:
        """The senders of the selected alert channels, built once from the settings."""
        return build_dispatcher(self.settings.alerts)

    @property
    def reports_dir(self) -> Path:
        return self.settings.reports_dir


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
