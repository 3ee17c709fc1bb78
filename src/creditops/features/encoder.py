"""Encoding raw feature values into the float matrix both models consume.

Shared by training, batch scoring and the HTTP hot path, and stored inside the model bundle
so serving cannot drift from training. Numeric features become float64 (NaN = missing);
categorical features become integer category codes stored as floats, with NaN for missing
values and for categories never seen in training (so they are scored as missing, not
rejected).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from creditops.errors import DataError, InvalidInputError
from creditops.features.dataset import normalise_categorical, parse_numeric


class FeatureEncoder:
    """Learns category vocabularies at fit time; encodes frames or single rows."""

    def __init__(self, feature_names: Sequence[str], categorical: Sequence[bool]) -> None:
        if len(feature_names) != len(categorical):
            raise InvalidInputError("feature_names and categorical must have the same length")
        self.feature_names = list(feature_names)
        self.categorical = [bool(c) for c in categorical]
        self.categories_: dict[str, list[str]] = {}
        self._lookup: dict[str, dict[str, float]] = {}

    def fit(self, frame: pd.DataFrame) -> FeatureEncoder:
        for name, is_cat in zip(self.feature_names, self.categorical, strict=True):
            if is_cat:
                values = normalise_categorical(frame[name]).dropna()
                self.categories_[name] = sorted({str(v) for v in values})
        self._build_lookup()
        return self

    def _build_lookup(self) -> None:
        self._lookup = {
            name: {cat: float(i) for i, cat in enumerate(cats)}
            for name, cats in self.categories_.items()
        }

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def transform(self, frame: pd.DataFrame, *, strict: bool = False) -> npt.NDArray[np.float64]:
        """Encode a frame; missing columns raise. Unparseable numbers become missing, or with
        ``strict=True`` raise :class:`DataError` naming the column, the count and examples."""
        absent = [n for n in self.feature_names if n not in frame.columns]
        if absent:
            raise InvalidInputError(f"input lacks model features: {absent}", field=absent[0])
        out = np.empty((len(frame), self.n_features), dtype=np.float64)
        for j, (name, is_cat) in enumerate(zip(self.feature_names, self.categorical, strict=True)):
            column = frame[name]
            if is_cat:
                labels = normalise_categorical(column)
                codes = pd.Categorical(labels, categories=self.categories_[name]).codes
                out[:, j] = np.where(codes < 0, np.nan, codes.astype(np.float64))
            else:
                numbers, bad = parse_numeric(column)
                if strict and bad.any():
                    raise DataError(
                        f"column {name!r} holds non-numeric values",
                        field=name,
                        count=int(bad.sum()),
                        examples=column[bad].astype(str).unique().tolist(),
                    )
                out[:, j] = numbers.to_numpy(dtype=np.float64)
        return out

    def encode_row(self, values: Mapping[str, Any]) -> npt.NDArray[np.float64]:
        """Encode one applicant given as a mapping, as a ``(1, n_features)`` array."""
        return self.encode_rows([values])

    def encode_rows(self, rows: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.float64]:
        """Encode applicants given as mappings; the API's path (no DataFrame). Equal to
        :meth:`transform` on the same values, except that text in a numeric feature raises
        :class:`InvalidInputError` naming the feature."""
        plan = [
            (name, self._lookup[name] if is_cat else None)
            for name, is_cat in zip(self.feature_names, self.categorical, strict=True)
        ]
        nan = math.nan
        encoded = []
        for values in rows:
            # Python lists filled first and one array at the end: cheaper than item assignment
            row = []
            for name, lookup in plan:
                value = values.get(name)
                if value is None:
                    row.append(nan)
                elif lookup is not None:
                    row.append(lookup.get(_category_key(value), nan))
                elif type(value) is float or type(value) is int:  # exactly: bool is not a number
                    row.append(float(value))
                else:
                    row.append(_parse_number(name, value))
            encoded.append(row)
        return np.array(encoded, dtype=np.float64).reshape(len(encoded), len(plan))

    def decode_value(self, feature: str, code: float) -> object:
        """The original value behind an encoded cell (for reason-code payloads)."""
        if np.isnan(code):
            return None
        if feature in self.categories_:
            return self.categories_[feature][int(code)]
        return float(code)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_names": self.feature_names,
            "categorical": self.categorical,
            "categories": self.categories_,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEncoder:
        encoder = cls(data["feature_names"], data["categorical"])
        encoder.categories_ = {k: list(v) for k, v in data["categories"].items()}
        encoder._build_lookup()
        return encoder


def _category_key(value: object) -> str:
    """The canonical key of one category value; mirrors :func:`normalise_categorical`."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if np.isfinite(value) and float(value).is_integer():
            return str(int(value))
        return str(value)
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if np.isfinite(number) and number.is_integer():
        return str(int(number))
    return text


def _parse_number(name: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):  # e.g. NumPy scalars
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise InvalidInputError(
            f"feature {name!r} must be numeric, got {value!r}", field=name
        ) from None
