"""A model version as MLflow users know it: a pyfunc model around the bundle.

``mlflow.pyfunc.load_model("models:/NAME@production")``, ``mlflow models serve`` and
``mlflow.pyfunc.spark_udf`` load a version through :class:`BundlePyfuncModel`. Given raw
applicant columns it answers one row per applicant with ``pd``, ``score``, ``decision`` and
``reasons`` (the principal reason codes, most important first, joined by ``;``; empty when
there are none): the numbers ``creditops score`` writes. The bundle travels inside the model
as an artifact and is verified against its sha256 when the model loads.

The class is pickled by reference, so creditops must be installed where the model is loaded
(``mlflow models serve --env-manager local``); the model's requirements name creditops.

:func:`log_pyfunc_model` logs it as the MLflow 3 logged model of a registration's run, with
its signature and input example; the registered version points at that logged model.

This module imports mlflow when it is imported: only the registry (lazily, when it
registers) and MLflow's model loader import it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext  # MLflow reads the hints

from creditops.errors import InvalidInputError
from creditops.modeling.bundle import ScoringModel
from creditops.registry.records import BUNDLE_SHA_TAG, PYFUNC_MODEL_NAME

if TYPE_CHECKING:
    from mlflow.models import ModelSignature
    from mlflow.tracking import MlflowClient

OUTPUT_COLUMNS = ("pd", "score", "decision", "reasons")
REASON_SEPARATOR = ";"
MODEL_TYPE = "probability-of-default"
EXAMPLE_ROWS = 5
SMALL_FRAME_ROWS = 32
_BUNDLE_KEY = "bundle"
# What the model needs where it is loaded: creditops brings LightGBM, pandas and the rest.
_REQUIREMENTS = ("creditops", "mlflow")


def predict_frame(model: ScoringModel, frame: pd.DataFrame) -> pd.DataFrame:
    """``pd``, ``score`` (at 2 decimals), ``decision`` and ``reasons`` of each row of raw
    applicant columns, computed as ``creditops score`` computes them (which also refuses
    text in a numeric column and inputs the spec does not allow missing).

    Up to :data:`SMALL_FRAME_ROWS` rows are encoded row by row, as the decision service
    encodes its requests (same values; the column-wise parse of a frame costs about 20 ms
    however few its rows, which a served single applicant would pay)."""
    x = None
    if len(frame) <= SMALL_FRAME_ROWS:
        columns = [str(c) for c in frame.columns]
        values = zip(*(frame[c].tolist() for c in frame.columns), strict=True)
        x = model.encoder.encode_rows([dict(zip(columns, row, strict=True)) for row in values])
    batch = model.score_checked(frame, x)
    reasons = [
        REASON_SEPARATOR.join(str(code) for code in row if code) for row in batch.reason_codes
    ]
    return pd.DataFrame(
        {
            "pd": np.asarray(batch.pd, dtype=np.float64),
            "score": np.asarray(batch.score, dtype=np.float64),  # published decimals
            "decision": [str(d) for d in batch.decision],
            "reasons": reasons,
        }
    )


class BundlePyfuncModel(PythonModel):
    """MLflow's python model of a creditops version: the bundle, loaded once per process."""

    def __init__(self) -> None:
        self._model: ScoringModel | None = None

    def load_context(self, context: PythonModelContext) -> None:
        expected = (context.model_config or {}).get(BUNDLE_SHA_TAG) or None
        model = ScoringModel.from_file(
            Path(context.artifacts[_BUNDLE_KEY]), expected_sha256=expected
        )
        model.prepare_for_serving()
        self._model = model

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        if self._model is None:
            raise RuntimeError("the model's bundle is not loaded: load it with mlflow.pyfunc")
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return predict_frame(self._model, model_input)


def input_columns(model: ScoringModel) -> tuple[list[str], list[str]]:
    """The model's features (required) and the columns that only knock-out rules read
    (optional: without them the rules do not fire)."""
    features = list(model.encoder.feature_names)
    rule_only = [c for c in model.policy.knockout_features() if c not in features]
    return features, rule_only


def example_input(model: ScoringModel, rows: pd.DataFrame) -> pd.DataFrame:
    """Up to :data:`EXAMPLE_ROWS` rows of the input columns, numeric ones as floats;
    complete rows first."""
    features, rule_only = input_columns(model)
    absent = [c for c in features if c not in rows.columns]
    if absent:
        raise InvalidInputError(
            f"the input example lacks model feature column(s): {absent[:5]}", field="input_example"
        )
    columns = features + [c for c in rule_only if c in rows.columns]
    complete = rows.dropna(subset=columns)
    chosen = complete if len(complete) >= EXAMPLE_ROWS else rows
    example = chosen[columns].head(EXAMPLE_ROWS).reset_index(drop=True)
    for column in columns:
        if model.spec.features.get(column) == "numeric":
            example[column] = pd.to_numeric(example[column], errors="coerce").astype(np.float64)
        else:
            example[column] = example[column].astype(object)
    return example


def model_signature(model: ScoringModel) -> ModelSignature:
    """Numeric features as doubles; categorical ones of any type (the encoder matches
    categories by their text, so ``2`` and ``"2"`` are the same); knock-out-only columns
    optional. Out: ``pd`` and ``score`` doubles, ``decision`` and ``reasons`` strings."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema, TensorSpec
    from mlflow.types.schema import AnyType

    def spec_of(column: str, *, required: bool) -> ColSpec:
        if model.spec.features.get(column) == "numeric":
            return ColSpec(DataType.double, column, required=required)
        return ColSpec(AnyType(), column, required=required)  # type: ignore[no-untyped-call]

    features, rule_only = input_columns(model)
    inputs: list[ColSpec | TensorSpec] = [spec_of(c, required=True) for c in features]
    inputs += [spec_of(c, required=False) for c in rule_only]
    outputs: list[ColSpec | TensorSpec] = [
        ColSpec(DataType.double, "pd"),
        ColSpec(DataType.double, "score"),
        ColSpec(DataType.string, "decision"),
        ColSpec(DataType.string, "reasons"),
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def _requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in _REQUIREMENTS]


def log_pyfunc_model(  # noqa: PLR0913 - where the model goes and what it is made of
    client: MlflowClient,
    experiment_id: str,
    run_id: str,
    bundle_path: Path,
    bundle_sha256: str,
    rows: pd.DataFrame,
    params: Mapping[str, str],
) -> tuple[str, str]:
    """Log the bundle as a pyfunc logged model of ``run_id``; returns the model's id and
    artifact location.

    ``rows`` are raw applicant rows for the input example. The model is created pending,
    its files (MLmodel, python model, bundle, signature, example) are uploaded, and it is
    marked ready, or failed when anything goes wrong.
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    model = ScoringModel.from_file(bundle_path, expected_sha256=bundle_sha256)
    example = example_input(model, rows)
    logged = client.create_logged_model(
        experiment_id,
        name=PYFUNC_MODEL_NAME,
        source_run_id=run_id,
        params=dict(params),
        tags={BUNDLE_SHA_TAG: bundle_sha256},
        model_type=MODEL_TYPE,
    )
    model_id = logged.model_id
    try:
        client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])
        description = Model(
            artifact_path=logged.artifact_location,
            run_id=run_id,
            model_uuid=model_id,
            model_id=model_id,
        )
        with tempfile.TemporaryDirectory(prefix="creditops-pyfunc-") as tmp:
            local = Path(tmp) / PYFUNC_MODEL_NAME
            mlflow.pyfunc.save_model(
                path=str(local),
                python_model=BundlePyfuncModel(),
                artifacts={_BUNDLE_KEY: str(bundle_path)},
                signature=model_signature(model),
                input_example=example,
                pip_requirements=_requirements(),
                model_config={BUNDLE_SHA_TAG: bundle_sha256},
                metadata={BUNDLE_SHA_TAG: bundle_sha256, "output_columns": list(OUTPUT_COLUMNS)},
                mlflow_model=description,
            )
            client.log_model_artifacts(model_id, str(local))
        client.finalize_logged_model(model_id, LoggedModelStatus.READY)
    except BaseException:
        with contextlib.suppress(Exception):
            client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)
        raise
    return str(model_id), str(logged.artifact_location)
