"""Streaming batch scoring: a table of any size on every core, in memory bounded by the chunk.

``creditops score`` reads its input in chunks of rows (Parquet row groups cut to
``chunk_rows``, CSV blocks of ``chunk_rows`` lines; see
:class:`~creditops.features.dataset.ChunkedTable`), scores each chunk with
:func:`creditops.services.scoring.scored_frame` (handed in by
:func:`~creditops.services.scoring.score_file`), the same function for every chunk and
every engine, and writes the output as the chunks come back, in input order:

    reader (this process) -> worker processes (one model each) -> ordered writer (this process)

At most ``2 x workers`` chunks are in flight, so memory depends on the chunk size and the
number of workers, not on the input's size. Workers are processes, not threads: TreeSHAP,
which is most of the cost (reason codes for every row), is numpy under the GIL in many small
calls, and two threads scored no faster than one (measured: 1.0x, benchmarks/README.md).
They are started by a fork server that has imported the scoring code (forking this process
instead would copy LightGBM's OpenMP state, and a child that then predicts hangs) and run
LightGBM with one OpenMP thread each: the processes are the parallelism. Each worker
rebuilds the model once from the bundle's bytes (verified by this process).

The output goes to a hidden file beside ``output`` that replaces it only when every row is
written: a refusal or a crash leaves no partial output behind. A refusal (text in a numeric
column, an input the spec does not allow missing) stops the work and is reported as the
whole table would have been refused read at once: the same one-line message, with counts
and 1-based row numbers over the whole table (:func:`whole_table_refusal`).
"""

from __future__ import annotations

import os
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from creditops.errors import CreditopsError, DataError, InvalidInputError
from creditops.features.dataset import ChunkedTable, TableChunk, parse_numeric
from creditops.modeling.bundle import ModelBundle, ReasonsFor, ScoringModel
from creditops.modeling.explain import MAX_REASONS
from creditops.services.worker_pool import worker_context

if TYPE_CHECKING:
    import pyarrow.parquet as pq

OutputFormat = Literal["csv", "parquet"]
ProgressCallback = Callable[[int, int | None], None]  # rows written, rows expected (estimate)
# (frame, model, name, version, reasons for) -> the scored frame:
# creditops.services.scoring.scored_frame
FrameScorer = Callable[[pd.DataFrame, ScoringModel, str, str, ReasonsFor], pd.DataFrame]

DEFAULT_CHUNK_ROWS = 50_000
CHUNKS_PER_WORKER = 2  # in flight: one being scored, one waiting, per worker
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
_TEXT = pa.string()
SCORED_TYPES: dict[str, pa.DataType] = {
    "model_name": _TEXT,
    "model_version": _TEXT,
    "pd": pa.float64(),
    "score": pa.float64(),
    "decision": _TEXT,
    **{f"reason_{i + 1}": _TEXT for i in range(MAX_REASONS)},
    **{f"reason_{i + 1}_text": _TEXT for i in range(MAX_REASONS)},
}


def all_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class BatchOptions:
    """Rows per chunk, worker processes (None: every core) and a progress callback called
    after each chunk is written with the rows written and the rows expected (exact for
    Parquet, estimated from the bytes read for CSV)."""

    chunk_rows: int = DEFAULT_CHUNK_ROWS
    workers: int | None = None
    on_progress: ProgressCallback | None = None
    reasons_for: ReasonsFor = "all"

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            raise InvalidInputError(
                f"--chunk-rows must be a positive number of rows; got {self.chunk_rows}",
                field="chunk_rows",
            )
        if self.workers is not None and self.workers < 1:
            raise InvalidInputError(
                f"--workers must be at least 1; got {self.workers}", field="workers"
            )

    @property
    def n_workers(self) -> int:
        return self.workers if self.workers is not None else all_cores()


@dataclass(frozen=True)
class BatchResult:
    rows: int
    decisions: dict[str, int]


def output_format(output: Path) -> OutputFormat:
    return "parquet" if output.suffix.lower() in PARQUET_SUFFIXES else "csv"


# -- one chunk ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk's output, ready to append: CSV text or an Arrow batch, and its decisions."""

    rows: int
    decisions: dict[str, int]
    csv: bytes | None = None
    batch: pa.RecordBatch | None = None


@dataclass(frozen=True)
class ChunkScorer:
    """Scores chunks with one model and ``score_frame`` (:func:`scored_frame
    <creditops.services.scoring.scored_frame>`, given by the caller: a module-level
    function, which reaches the workers by name), then renders the output's format."""

    model: ScoringModel
    name: str
    version: str
    output_format: OutputFormat
    score_frame: FrameScorer
    reasons_for: ReasonsFor = "all"

    def score(self, batch: pa.RecordBatch, *, with_header: bool) -> ScoredChunk:
        frame = batch.to_pandas()
        out = self.score_frame(frame, self.model, self.name, self.version, self.reasons_for)
        counts = out["decision"].value_counts()
        decisions = {str(k): int(v) for k, v in counts.items()}
        if self.output_format == "csv":
            text = out.to_csv(index=False, header=with_header)
            return ScoredChunk(len(out), decisions, csv=text.encode())
        return ScoredChunk(len(out), decisions, batch=_arrow_output(batch, out))


def _arrow_output(batch: pa.RecordBatch, out: pd.DataFrame) -> pa.RecordBatch:
    """``out``'s columns in its order: the input's as read (Arrow types kept, so every chunk
    has the same schema), the scored ones with fixed types (an all-empty reason column in
    one chunk is still text)."""
    names = [str(c) for c in out.columns]
    inputs = set(batch.schema.names)
    arrays = [
        batch.column(name)
        if name in inputs and name not in SCORED_TYPES
        else pa.array(out[name], type=SCORED_TYPES.get(name), from_pandas=True)
        for name in names
    ]
    return pa.RecordBatch.from_arrays(arrays, names=names)


# -- worker processes ---------------------------------------------------------------------

_worker_scorer: ChunkScorer | None = None  # set in each worker process by _start_worker


@dataclass(frozen=True)
class _WorkerSetup:
    """What a worker process builds its :class:`ChunkScorer` from (the model as bytes)."""

    bundle: bytes
    name: str
    version: str
    output_format: OutputFormat
    score_frame: FrameScorer
    reasons_for: ReasonsFor

    @classmethod
    def of(cls, scorer: ChunkScorer) -> _WorkerSetup:
        bundle = scorer.model.bundle.to_bytes()
        return cls(
            bundle,
            scorer.name,
            scorer.version,
            scorer.output_format,
            scorer.score_frame,
            scorer.reasons_for,
        )


def _start_worker(setup: _WorkerSetup) -> None:
    global _worker_scorer  # one model per worker process, built once
    model = ScoringModel(ModelBundle.from_bytes(setup.bundle))
    model.prepare_for_serving()
    _worker_scorer = ChunkScorer(
        model,
        setup.name,
        setup.version,
        setup.output_format,
        setup.score_frame,
        setup.reasons_for,
    )


def _score_in_worker(batch: pa.RecordBatch, with_header: bool) -> ScoredChunk:
    if _worker_scorer is None:
        raise RuntimeError("the scoring worker was not started with a model")
    return _worker_scorer.score(batch, with_header=with_header)


def is_parallel(table: ChunkedTable, options: BatchOptions) -> bool:
    """Whether worker processes are worth starting: more than one worker and, as far as is
    known before reading, more than one chunk."""
    if options.n_workers < 2:
        return False
    if table.n_rows is not None:
        return table.n_rows > options.chunk_rows
    return True


# -- the pipeline -------------------------------------------------------------------------


@dataclass
class _Sink:
    """Appends scored chunks to the partial output file, in order, and reports progress."""

    path: Path
    fmt: OutputFormat
    table: ChunkedTable
    on_progress: ProgressCallback | None
    rows: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    expected: int | None = None
    _csv: BinaryIO | None = None
    _parquet: pq.ParquetWriter | None = None

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._csv is not None:
            self._csv.close()
        if self._parquet is not None:
            self._parquet.close()

    def read(self, chunk: TableChunk) -> None:
        """Update the expected row count from how far reading has got."""
        if self.table.n_rows is not None:
            self.expected = self.table.n_rows
        elif chunk.bytes_read:
            rows_read = chunk.first_row + chunk.batch.num_rows
            self.expected = max(rows_read, rows_read * self.table.n_bytes // chunk.bytes_read)

    def write(self, scored: ScoredChunk) -> None:
        if scored.csv is not None:
            if self._csv is None:
                self._csv = self.path.open("xb")
            self._csv.write(scored.csv)
        elif scored.batch is not None:
            if self._parquet is None:
                import pyarrow.parquet as pq

                self._parquet = pq.ParquetWriter(str(self.path), scored.batch.schema)
            self._parquet.write_batch(scored.batch)
        self.rows += scored.rows
        for decision, count in scored.decisions.items():
            self.decisions[decision] = self.decisions.get(decision, 0) + count
        if self.on_progress is not None:
            self.on_progress(self.rows, max(self.rows, self.expected or 0) or None)


def score_table(
    scorer: ChunkScorer, table: ChunkedTable, output: Path, options: BatchOptions
) -> BatchResult:
    """Score every row of ``table`` into ``output`` (CSV, or Parquet by its suffix), in
    input order; ``output`` appears only once complete."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        with _Sink(partial, scorer.output_format, table, options.on_progress) as sink:
            try:
                _run(scorer, table, options, sink)
            except DataError as exc:
                raise whole_table_refusal(table, scorer.model, options.chunk_rows) or exc from None
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return BatchResult(sink.rows, sink.decisions)


def _run(scorer: ChunkScorer, table: ChunkedTable, options: BatchOptions, sink: _Sink) -> None:
    chunks = table.chunks(options.chunk_rows)
    if not is_parallel(table, options):
        _run_here(scorer, chunks, sink)
        return
    first = next(chunks)
    second = next(chunks, None)
    if second is None:  # one chunk after all (CSV): not worth a process
        _run_here(scorer, iter([first]), sink)
        return
    _run_in_workers(scorer, chain([first, second], chunks), options, sink)


def _run_here(scorer: ChunkScorer, chunks: Iterator[TableChunk], sink: _Sink) -> None:
    for chunk in chunks:
        sink.read(chunk)
        sink.write(scorer.score(chunk.batch, with_header=chunk.first_row == 0))


def _run_in_workers(
    scorer: ChunkScorer, chunks: Iterator[TableChunk], options: BatchOptions, sink: _Sink
) -> None:
    """Chunks go to the workers as they are read; results are written in input order, with
    at most :data:`CHUNKS_PER_WORKER` chunks per worker in flight."""
    workers = options.n_workers
    pool = ProcessPoolExecutor(
        workers,
        mp_context=worker_context([scorer.score_frame.__module__]),
        initializer=_start_worker,
        initargs=(_WorkerSetup.of(scorer),),
    )
    pending: deque[Future[ScoredChunk]] = deque()
    try:
        for chunk in chunks:
            sink.read(chunk)
            pending.append(pool.submit(_score_in_worker, chunk.batch, chunk.first_row == 0))
            if len(pending) >= CHUNKS_PER_WORKER * workers:
                sink.write(pending.popleft().result())
        while pending:
            sink.write(pending.popleft().result())
    except BrokenProcessPool:
        raise CreditopsError(
            "a scoring worker process died (out of memory?); try fewer --workers or a "
            "smaller --chunk-rows"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- refusals over the whole table --------------------------------------------------------


@dataclass
class _Refusals:
    """What :meth:`ScoringModel.score_checked` would refuse in the whole table, gathered
    chunk by chunk: text in numeric columns (count, first distinct values) and missing
    required inputs (count, first 1-based rows; the first row's first missing input)."""

    model: ScoringModel
    bad_counts: dict[str, int] = field(default_factory=dict)
    bad_examples: dict[str, list[str]] = field(default_factory=dict)
    missing_counts: dict[str, int] = field(default_factory=dict)
    missing_rows: dict[str, list[int]] = field(default_factory=dict)
    first_missing: str | None = None

    def add(self, chunk: TableChunk) -> None:
        frame = chunk.batch.to_pandas()
        encoder = self.model.encoder
        for name, is_cat in zip(encoder.feature_names, encoder.categorical, strict=True):
            if is_cat:
                continue
            _, bad = parse_numeric(frame[name])
            if bad.any():
                self.bad_counts[name] = self.bad_counts.get(name, 0) + int(bad.sum())
                seen = self.bad_examples.setdefault(name, [])
                for value in frame.loc[bad, name].astype(str).unique().tolist():
                    if len(seen) < 5 and value not in seen:
                        seen.append(value)
        if self.bad_counts or self.model.spec.missing.on_missing != "refuse":
            return
        self._add_missing(encoder.transform(frame), chunk.first_row)

    def _add_missing(self, x: npt.NDArray[np.float64], first_row: int) -> None:
        missing = self.model.missing_required(x)
        if missing is None:
            return
        if self.first_missing is None:
            self.first_missing = str(next(m for m in missing if m is not None))
        names = self.model.encoder.feature_names
        for j in self.model.required_columns.tolist():
            rows = np.flatnonzero(np.isnan(x[:, j]))
            if rows.size:
                name = names[j]
                self.missing_counts[name] = self.missing_counts.get(name, 0) + int(rows.size)
                shown = self.missing_rows.setdefault(name, [])
                shown.extend(int(r) + first_row + 1 for r in rows[: 5 - len(shown)])

    def error(self) -> DataError | None:
        """The error reading the whole table at once gives (the same text), or None."""
        for name in self.model.encoder.feature_names:
            if name in self.bad_counts:
                return DataError(
                    f"column {name!r} holds non-numeric values",
                    field=name,
                    count=self.bad_counts[name],
                    examples=self.bad_examples[name],
                )
        first = self.first_missing
        if first is None:
            return None
        return DataError(
            f"{first} is missing in {self.missing_counts[first]} row(s), and the spec does "
            "not allow it missing (missing.allowed); fill it, or set missing.on_missing: review",
            field=first,
            count=self.missing_counts[first],
            examples=self.missing_rows[first],
        )


def whole_table_refusal(
    table: ChunkedTable, model: ScoringModel, chunk_rows: int
) -> DataError | None:
    """Read ``table`` again (encoding only) for the refusal of the whole table: the first
    numeric column, in the model's feature order, with text in it, else the first missing
    required input; counts and rows over every chunk."""
    refusals = _Refusals(model)
    for chunk in table.chunks(chunk_rows):
        refusals.add(chunk)
    return refusals.error()
