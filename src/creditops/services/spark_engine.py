"""Batch scoring and binned data drift on Apache Spark (the optional ``spark`` extra).

**Scoring** (:func:`score_spark`): the verified bundle is broadcast to the executors once;
each executor's Python worker rebuilds the model from it once (cached by the bundle's
sha256) and scores its partition in Arrow batches (``mapInPandas``) with
:func:`creditops.services.scoring.scored_frame`, the local engine's function, so both engines
answer alike row for row. The output is a directory of Parquet part files.

**Drift** (:func:`drift_spark`): the counts per frozen bin of a version's reference profile
come from one Spark aggregation over the data, and the local binned-mode code judges them
(:func:`creditops.monitoring.drift.binned.data_drift_binned`), so the numbers are those of
``creditops drift --name N --current PATH`` on one machine. Numeric values fall into the
profile's grid bins ``(a, b]`` (what ``numpy.searchsorted(grid, x, side="left")`` does
locally) by Spark ML's ``Bucketizer``; NaN, infinities and nulls are missing. Categories
are grouped by their raw value on the cluster and the few distinct values are normalised
on the driver by the local function
(:func:`creditops.monitoring.drift.statistics.canonical_categories`). The per-bin sums of
numeric values (used by the binned Wasserstein distance) are added in another order than
locally: equal for integer amounts, within rounding (about 1e-16 relative) otherwise.

PySpark is imported inside the functions only: without it they raise one
:class:`~creditops.errors.InvalidInputError` that names the extra to install.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from creditops.errors import CreditopsError, DataError, IntegrityError, InvalidInputError
from creditops.features.dataset import table_files
from creditops.modeling.bundle import ModelBundle, ReasonsFor, ScoringModel, check_frame_columns
from creditops.modeling.explain import MAX_REASONS
from creditops.monitoring.drift.binned import BinnedCounts, data_drift_binned, numeric_grid
from creditops.monitoring.drift.data import DriftResult
from creditops.monitoring.drift.statistics import (
    CategoricalCounts,
    NumericCounts,
    canonical_categories,
)
from creditops.services.context import AppContext
from creditops.services.model_versions import load_model
from creditops.services.monitoring import BinnedReference
from creditops.services.scoring import ScoreOutcome, scored_frame

if TYPE_CHECKING:
    from pyspark import Broadcast
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

INSTALL_HINT = "pip install 'creditops[spark]'"
_CARRIED = "creditops-spark-error:"  # how a domain error crosses from an executor


def require_pyspark() -> None:
    """Raise one clear error when PySpark is not installed."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise InvalidInputError(
            f"--engine spark needs PySpark, which is not installed: {INSTALL_HINT}",
            field="engine",
        ) from None


@contextmanager
def spark_session(master: str | None) -> Iterator[SparkSession]:
    """The active session when there is one (spark-submit, a notebook, the tests), else a
    new one on ``master`` (Spark's default when None), stopped at the end.

    A local master's Python workers run this interpreter, so they import the same
    creditops; on a cluster the executors need creditops installed (docs/operations.md).
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    builder = SparkSession.builder.appName("creditops")
    if master:
        builder = builder.master(master)
    # No master and no gateway from spark-submit: PySpark starts a local one (local[*]).
    is_local = (master or "local").startswith("local") and "PYSPARK_GATEWAY_PORT" not in os.environ
    if is_local and "PYSPARK_PYTHON" not in os.environ:
        # PySpark takes its workers' interpreter from this variable when the context starts.
        os.environ["PYSPARK_PYTHON"] = sys.executable
        try:
            session = builder.getOrCreate()
        finally:
            del os.environ["PYSPARK_PYTHON"]
    else:
        session = builder.getOrCreate()
    try:
        yield session
    finally:
        session.stop()


def read_spark_table(session: SparkSession, path: Path) -> DataFrame:
    """A CSV or Parquet file, or a directory of them, as the local engine reads it (CSV
    columns as text, the spec gives the types)."""
    fmt, files = table_files(path)
    names = [str(p) for p in files]
    if fmt == "parquet":
        return session.read.parquet(*names)
    return session.read.csv(names, header=True, inferSchema=False, ignoreLeadingWhiteSpace=True)


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class _ScoringJob:
    """What each executor needs: the broadcast bundle, its hash and the version's name."""

    bundle: Broadcast[bytes]
    sha256: str
    name: str
    version: str
    reasons_for: ReasonsFor


_EXECUTOR_MODELS: dict[str, ScoringModel] = {}  # per executor Python worker, by sha256


def _executor_model(job: _ScoringJob) -> ScoringModel:
    model = _EXECUTOR_MODELS.get(job.sha256)
    if model is None:
        data = job.bundle.value
        actual = hashlib.sha256(data).hexdigest()
        if actual != job.sha256:
            raise IntegrityError(f"broadcast bundle has sha256 {actual}, expected {job.sha256}")
        model = ScoringModel(ModelBundle.from_bytes(data))
        _EXECUTOR_MODELS.clear()  # one model at a time per worker
        _EXECUTOR_MODELS[job.sha256] = model
    return model


def _score_batches(job: _ScoringJob, batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Runs on the executors: each Arrow batch through the local engine's function."""
    try:
        model = _executor_model(job)
        for batch in batches:
            if len(batch):
                yield scored_frame(batch, model, job.name, job.version, job.reasons_for)
    except CreditopsError as exc:
        payload = {"code": exc.code, "message": exc.message, "field": exc.field}
        raise RuntimeError(_CARRIED + json.dumps(payload)) from None


def _scored_schema(schema: StructType) -> StructType:
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    added: list[tuple[str, DataType]] = [
        ("model_name", StringType()),
        ("model_version", StringType()),
        ("pd", DoubleType()),
        ("score", DoubleType()),
        ("decision", StringType()),
    ]
    added += [(f"reason_{i + 1}", StringType()) for i in range(MAX_REASONS)]
    added += [(f"reason_{i + 1}_text", StringType()) for i in range(MAX_REASONS)]
    names = {name for name, _ in added}
    kept = [f for f in schema.fields if f.name not in names]
    return StructType([*kept, *(StructField(n, t, True) for n, t in added)])


def _domain_error(exc: Exception) -> CreditopsError | None:
    """The domain error an executor carried in ``exc``, or a plain one for an executor that
    cannot import creditops; None for anything else."""
    text = str(exc)
    found = re.search(re.escape(_CARRIED) + r"(\{.*\})", text)
    if found:
        payload = json.loads(found.group(1))
        kinds: dict[str, type[CreditopsError]] = {
            DataError.code: DataError,
            IntegrityError.code: IntegrityError,
        }
        kind = kinds.get(str(payload["code"]), InvalidInputError)
        return kind(str(payload["message"]), field=payload["field"])
    if "No module named 'creditops'" in text:
        return InvalidInputError(
            "the Spark executors cannot import creditops: install it on them "
            "(docs/operations.md, Batch scoring and drift on Spark)",
            field="master",
        )
    return None


def _prepare_output(output_dir: Path) -> None:
    """Refuse a CSV name, and to replace a non-empty directory that is not an earlier
    Spark output."""
    if output_dir.suffix.lower() == ".csv":
        raise InvalidInputError(
            f"--output {output_dir}: the Spark engine writes a directory of Parquet files, "
            "not CSV; give a directory name",
            field="output",
        )
    if output_dir.is_file() or (
        output_dir.is_dir() and any(output_dir.iterdir()) and not (output_dir / "_SUCCESS").exists()
    ):
        raise InvalidInputError(
            f"--output {output_dir} exists and is not an earlier Spark output; the Spark "
            "engine writes a directory of Parquet files: give a new or empty directory",
            field="output",
        )


def score_spark(  # noqa: PLR0913 - the CLI's score options, as score_file's plus the master
    ctx: AppContext,
    name: str,
    ref: str,
    input_path: Path,
    output_dir: Path,
    master: str | None,
    reasons_for: ReasonsFor = "all",
) -> ScoreOutcome:
    """Score a file or a directory of files on Spark into a directory of Parquet files:
    the same columns and values as :func:`creditops.services.scoring.score_file`."""
    require_pyspark()
    _prepare_output(output_dir)
    loaded = load_model(ctx, name, ref)
    data = loaded.model.bundle.to_bytes()
    with spark_session(master) as session:
        frame = read_spark_table(session, input_path)
        check_frame_columns(pd.DataFrame(columns=frame.columns), loaded.model)
        if frame.isEmpty():
            raise DataError(f"{input_path} holds no rows", count=0)
        job = _ScoringJob(
            session.sparkContext.broadcast(data),
            hashlib.sha256(data).hexdigest(),
            name,
            loaded.info.version,
            reasons_for,
        )
        scored = frame.mapInPandas(
            functools.partial(_score_batches, job), schema=_scored_schema(frame.schema)
        )
        try:
            scored.write.mode("overwrite").parquet(str(output_dir))
        except Exception as exc:
            carried = _domain_error(exc)
            if carried is None:
                raise
            raise carried from None
        finally:
            job.bundle.destroy()
        written = session.read.parquet(str(output_dir)).groupBy("decision").count().collect()
    decisions = {str(row["decision"]): int(row["count"]) for row in written}
    return ScoreOutcome(
        name=name,
        version=loaded.info.version,
        rows=sum(decisions.values()),
        output=output_dir,
        decisions=decisions,
    )


# --------------------------------------------------------------------------- drift

_INFINITY = float("inf")
_MISSING_BIN = -1
_BAD_BIN = -2  # text in a numeric column that is not a number


def drift_spark(reference: BinnedReference, current: Path, master: str | None) -> DriftResult:
    """Binned drift of a file or directory against a version's reference profile, the
    counts aggregated on Spark: equal to :func:`creditops.services.monitoring.binned_file_drift`."""
    require_pyspark()
    with spark_session(master) as session:
        frame = read_spark_table(session, current)
        counts = binned_counts(frame, reference.profile, reference.features)
    return data_drift_binned(reference.profile, counts, reference.config)


def binned_counts(
    frame: DataFrame, profile: Mapping[str, Any], features: Sequence[str]
) -> dict[str, BinnedCounts]:
    """Counts of ``frame`` per bin of ``profile`` (numeric: per grid bin with the sum of
    the values; categorical: per canonical category), all features in one aggregation
    over the union of one narrow projection per feature (a columnar source reads each
    feature's column once)."""
    from pyspark.sql import functions as sf

    available = profile.get("features") or {}
    unknown = [n for n in features if n not in available]
    if unknown:
        raise InvalidInputError(
            f"features not in the reference profile: {unknown}", field="features"
        )
    absent = [n for n in features if n not in frame.columns]
    if absent:
        raise DataError(
            "the current data lacks feature columns", count=len(absent), examples=absent
        )
    types = {f.name: f.dataType for f in frame.schema.fields}
    parts: list[DataFrame] = []
    not_number: dict[str, Column] = {}
    for i, name in enumerate(features):
        if available[name].get("type") == "categorical":
            parts.append(frame.select(_category_key(i, _col(name), types[name]).alias("key")))
        else:
            grid = [float(g) for g in numeric_grid(available[name])]
            part, not_number[name] = _numeric_keys(frame, i, name, types[name], grid)
            parts.append(part)
    groups = (
        functools.reduce(lambda a, b: a.unionByName(b), parts)
        .select("key.*")
        .groupBy("feature", "bin", "text", "number")
        .agg(sf.count(sf.lit(1)).alias("n"), sf.sum("value").alias("total"))
        .collect()
    )
    rows = [
        (int(g["feature"]), int(g["bin"]), g["text"], g["number"], int(g["n"]), g["total"])
        for g in groups
    ]
    _refuse_text_in_numbers(frame, features, not_number, rows)
    return {name: _counts_of(i, name, available[name], rows) for i, name in enumerate(features)}


def _col(name: str) -> Column:
    from pyspark.sql import functions as sf

    return sf.col("`" + name.replace("`", "``") + "`")


def _numeric_keys(
    frame: DataFrame, i: int, name: str, dtype: DataType, grid: Sequence[float]
) -> tuple[DataFrame, Column]:
    """One numeric feature's ``(feature, bin, value)`` keys, and its not-a-number test.

    The grid bin comes from Spark ML's ``Bucketizer`` (a binary search in the JVM), whose
    buckets are closed on the left, ``[a, b)``, where the profile's are closed on the
    right, ``(a, b]``: the negated value in the negated, reversed grid gives the profile's
    bin (``-x`` in ``[-b, -a)`` exactly when ``x`` in ``(a, b]``), and bucket ``j`` of
    ``-x`` is grid bin ``len(grid) - j``. Text (a CSV) is parsed as a number, as locally.
    """
    from pyspark.ml.feature import Bucketizer
    from pyspark.sql import functions as sf
    from pyspark.sql.types import NumericType

    if isinstance(dtype, NumericType):
        value = _col(name).cast("double")
        not_number = sf.lit(False)
    else:
        quoted = "`" + name.replace("`", "``") + "`"
        text = sf.trim(_col(name).cast("string"))
        value = sf.expr(f"try_cast(trim(cast({quoted} AS STRING)) AS DOUBLE)")
        not_number = (text.isNotNull() & (text != "")) & (
            value.isNull() | sf.isnan(value) | (sf.abs(value) == _INFINITY)
        )
    missing = value.isNull() | sf.isnan(value) | (sf.abs(value) == _INFINITY)
    state = sf.when(not_number, _BAD_BIN).when(missing, _MISSING_BIN).otherwise(0)
    prepared = frame.select(
        state.alias("state"),
        sf.when(state == 0, value).alias("value"),
        sf.when(state == 0, -value).otherwise(0.0).alias("negated"),
    )
    in_grid = sf.lit(0)
    if grid:
        splits = [-_INFINITY, *sorted(-g for g in grid), _INFINITY]
        bucketizer = Bucketizer(splits=splits, inputCol="negated", outputCol="bucket")
        prepared = bucketizer.transform(prepared)
        in_grid = sf.lit(len(grid)) - sf.col("bucket").cast("int")
    key = sf.struct(
        sf.lit(i).alias("feature"),
        sf.when(sf.col("state") == 0, in_grid).otherwise(sf.col("state")).alias("bin"),
        sf.lit(None).cast("string").alias("text"),
        sf.lit(None).cast("double").alias("number"),
        sf.col("value").alias("value"),
    )
    return prepared.select(key.alias("key")), not_number


def _category_key(i: int, column: Column, dtype: DataType) -> Column:
    """The (feature, raw value) key of a categorical feature: floating-point values as
    numbers (NaN missing) and booleans as pandas writes them, so that the local
    normalisation sees what it sees locally; everything else as Spark's text."""
    from pyspark.sql import functions as sf
    from pyspark.sql.types import BooleanType, DoubleType, FloatType

    text = sf.lit(None).cast("string")
    number = sf.lit(None).cast("double")
    if isinstance(dtype, DoubleType | FloatType):
        cast = column.cast("double")
        number = sf.when(~sf.isnan(cast), cast)
    elif isinstance(dtype, BooleanType):
        text = sf.when(column, sf.lit("True")).when(~column, sf.lit("False"))
    else:
        text = column.cast("string")
    return sf.struct(
        sf.lit(i).alias("feature"),
        sf.lit(0).alias("bin"),
        text.alias("text"),
        number.alias("number"),
        sf.lit(None).cast("double").alias("value"),
    )


_Group = tuple[int, int, str | None, float | None, int, float | None]


def _refuse_text_in_numbers(
    frame: DataFrame, features: Sequence[str], bad: Mapping[str, Column], rows: list[_Group]
) -> None:
    """The local engine's error for text in a numeric column, with a few examples."""
    for i, name in enumerate(features):
        count = sum(n for feature, b, *_, n, _total in rows if feature == i and b == _BAD_BIN)
        if count:
            examples = [
                r[0] for r in frame.filter(bad[name]).select(f"`{name}`").limit(5).collect()
            ]
            raise DataError(
                f"current column {name!r} has values that are not numbers",
                field=name,
                count=count,
                examples=examples,
            )


def _counts_of(i: int, name: str, fp: Mapping[str, Any], rows: list[_Group]) -> BinnedCounts:
    mine = [r for r in rows if r[0] == i]
    if fp.get("type") == "categorical":
        raw = [(r[3] if r[3] is not None else r[2], r[4]) for r in mine]
        counts: dict[str, int] = {}
        missing = 0
        names = canonical_categories([value for value, _ in raw])
        for category, (_, n) in zip(names, raw, strict=True):
            if category is None:
                missing += int(n)
            else:
                counts[category] = counts.get(category, 0) + int(n)
        return CategoricalCounts(counts, missing)
    size = numeric_grid(fp).size + 1
    bins = np.zeros(size, np.int64)
    sums = np.zeros(size, np.float64)
    missing = 0
    for _, b, _text, _number, n, total in mine:
        if b == _MISSING_BIN:
            missing += int(n)
        elif b >= 0:
            bins[b] += int(n)
            sums[b] += float(total or 0.0)
    return NumericCounts(bins, sums, missing)
