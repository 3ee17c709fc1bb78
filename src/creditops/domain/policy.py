"""The decision policy: versioned configuration, separate from the model.

Knock-out rules are evaluated first (the first rule that fires declines the applicant with
the rule's own reason); the remaining applicants are banded by score:
``score >= approve_min_score`` approves, ``score < decline_below_score`` declines, anything
in between goes to manual review.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from creditops.errors import ConfigError

Decision = Literal["approve", "review", "decline"]
Operator = Literal["lt", "le", "gt", "ge", "eq", "ne", "in", "not_in"]


class KnockoutRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    feature: str
    op: Operator
    value: float | str | list[float | str]
    reason_code: str
    reason_text: str

    def fires(self, column: pd.Series) -> npt.NDArray[np.bool_]:
        """Vectorised: True where the rule declines. Missing values never fire."""
        if self.op in ("in", "not_in"):
            allowed = {
                str(v) for v in (self.value if isinstance(self.value, list) else [self.value])
            }
            text = column.astype("string")
            hit = text.isin(allowed).fillna(False).to_numpy(dtype=bool)
            present = text.notna().to_numpy(dtype=bool)
            return hit if self.op == "in" else (~hit & present)
        if isinstance(self.value, list):
            raise ConfigError(f"knock-out rule {self.name!r}: op {self.op!r} needs one value")
        if isinstance(self.value, str) and self.op in ("eq", "ne"):
            text = column.astype("string")
            equal = (text == self.value).fillna(False).to_numpy(dtype=bool)
            return equal if self.op == "eq" else (~equal & text.notna().to_numpy(dtype=bool))
        numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        threshold = float(self.value)
        with np.errstate(invalid="ignore"):
            result = {
                "lt": numbers < threshold,
                "le": numbers <= threshold,
                "gt": numbers > threshold,
                "ge": numbers >= threshold,
                "eq": numbers == threshold,
                "ne": (numbers != threshold) & ~np.isnan(numbers),
            }[self.op]
        return np.asarray(result, dtype=bool)

    def fires_on(self, values: Sequence[object]) -> npt.NDArray[np.bool_]:
        """:meth:`fires` for a few plain Python values (the API's JSON), without pandas.

        Same semantics value by value (tests hold the two to each other): missing values
        (None, NaN) never fire; ``in``/``not_in`` and string ``eq``/``ne`` compare the text
        form; numeric operators compare the value read as a number, text that is not a
        number counting as missing.
        """
        return np.fromiter((self._fires_one(v) for v in values), dtype=bool, count=len(values))

    def _fires_one(self, value: object) -> bool:
        if _is_missing(value):
            return False
        if self.op in ("in", "not_in"):
            allowed = {
                str(v) for v in (self.value if isinstance(self.value, list) else [self.value])
            }
            return (str(value) in allowed) == (self.op == "in")
        if isinstance(self.value, list):
            raise ConfigError(f"knock-out rule {self.name!r}: op {self.op!r} needs one value")
        if isinstance(self.value, str) and self.op in ("eq", "ne"):
            return (str(value) == self.value) == (self.op == "eq")
        number = _as_number(value)
        if number is None:
            return False
        threshold = float(self.value)
        return {
            "lt": number < threshold,
            "le": number <= threshold,
            "gt": number > threshold,
            "ge": number >= threshold,
            "eq": number == threshold,
            "ne": number != threshold,
        }[self.op]


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _as_number(value: object) -> float | None:
    """``pd.to_numeric(errors="coerce")`` for one value: None where it gives NaN."""
    if isinstance(value, bool | int | float | np.integer | np.floating):
        number = float(value)
    elif isinstance(value, str):
        if "_" in value:  # Python's float() reads "1_000"; pandas does not
            return None
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return None if math.isnan(number) else number


class DecisionPolicy(BaseModel):
    """Cutoffs and knock-out rules; ``version`` travels with every decision."""

    model_config = ConfigDict(extra="forbid")

    version: str = "default"
    approve_min_score: float
    decline_below_score: float
    knockouts: list[KnockoutRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_cutoffs(self) -> DecisionPolicy:
        if self.decline_below_score > self.approve_min_score:
            raise ValueError(
                "decline_below_score must not exceed approve_min_score "
                f"(got {self.decline_below_score} > {self.approve_min_score})"
            )
        return self

    def knockout_features(self) -> list[str]:
        return sorted({rule.feature for rule in self.knockouts})

    def decide(
        self,
        score: npt.ArrayLike,
        raw: pd.DataFrame | Mapping[str, Sequence[object]] | None = None,
    ) -> PolicyOutcome:
        """Decide for every applicant at once; ``raw`` holds the columns rules read."""
        scores = np.asarray(score, dtype=np.float64)
        decision = np.where(
            scores >= self.approve_min_score,
            "approve",
            np.where(scores < self.decline_below_score, "decline", "review"),
        ).astype(object)
        knocked = np.full(scores.shape[0], -1, dtype=np.int64)
        if self.knockouts and raw is not None:
            for index in range(len(self.knockouts) - 1, -1, -1):
                rule = self.knockouts[index]
                if rule.feature in raw:
                    column = raw[rule.feature]
                    if isinstance(column, pd.Series):
                        knocked[rule.fires(column)] = index
                    else:
                        knocked[rule.fires_on(list(column))] = index
            decision[knocked >= 0] = "decline"
        return PolicyOutcome(decision=decision, knockout_index=knocked)

    def with_cutoffs(self, approve_min_score: float, decline_below_score: float) -> DecisionPolicy:
        return self.model_copy(
            update={
                "approve_min_score": approve_min_score,
                "decline_below_score": decline_below_score,
            }
        )


@dataclass(frozen=True)
class PolicyOutcome:
    decision: npt.NDArray[np.object_]
    knockout_index: npt.NDArray[np.int64]  # -1 where no knock-out rule fired


def load_policy(path: Path) -> DecisionPolicy:
    """Read and validate a policy YAML file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"policy file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    try:
        return DecisionPolicy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "policy"
        raise ConfigError(
            f"{path}: {where}: {first['msg'].removeprefix('Value error, ')}", field=where
        ) from None


def default_cutoff_pds(base_rate: float) -> tuple[float, float]:
    """Default cutoffs, as PDs, when no policy file is given.

    Approve applicants whose PD is at most the portfolio's default rate, decline those above
    twice it (or above halfway between it and 1, whichever is lower, so the bands stay
    ordered for portfolios with high default rates), review in between. Returns
    ``(approve_max_pd, decline_min_pd)``; training turns them into score cutoffs.
    """
    rate = float(base_rate)
    return rate, min(2.0 * rate, (1.0 + rate) / 2.0)
