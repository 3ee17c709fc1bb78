"""Value types of the registry and the names it records in MLflow.

A creditops model version is a run with the bundle under ``bundle/bundle.json`` plus a
registered-model version whose ``bundle_sha256`` tag is the bundle's identity. Its source is
the run's MLflow 3 logged model (a pyfunc model around the bundle, see
:mod:`creditops.registry.pyfunc_model`) when the registration gave an input example, else
the run's ``bundle`` directory. Stages are registered-model aliases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

BUNDLE_ARTIFACT = "bundle/bundle.json"
BUNDLE_SHA_TAG = "bundle_sha256"
MANAGED_TAG = "creditops.managed"
LATEST = "latest"
PYFUNC_MODEL_NAME = "model"  # the logged model's name in its run


@dataclass(frozen=True)
class TrainingDataset:
    """The data a version was trained on, logged as the run's ``training`` input: the
    frame (for MLflow's schema and profile), its file's name and location, and its sha256."""

    frame: pd.DataFrame
    name: str
    source: str
    sha256: str
    target: str | None = None


@dataclass(frozen=True)
class RegistrationRequest:
    """What registering a version takes. ``input_example`` (a few raw applicant rows) makes
    the version a pyfunc model too; ``started_at`` (when training began) starts its run, so
    that the run spans training and registration."""

    name: str
    bundle_path: Path
    bundle_sha256: str
    params: Mapping[str, str | int | float]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    artifacts: Mapping[str, Path]
    description: str = ""
    experiment: str | None = None
    input_example: pd.DataFrame | None = None
    dataset: TrainingDataset | None = None
    started_at: datetime | None = None


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
