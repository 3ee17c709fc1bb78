"""The decision log as an archive: one decision as a JSON object, the streamed export of a
window to CSV or Parquet for analysts, and the retention purge."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from creditops.domain.windows import utc_text
from creditops.errors import InvalidInputError
from creditops.store.admin_repositories import AuditRepository
from creditops.store.repositories import DecisionRepository, OutcomeRepository
from creditops.store.tables import DecisionRow, OutcomeRow


def decision_dict(row: DecisionRow) -> dict[str, Any]:
    return {
        "decision_id": row.decision_id,
        "application_id": row.application_id,
        "model_name": row.model_name,
        "model_version": row.model_version,
        "policy_version": row.policy_version,
        "pd": row.pd,
        "score": row.score,
        "decision": row.decision,
        "reasons": row.reasons,
        "inputs": row.inputs,
        "created_at": utc_text(row.created_at),
        "latency_ms": row.latency_ms,
        "route": row.route,
        "suspended": row.suspended,
    }


# Decision columns exported as they are stored, in the export's column order.
_EXPORT_FIELDS = (
    "decision_id",
    "application_id",
    "model_name",
    "model_version",
    "policy_version",
    "pd",
    "score",
    "decision",
    "created_at",
    "latency_ms",
    "request_id",
    "api_key_id",
)


# The observed outcome beside each decision, so that a training set can be rebuilt by hand.
_OUTCOME_FIELDS = ("defaulted", "outcome_at")


def _export_rows(
    rows: Sequence[DecisionRow], columns: Mapping[str, bool], outcomes: Mapping[str, OutcomeRow]
) -> Iterator[dict[str, Any]]:
    """Flat rows with a fixed set of input columns (numeric ones as floats, others as text)
    and the outcome, where one was recorded."""
    for row in rows:
        flat: dict[str, Any] = {name: getattr(row, name) for name in _EXPORT_FIELDS}
        outcome = outcomes.get(row.decision_id)
        flat["defaulted"] = outcome.defaulted if outcome else None
        flat["outcome_at"] = outcome.observed_at if outcome else None
        for i in range(4):
            reason = row.reasons[i] if i < len(row.reasons) else None
            flat[f"reason_{i + 1}"] = reason["code"] if reason else None
        inputs = row.inputs or {}
        for key, numeric in columns.items():
            value = inputs.get(key)
            if value is None:
                flat[f"input_{key}"] = None
            else:
                flat[f"input_{key}"] = float(value) if numeric else str(value)
        yield flat


def _input_columns(
    sessions: sessionmaker[Session], since: datetime | None, model: str | None, chunk_size: int
) -> dict[str, bool]:
    """First pass: every input key in the export and whether all its values are numbers, so
    that every chunk is written with the same columns and types."""
    columns: dict[str, bool] = {}
    with sessions() as session:
        for chunk in DecisionRepository(session).iter_since(since, model, chunk_size):
            for row in chunk:
                for key, value in (row.inputs or {}).items():
                    numeric = value is None or (
                        isinstance(value, (int, float)) and not isinstance(value, bool)
                    )
                    columns[key] = columns.get(key, True) and numeric
    return dict(sorted(columns.items()))


@dataclass(frozen=True)
class ExportRequest:
    """Which decisions to export (since when, which model), where to, in which format."""

    output: Path
    fmt: str = "parquet"
    since: datetime | None = None
    model: str | None = None
    chunk_size: int = 10_000
    force: bool = False  # replace an existing output file


def export_decisions(sessions: sessionmaker[Session], request: ExportRequest) -> int:
    """Stream decisions to CSV or Parquet in chunks (bounded memory); returns the row count.

    Two passes over the window: the first fixes the input columns and their types, the
    second writes; so a later chunk can never change the file's header or schema. The file
    is written beside ``output`` under a temporary name and renamed over it at the end, so
    a reader never sees half a file; an existing ``output`` is refused unless ``force``
    (a symbolic link is replaced, never followed). In CSV, text cells that a spreadsheet
    would run as a formula are neutralised (:func:`neutralise_formula`).
    """
    output, fmt = request.output, request.fmt
    if fmt not in ("csv", "parquet"):
        raise InvalidInputError(f"--format must be csv or parquet; got {fmt!r}", field="format")
    if output.is_dir():
        raise InvalidInputError(f"--output {output} is a directory", field="output")
    if (output.exists() or output.is_symlink()) and not request.force:
        raise InvalidInputError(
            f"--output {output} exists; pass --force to replace it", field="output"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    os.close(handle)
    try:
        total = _write_export(sessions, request, Path(temporary))
        os.replace(temporary, output)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return total


def _write_export(sessions: sessionmaker[Session], request: ExportRequest, path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    since, model, chunk_size = request.since, request.model, request.chunk_size
    columns = _input_columns(sessions, since, model, chunk_size)
    names = [
        *_EXPORT_FIELDS,
        *_OUTCOME_FIELDS,
        *(f"reason_{i}" for i in range(1, 5)),
        *(f"input_{k}" for k in columns),
    ]
    total = 0
    writer: Any = None
    schema: Any = None
    with sessions() as session:
        for chunk in DecisionRepository(session).iter_since(since, model, chunk_size):
            outcomes = OutcomeRepository(session).for_decisions([r.decision_id for r in chunk])
            frame = pd.DataFrame(list(_export_rows(chunk, columns, outcomes)), columns=names)
            if request.fmt == "csv":
                frame = frame.map(neutralise_formula)
                frame.to_csv(path, mode="w" if total == 0 else "a", header=total == 0, index=False)
            else:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    schema = _parquet_schema(table.schema, columns)
                    writer = pq.ParquetWriter(path, schema)
                writer.write_table(table.cast(schema))
            total += len(frame)
    if writer is not None:
        writer.close()
    if total == 0:
        empty = pd.DataFrame(columns=names)
        if request.fmt == "csv":
            empty.to_csv(path, index=False)
        else:
            empty.astype("string").to_parquet(path, index=False)
    return total


# A text cell starting with one of these is run as a formula by spreadsheet programs (CSV
# injection, OWASP); the export prefixes such cells with a single quote, which spreadsheets
# read as "this is text" and do not show.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(value: Any) -> Any:
    """``value`` with a leading ``'`` if it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _parquet_schema(inferred: Any, columns: Mapping[str, bool]) -> Any:
    """Fixed types for the input columns (float64 or string), whatever the first chunk held."""
    import pyarrow as pa

    fields = []
    for f in inferred:
        key = f.name.removeprefix("input_")
        if f.name.startswith("input_") and key in columns:
            fields.append(pa.field(f.name, pa.float64() if columns[key] else pa.string()))
        elif f.name == "defaulted":
            fields.append(pa.field(f.name, pa.bool_()))
        elif f.name == "outcome_at":
            fields.append(pa.field(f.name, pa.timestamp("us", tz="UTC")))
        elif f.name.startswith("reason_") or pa.types.is_null(f.type):
            fields.append(pa.field(f.name, pa.string()))
        else:
            fields.append(f)
    return pa.schema(fields)


MAX_RETENTION_DAYS = 36_600  # about a century


def purge_decisions(
    sessions: sessionmaker[Session], retention_days: int, actor: str, now: datetime | None = None
) -> dict[str, Any]:
    """Delete the decisions (and their outcomes and reviews) older than the retention
    period, with an audit entry; one transaction."""
    if not 1 <= retention_days <= MAX_RETENTION_DAYS:
        raise InvalidInputError(
            f"--retention-days must be between 1 and {MAX_RETENTION_DAYS}; got {retention_days}",
            field="retention_days",
        )
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    with sessions.begin() as session:
        removed = DecisionRepository(session).purge_before(cutoff)
        AuditRepository(session).add(
            actor=actor,
            action="decisions.purge",
            target=utc_text(cutoff),
            outcome="ok",
            details={"removed": removed, "retention_days": retention_days},
        )
    return {"removed": removed, "cutoff": utc_text(cutoff), "retention_days": retention_days}
