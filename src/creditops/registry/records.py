"""Value types of the registry and the names it records in MLflow.

A creditops model version is a run with the bundle under ``bundle/bundle.json`` plus a
registered-model version whose source is that ``bundle`` directory and whose
``bundle_sha256`` tag is the bundle's identity. Stages are registered-model aliases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

BUNDLE_ARTIFACT = "bundle/bundle.json"
BUNDLE_SHA_TAG = "bundle_sha256"
MANAGED_TAG = "creditops.managed"
LATEST = "latest"


@dataclass(frozen=True)
class RegistrationRequest:
    name: str
    bundle_path: Path
    bundle_sha256: str
    params: Mapping[str, str | int | float]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    artifacts: Mapping[str, Path]
    description: str = ""
    experiment: str | None = None


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    model_uri: str
    artifact_uri: str


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str
    created_at: datetime
    tags: dict[str, str]
    metrics: dict[str, float]
    description: str
