"""The scorecard's tables as files next to the reports: JSON (everything) and two CSVs.

``scorecard.json`` holds the scaling, base points, every binning table and the points table
(:meth:`creditops.modeling.scorecard.ScorecardTables.to_dict`); ``scorecard_binning.csv``
has one row per (characteristic, bin) and ``scorecard_points.csv`` one row per used
(characteristic, bin), preceded by a ``(base points)`` row. Writing is deterministic: the
same tables give the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from creditops.errors import InvalidInputError
from creditops.modeling.scorecard import ScorecardTables

JSON_FILE = "scorecard.json"
BINNING_FILE = "scorecard_binning.csv"
POINTS_FILE = "scorecard_points.csv"
BINNING_COLUMNS = (
    "feature",
    "bin",
    "label",
    "count",
    "share",
    "n_event",
    "n_nonevent",
    "event_rate",
    "woe",
    "iv_contribution",
    "feature_iv",
)
POINTS_COLUMNS = ("feature", "bin", "label", "woe", "coefficient", "points")
BASE_POINTS = "(base points)"


def _csv(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return buffer.getvalue()


def binning_csv(tables: ScorecardTables) -> str:
    rows = [
        {"feature": table.feature, "feature_iv": table.iv, **vars(row)}
        for table in tables.binning
        for row in table.rows
    ]
    return _csv(BINNING_COLUMNS, rows)


def points_csv(tables: ScorecardTables) -> str:
    rows: list[dict[str, Any]] = [{"feature": BASE_POINTS, "points": tables.base_points}]
    rows += [vars(row) for row in tables.points]
    return _csv(POINTS_COLUMNS, rows)


def scorecard_json(tables: ScorecardTables) -> str:
    return json.dumps(tables.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_scorecard_files(tables: ScorecardTables, directory: Path) -> list[Path]:
    """Write the three files into ``directory`` (created) and return their paths."""
    contents = {
        JSON_FILE: scorecard_json(tables),
        BINNING_FILE: binning_csv(tables),
        POINTS_FILE: points_csv(tables),
    }
    paths = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in contents.items():
            path = directory / name
            path.write_text(text, encoding="utf-8", newline="\n")
            paths.append(path)
    except OSError as exc:
        raise InvalidInputError(
            f"Cannot write the scorecard tables to {directory}: {exc.strerror or exc}",
            field="path",
        ) from exc
    return paths
