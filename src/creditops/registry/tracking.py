"""Training runs in MLflow tracking: experiments, the run of a registration and its logging.

The run of a registration starts when training started (so its duration is the real one)
and holds the params, the finite metrics, the training dataset as an input, the bundle
under ``bundle/bundle.json`` and any further artifacts, each stored at exactly the path
asked for. Values are cut to MLflow's limits and logged in batches MLflow accepts.
Experiments are marked for model development, so MLflow 3's UI opens them in its machine
learning view rather than the GenAI one.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from creditops.errors import ConfigError
from creditops.registry.mlflow_store import DB_SCHEMES, MlflowStore
from creditops.registry.records import BUNDLE_ARTIFACT, RegistrationRequest, TrainingDataset
from creditops.registry.validation import check_artifact_path

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run
    from mlflow.types import Schema

# MLflow's limits (mlflow.utils.validation: MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH and
# the batch sizes of log_batch).
_MAX_PARAM_LEN = 6000
MAX_TAG_LEN = 8000
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_TRUNCATED = "...[truncated]"
# MLflow 3's UI reads this experiment tag to choose its view (the values are those of its
# experiment-kind selector); without it, an experiment with no traces may open as GenAI.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"
_DIGEST_LEN = 36  # MLflow's datasets table keeps 36 characters of a digest
DATA_SHA_INPUT_TAG = "creditops.data_sha256"


def create_training_run(
    store: MlflowStore, name: str, tags: Mapping[str, str], request: RegistrationRequest
) -> Run:
    """Start the run of registering ``name`` in its experiment (created when missing)."""
    experiment = request.experiment or f"creditops/{name}"
    client = store.client
    run_tags = {**tags, "creditops.model_name": name}
    if request.description:
        run_tags["mlflow.note.content"] = request.description
    started_at = request.started_at
    return client.create_run(
        experiment_id(store, experiment),
        start_time=int(started_at.timestamp() * 1000) if started_at is not None else None,
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
            return client.create_experiment(
                experiment,
                artifact_location=location,
                tags={EXPERIMENT_KIND_TAG: MODEL_DEVELOPMENT},
            )
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
    if EXPERIMENT_KIND_TAG not in found.tags:  # created before creditops marked them
        client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)
    return str(found.experiment_id)


def log_training_dataset(store: MlflowStore, run_id: str, dataset: TrainingDataset) -> None:
    """Log the training data as the run's ``training`` input: its name, source, schema and
    profile, with the data hash as digest (cut to MLflow's 36 characters; the whole hash is
    the input's ``creditops.data_sha256`` tag)."""
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    frame = dataset.frame
    if dataset.target is not None and dataset.target not in frame.columns:
        raise ConfigError(f"the training dataset lacks its target {dataset.target!r}")
    logged = from_pandas(
        frame,
        source=dataset.source,
        name=dataset.name,
        digest=dataset.sha256[:_DIGEST_LEN],
        targets=dataset.target,
    )
    # MLflow would infer the schema by inspecting every value of every text column (about
    # a second for 30,000 rows); the column types say the same at no cost. ``schema`` is a
    # cached property: seeding its cache is how it is given.
    vars(logged)["schema"] = _schema_from_dtypes(frame)
    tags = [
        InputTag(MLFLOW_DATASET_CONTEXT, "training"),
        InputTag(DATA_SHA_INPUT_TAG, dataset.sha256),
    ]
    entity = DatasetInput(logged._to_mlflow_entity(), tags=tags)
    store.client.log_inputs(run_id, datasets=[entity])


def run_params(request: RegistrationRequest) -> dict[str, str]:
    """The params of ``request`` as MLflow stores them (text, cut to its limit)."""
    return {k: truncate(str(v), _MAX_PARAM_LEN) for k, v in request.params.items()}


def _schema_from_dtypes(frame: pd.DataFrame) -> Schema:
    """The MLflow schema of ``frame`` from its column types: floats are doubles, integers
    longs, booleans booleans, anything else (text, as creditops reads files) strings."""
    import pandas as pd
    from mlflow.types import ColSpec, DataType, Schema

    def type_of(dtype: Any) -> DataType:
        if pd.api.types.is_bool_dtype(dtype):
            return DataType.boolean
        if pd.api.types.is_integer_dtype(dtype):
            return DataType.long
        if pd.api.types.is_float_dtype(dtype):
            return DataType.double
        return DataType.string

    return Schema([ColSpec(type_of(dtype), str(name)) for name, dtype in frame.dtypes.items()])


def log_run(
    store: MlflowStore, run_id: str, request: RegistrationRequest, model_id: str | None = None
) -> None:
    """Log the params, finite metrics (linked to the logged model ``model_id``, if any),
    bundle and artifacts of ``request`` to the run."""
    from mlflow.entities import Metric, Param

    client = store.client
    now_ms = int(time.time() * 1000)
    params = [Param(k, v) for k, v in run_params(request).items()]
    metrics = [
        Metric(k, float(v), now_ms, 0, model_id=model_id)
        for k, v in request.metrics.items()
        if _finite(v)
    ]
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
