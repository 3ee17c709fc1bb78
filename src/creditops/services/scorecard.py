"""The scorecard tables of a registered version: its binning and points tables.

A ``logistic`` version is the scorecard itself (points after its calibration); a LightGBM
version carries the benchmark scorecard fitted beside it (``training.baseline_scorecard``
in its bundle). Both are read from the hash-verified bundle, so the tables match the
version's reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from creditops.errors import InvalidInputError
from creditops.modeling.scorecard import PointsScale, ScorecardTables, WoeScorecard
from creditops.services.context import AppContext
from creditops.services.model_versions import load_model


@dataclass(frozen=True)
class VersionScorecard:
    name: str
    version: str
    algorithm: str
    tables: ScorecardTables

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "algorithm": self.algorithm,
            **self.tables.to_dict(),
        }


def version_scorecard(ctx: AppContext, name: str, ref: str) -> VersionScorecard:
    """The tables of ``name`` at ``ref`` (a version or an alias)."""
    loaded = load_model(ctx, name, ref)
    model, version = loaded.model, loaded.info.version
    role: Literal["model", "baseline"] = "model"
    if model.scorecard is not None:
        scorecard, calibrator = model.scorecard, model.calibrator
    else:
        stored = model.bundle.training.get("baseline_scorecard")
        if not stored:
            raise InvalidInputError(
                f"{name} version {version} is a {model.algorithm} model registered before its "
                "scorecard baseline was stored with it; retrain it to get the tables",
                field="version",
            )
        scorecard, role, calibrator = WoeScorecard.from_dict(stored), "baseline", None
    tables = scorecard.tables(
        PointsScale.of(model.scaling, calibrator),
        role,
        model.encoder.categories_,
        model.spec.value_labels,
    )
    return VersionScorecard(name, version, model.algorithm, tables)
