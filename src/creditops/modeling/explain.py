"""Adverse-action reason codes from per-feature contributions.

Contributions are in log-odds (margin) space: LightGBM's TreeSHAP (``pred_contrib``) or the
scorecard's points below the best attainable bin. Features are grouped into reason families
by the catalogue (``bill_amt1`` .. ``bill_amt6`` share one code), each family's contribution
is the sum of its members', and the principal reasons are the families that push the
applicant towards default the most (strictly positive contribution), at most four.
Ties are broken by catalogue order, so identical inputs always give identical reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from creditops.features.spec import ReasonCatalogue, ReasonCode

MAX_REASONS = 4


@dataclass(frozen=True)
class ReasonFamilies:
    """Reason codes and the (features x codes) membership matrix."""

    codes: list[ReasonCode]
    membership: npt.NDArray[np.float64]  # shape (n_features, n_codes)
    members: list[npt.NDArray[np.int64]]  # feature indices per code

    @classmethod
    def build(
        cls,
        feature_names: Sequence[str],
        catalogue: ReasonCatalogue,
        used: Sequence[bool] | None = None,
    ) -> ReasonFamilies:
        """Families restricted to features the model actually uses."""
        index = {name: j for j, name in enumerate(feature_names)}
        is_used = list(used) if used is not None else [True] * len(feature_names)
        codes: list[ReasonCode] = []
        members: list[npt.NDArray[np.int64]] = []
        for code in catalogue.codes:
            cols = [index[f] for f in code.features if f in index and is_used[index[f]]]
            if cols:
                codes.append(code)
                members.append(np.asarray(cols, dtype=np.int64))
        membership = np.zeros((len(feature_names), len(codes)), dtype=np.float64)
        for k, member_cols in enumerate(members):
            membership[member_cols, k] = 1.0
        return cls(codes=codes, membership=membership, members=members)

    @cached_property
    def member_matrix(self) -> npt.NDArray[np.int64]:
        """(n_codes, most members) feature indices, padded with n_features (an extra column)."""
        n_features = self.membership.shape[0]
        width = max((len(cols) for cols in self.members), default=1)
        matrix = np.full((len(self.members), width), n_features, dtype=np.int64)
        for k, cols in enumerate(self.members):
            matrix[k, : len(cols)] = cols
        return matrix


@dataclass(frozen=True)
class PrincipalReasons:
    """Top reasons per applicant; ``code_index`` is -1 where a slot is empty."""

    code_index: npt.NDArray[np.int64]  # (n, MAX_REASONS)
    feature_index: npt.NDArray[np.int64]  # (n, MAX_REASONS): the family's top member
    contribution: npt.NDArray[np.float64]  # (n, MAX_REASONS): the family's total


def principal_reasons(
    contributions: npt.NDArray[np.float64],
    families: ReasonFamilies,
    max_reasons: int = MAX_REASONS,
) -> PrincipalReasons:
    """Vectorised selection of the principal reasons for every row."""
    n = contributions.shape[0]
    m = len(families.codes)
    if m == 0:
        empty = np.full((n, max_reasons), -1, dtype=np.int64)
        return PrincipalReasons(empty, empty.copy(), np.zeros((n, max_reasons)))
    # Members of every family at once, padded with one extra column: summed with a 0 there
    # (row by row in a fixed order, so a row's totals never depend on the other rows, as a
    # BLAS matrix product's may in the last bit), and the largest found with -inf there
    # (np.argmax keeps the first of ties, as a loop would).
    member_matrix = families.member_matrix
    padded = np.concatenate([contributions, np.zeros((n, 1))], axis=1)
    members = padded[:, member_matrix]  # (n, m, most members)
    family_total = members.sum(axis=2)
    members[:, member_matrix == padded.shape[1] - 1] = -np.inf
    best = np.argmax(members, axis=2)  # (n, m)
    top_member = member_matrix[np.arange(m), best]
    take = min(max_reasons, m)
    order = np.argsort(-family_total, axis=1, kind="stable")[:, :take]
    rows = np.arange(n)[:, None]
    values = family_total[rows, order]
    positive = values > 0.0
    code_index = np.full((n, max_reasons), -1, dtype=np.int64)
    feature_index = np.full((n, max_reasons), -1, dtype=np.int64)
    totals = np.zeros((n, max_reasons), dtype=np.float64)
    code_index[:, :take] = np.where(positive, order, -1)
    feature_index[:, :take] = np.where(positive, top_member[rows, order], -1)
    totals[:, :take] = np.where(positive, values, 0.0)
    return PrincipalReasons(code_index, feature_index, totals)
