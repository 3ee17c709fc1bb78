"""Batch scoring of files and the policy what-if analysis.

:func:`scored_frame` is how a frame of applicants is scored in a file: the local engine
applies it to each chunk (:mod:`creditops.services.batch`), the Spark engine to each Arrow
batch, so both answer as if the whole table were scored at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from creditops.errors import InvalidInputError
from creditops.features.dataset import open_chunked_table
from creditops.modeling.bundle import ReasonsFor, ScoringModel, check_frame_columns
from creditops.modeling.explain import MAX_REASONS
from creditops.services import batch
from creditops.services.context import AppContext
from creditops.services.model_versions import load_model, load_test_set
from creditops.services.worker_pool import worker_context


@dataclass(frozen=True)
class ScoreOutcome:
    name: str
    version: str
    rows: int
    output: Path
    decisions: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "rows": self.rows,
            "output": str(self.output),
            "decisions": self.decisions,
        }


def scored_frame(
    frame: pd.DataFrame,
    model: ScoringModel,
    name: str,
    version: str,
    reasons: ReasonsFor = "all",
) -> pd.DataFrame:
    """Input columns plus model, pd, score, decision and reason_1..reason_4 (+ texts).

    Text in a numeric column is refused (with examples) rather than scored as missing, and
    so is a missing input the spec does not allow missing (unless it routes it to review).
    ``reasons="adverse"``: reason codes for review and decline rows only (as the API
    answers by default); the others' reason columns are empty.
    """
    batch = model.score_checked(frame, reasons=reasons)
    out = frame.copy()
    out["model_name"] = name
    out["model_version"] = version
    out["pd"] = batch.pd
    out["score"] = batch.score  # already at the published decimals: the decided value
    out["decision"] = batch.decision
    for i in range(MAX_REASONS):
        out[f"reason_{i + 1}"] = batch.reason_codes[:, i]
    for i in range(MAX_REASONS):
        out[f"reason_{i + 1}_text"] = batch.reason_texts[:, i]
    return out


def score_file(  # noqa: PLR0913 - the model, the input and the output; options holds the rest
    ctx: AppContext,
    name: str,
    ref: str,
    input_path: Path,
    output: Path,
    options: batch.BatchOptions | None = None,
) -> ScoreOutcome:
    """Score a CSV or Parquet file, or a directory of such files, into ``output`` (Parquet
    by its suffix, else CSV): every row as :func:`scored_frame` scores the whole table, read
    and scored in chunks on every core and written in input order
    (:mod:`creditops.services.batch`)."""
    options = options or batch.BatchOptions()
    table = open_chunked_table(input_path)
    if batch.is_parallel(table, options):
        worker_context([__name__])  # the workers' imports overlap the registry's work
    loaded = load_model(ctx, name, ref)
    check_frame_columns(pd.DataFrame(columns=table.columns), loaded.model)
    scorer = batch.ChunkScorer(
        loaded.model,
        name,
        loaded.info.version,
        batch.output_format(output),
        scored_frame,
        options.reasons_for,
    )
    result = batch.score_table(scorer, table, output, options)
    return ScoreOutcome(
        name=name,
        version=loaded.info.version,
        rows=result.rows,
        output=output,
        decisions=result.decisions,
    )


@dataclass(frozen=True)
class WhatIf:
    """Candidate approve cutoffs (None: the test scores' deciles), the loss given default,
    and the column holding each applicant's exposure (None: 1 per applicant)."""

    cutoffs: Sequence[float] | None = None
    lgd: float = 0.45
    exposure_column: str | None = None


def what_if(ctx: AppContext, name: str, ref: str, scenario: WhatIf) -> list[dict[str, float]]:
    """Approval rate, expected and observed bad rate, expected loss at candidate cutoffs.

    Computed on the version's stored test split. Expected loss per applicant is
    ``sum(PD * LGD * EAD over approved) / n``, with EAD 1 per applicant unless an exposure
    column is named.
    """
    cutoffs, lgd, exposure_column = scenario.cutoffs, scenario.lgd, scenario.exposure_column
    if not 0.0 <= lgd <= 1.0:
        raise InvalidInputError(f"--lgd must be in [0, 1]; got {lgd}", field="lgd")
    loaded = load_model(ctx, name, ref)
    model = loaded.model
    test = load_test_set(ctx, name, loaded.info.version)
    target = model.spec.target.column
    y = test[target].to_numpy(dtype=np.float64)
    x = model.encoder.transform(test)
    pd_values = model.predict_pd(x)
    score = model.scaling.points(pd_values)
    if exposure_column:
        if exposure_column not in test.columns:
            raise InvalidInputError(
                f"exposure column {exposure_column!r} is not in the test data",
                field="exposure_column",
            )
        ead = pd.to_numeric(test[exposure_column], errors="coerce").fillna(0.0).to_numpy()
    else:
        ead = np.ones(len(test))
    if not cutoffs:
        cutoffs = sorted({float(np.round(q)) for q in np.quantile(score, np.linspace(0.1, 0.9, 9))})
    current = model.policy.approve_min_score
    rows = []
    for cutoff in sorted({*cutoffs, current}):
        approved = score >= cutoff
        n_approved = int(approved.sum())
        rows.append(
            {
                "cutoff": float(cutoff),
                "is_current": bool(cutoff == current),
                "approval_rate": n_approved / len(score),
                "expected_bad_rate": float(pd_values[approved].mean()) if n_approved else 0.0,
                "observed_bad_rate": float(y[approved].mean()) if n_approved else 0.0,
                "expected_loss_per_applicant": float(
                    np.sum(pd_values[approved] * lgd * ead[approved]) / len(score)
                ),
            }
        )
    return rows
