"""Training runs in MLflow tracking: experiments, the run of a registration and its logging.

The run of a registration holds the params, the finite metrics, the bundle under
``bundle/bundle.json`` and any further artifacts, each stored at exactly the path asked
for. Values are cut to MLflow's limits and logged in batches MLflow accepts.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from creditops.errors import ConfigError
from creditops.registry.mlflow_store import DB_SCHEMES, MlflowStore
from creditops.registry.records import BUNDLE_ARTIFACT, RegistrationRequest
from creditops.registry.validation import check_artifact_path

if TYPE_CHECKING:
    from mlflow.entities import Run

# MLflow's limits (mlflow.utils.validation: MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH and
# the batch sizes of log_batch).
_MAX_PARAM_LEN = 6000
MAX_TAG_LEN = 8000
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_TRUNCATED = "...[truncated]"


def create_training_run(
    store: MlflowStore, name: str, tags: Mapping[str, str], request: RegistrationRequest
) -> Run:
    """Start the run of registering ``name`` in its experiment (created when missing)."""
    experiment = request.experiment or f"creditops/{name}"
    client = store.client
    run_tags = {**tags, "creditops.model_name": name}
    if request.description:
        run_tags["mlflow.note.content"] = request.description
    return client.create_run(
        experiment_id(store, experiment),
        run_name=f"{name}-train",
        tags=truncated_tags(run_tags),
    )


def experiment_id(store: MlflowStore, experiment: str) -> str:
    from mlflow.exceptions import MlflowException

    client = store.client
    found = client.get_experiment_by_name(experiment)
    if found is None:
        location = None
        if store.artifact_root is not None and store.scheme in DB_SCHEMES:
            slug = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "default"
            location = f"{store.artifact_root.resolve().as_uri()}/{slug}"
        try:
            return client.create_experiment(experiment, artifact_location=location)
        except MlflowException as exc:  # created concurrently by another process
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    if found.lifecycle_stage != "active":
        raise ConfigError(
            f"MLflow experiment {experiment!r} is deleted; restore it or permanently "
            "delete it (mlflow gc) before registering",
            field="experiment",
        )
    return str(found.experiment_id)


def log_run(store: MlflowStore, run_id: str, request: RegistrationRequest) -> None:
    """Log the params, finite metrics, bundle and artifacts of ``request`` to the run."""
    from mlflow.entities import Metric, Param

    client = store.client
    now_ms = int(time.time() * 1000)
    params = [Param(k, truncate(str(v), _MAX_PARAM_LEN)) for k, v in request.params.items()]
    metrics = [Metric(k, float(v), now_ms, 0) for k, v in request.metrics.items() if _finite(v)]
    for i in range(0, len(params), _PARAMS_PER_BATCH):
        client.log_batch(run_id, params=params[i : i + _PARAMS_PER_BATCH])
    for i in range(0, len(metrics), _METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + _METRICS_PER_BATCH])
    with tempfile.TemporaryDirectory(prefix="creditops-register-") as tmp:
        log_file(store, run_id, request.bundle_path, BUNDLE_ARTIFACT, Path(tmp))
        for sub_path, local in request.artifacts.items():
            log_file(store, run_id, local, sub_path, Path(tmp))


def log_file(store: MlflowStore, run_id: str, local: Path, sub_path: str, scratch: Path) -> None:
    """Log ``local`` so that it is stored exactly at ``sub_path`` in the run."""
    target = PurePosixPath(check_artifact_path(sub_path))
    if local.name != target.name:  # MLflow keeps the local file name: copy to rename
        staged = scratch / f"{len(list(scratch.iterdir()))}" / target.name
        staged.parent.mkdir(parents=True)
        shutil.copyfile(local, staged)
        local = staged
    parent = str(target.parent)
    store.client.log_artifact(run_id, str(local), None if parent == "." else parent)


def truncate(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - len(_TRUNCATED)] + _TRUNCATED


def truncated_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {k: truncate(str(v), MAX_TAG_LEN) for k, v in tags.items()}


def _finite(value: float) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
