"""Score points from probability of default.

``points = offset + factor * ln(odds)`` with ``odds = (1 - pd) / pd`` (good:bad),
``factor = pdo / ln 2`` and ``offset = base_score - factor * ln(base_odds)``: with the
defaults, 600 points mean 50:1 good:bad odds and every 20 points double the odds. Higher
is better. Scores are optionally clipped to ``[min_score, max_score]``.

Scores are published with :data:`SCORE_DECIMALS` decimals and :meth:`ScoreScaling.points`
returns them already rounded, so the policy decides on exactly the number an applicant, the
CSV and the adverse-action notice show: an unrounded 539.9952 would print as 540.00 yet
fail a 540 approve cutoff.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# PDs are kept strictly inside (0, 1) so that odds, and therefore points, stay finite.
PD_FLOOR = 1e-9
SCORE_DECIMALS = 2


@dataclass(frozen=True)
class ScoreScaling:
    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0
    min_score: float | None = 300.0
    max_score: float | None = 850.0

    @property
    def factor(self) -> float:
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        return self.base_score - self.factor * math.log(self.base_odds)

    def points(self, pd: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Score points for each PD (vectorised), rounded to the published decimals."""
        p = np.clip(np.asarray(pd, dtype=np.float64), PD_FLOOR, 1.0 - PD_FLOOR)
        score = self.offset + self.factor * (np.log1p(-p) - np.log(p))
        if self.min_score is not None or self.max_score is not None:
            score = np.clip(score, self.min_score, self.max_score)
        return np.asarray(np.round(score, SCORE_DECIMALS), dtype=np.float64)

    def pd_at(self, score: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The PD that maps to ``score`` (inverse of :meth:`points`, ignoring the clipping)."""
        log_odds = (np.asarray(score, dtype=np.float64) - self.offset) / self.factor
        return np.asarray(1.0 / (1.0 + np.exp(log_odds)), dtype=np.float64)

    def score_range(self) -> tuple[float | None, float | None]:
        return self.min_score, self.max_score
