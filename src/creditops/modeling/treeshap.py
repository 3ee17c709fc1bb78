"""Exact path-dependent TreeSHAP for LightGBM models, precomputed per leaf (numpy only).

LightGBM's ``Booster.predict(x, pred_contrib=True)`` runs the recursive path-dependent
TreeSHAP of Lundberg, Erion et al., "From local explanations to global understanding with
explainable AI for trees", Nature Machine Intelligence 2, 56-67 (2020), arXiv:1802.03888.
This module returns the same numbers with the precomputation idea of Fast TreeSHAP v2
(J. Yang, "Fast TreeSHAP: Accelerating SHAP value computation for trees", 2021,
arXiv:2109.09847).

The math. For a leaf ``l`` with value ``v_l``, let ``P`` be the ``m`` distinct features split on
along its root-to-leaf path (repeated splits on one feature are merged). For ``j`` in ``P``:

* ``z_j`` ("zero fraction") is the product, over the path's splits on ``j``, of
  child data count / parent data count (LightGBM's ``leaf_count`` and ``internal_count``);
* ``o_j`` ("one fraction") is 1 if ``x`` satisfies every split on ``j`` along the path, else 0.

With ``O`` the set of path features ``x`` satisfies, path-dependent TreeSHAP adds to feature
``i`` in ``P``::

    phi_i += v_l * (o_i - z_i) * G_l(O, i)
    G_l(O, i) = sum_{S subset of O minus {i}} w(|S|, m) * prod_{j in P, j not in S, j != i} z_j
    w(s, m) = s! (m - s - 1)! / m!

``G_l`` depends on ``x`` only through ``O``, a bit mask over the leaf's ``m`` path features, so
a table over all ``2^m`` masks and ``m`` features holds every term the leaf can produce.
Writing ``A = O minus {i}`` and ``B`` for the path features outside ``O`` and ``i``, the sum
factorises as ``prod_B z * sum_s w(s, m) e_{|A|-s}(z_A)`` where ``e_k`` are elementary
symmetric polynomials; a subset-by-subset recursion over the ``m`` bits builds them for all
masks at once. The bias (the last column) is the sum over trees of the tree's expected value,
``sum_l v_l * leaf_count_l / root_count``; a single-leaf tree only adds its value there.

Per batch of rows: every internal node's decision is evaluated once, vectorised over all
nodes of all trees, reproducing LightGBM 4's ``Tree::NumericalDecision`` and
``Tree::CategoricalDecision`` (``include/LightGBM/tree.h``) and the C API's dense-row
conversion, which drops values with ``|v| <= kZeroThreshold`` (they reach the trees as 0).
A feature split more than once on a path gets one AND-ed condition. The ``o_j`` bits of all
leaves are packed into one bit string per row, each leaf's mask is read from it with a
shift, and the table entries are gathered and summed per feature.

The trees are read from ``Booster.model_to_string()``, which writes thresholds and leaf
values with 17 significant digits (exact double round trip) and honours ``best_iteration``
the same way ``Booster.predict`` does by default. Dense ``float64`` input only: sparse input
to LightGBM skips the zeroing of tiny values and may differ for them.

Reading the trees, the node decisions and the leaf paths are in
:mod:`creditops.modeling.treeshap_trees`; the weight tables, the per-leaf gathering and
:class:`TreeShapExplainer` are here. When the model's grids are small enough, every batch
is explained by a second exact method with a third of the CPU per row, one table lookup per
tree and row (:mod:`creditops.modeling.treeshap_cells`); the per-leaf tables here serve the
other models. One method per model, whatever the batch size, so an applicant's reasons
never depend on who else was in the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from creditops.modeling.treeshap_cells import CellTables
from creditops.modeling.treeshap_trees import (
    F64,
    Conjunctions,
    Ints,
    Leaf,
    NodeDecisions,
    Tree,
    collect_leaves,
    is_supported,
    parse_model,
)

Bools = npt.NDArray[np.bool_]
MAX_TABLE_BYTES = 256 * 2**20
MAX_PATH_FEATURES_LIMIT = 20
# "auto": the cell tables when the model has them (for every batch size, so an applicant's
# contributions never depend on the rows scored with it), else the per-leaf tables.
Method = Literal["auto", "leaves", "cells"]
_CHUNK_ELEMENTS = 1 << 18  # (rows x bits) per batch chunk: bounds memory, stays in cache


def shap_weight_tables(zero: F64, value: F64) -> F64:
    """``table[l, i, mask] = v_l * (o_i - z_li) * G_l(mask, i)`` for leaves sharing ``m``.

    ``zero`` is (leaves, m), ``value`` (leaves,); ``o_i`` is bit ``i`` of ``mask``.
    """
    n_leaves, m = zero.shape
    n_masks = 1 << m
    poly = np.zeros((n_leaves, n_masks, m + 1))  # e_k(z over the mask's features)
    poly[:, 0, 0] = 1.0
    inside = np.ones((n_leaves, n_masks))  # product of z over the mask's features
    for b in range(m):
        lo, hi = 1 << b, 2 << b
        poly[:, lo:hi] = poly[:, :lo]
        poly[:, lo:hi, 1:] += zero[:, b, None, None] * poly[:, :lo, :-1]
        inside[:, lo:hi] = inside[:, :lo] * zero[:, b, None]
    masks = np.arange(n_masks)
    size = np.array([bin(mask).count("1") for mask in range(n_masks)])
    weight = np.array(
        [math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)]
    )
    s = size[:, None] - np.arange(m + 1)[None, :]  # |S| = |A| - k for e_k
    usable = (s >= 0) & (size[:, None] < m)
    h = np.einsum("lak,ak->la", poly, np.where(usable, weight[np.clip(s, 0, m - 1)], 0.0))
    bit = (1 << np.arange(m))[:, None]
    outside = inside[:, (n_masks - 1) ^ (masks | bit)]  # prod z outside mask and i
    g = outside * h[:, masks & ~bit]
    one = ((masks & bit) != 0).astype(np.float64)
    return np.asarray(value[:, None, None] * (one[None] - zero[:, :, None]) * g, dtype=np.float64)


def _fill_tables(leaves: list[Leaf], widths: Ints, offsets: Ints) -> F64:
    """All leaves' tables in one flat array, built per path width in bounded chunks."""
    table = np.empty(int((widths << widths).sum()), dtype=np.float64)
    for m in np.unique(widths).tolist():
        group = np.flatnonzero(widths == m)
        chunk = max(1, (1 << 22) // ((m + 1) << m))
        for start in range(0, group.size, chunk):
            part = group[start : start + chunk]
            zero = np.array([leaves[j].zero_fraction for j in part], dtype=np.float64)
            value = np.array([leaves[j].value for j in part], dtype=np.float64)
            # stored as [leaf, mask, slot]: the m terms one row needs from a leaf are adjacent
            # (one or two cache lines), not m lines 2^m entries apart
            blocks = shap_weight_tables(zero, value).transpose(0, 2, 1).reshape(part.size, -1)
            table[(offsets[part][:, None] + np.arange(m << m)).ravel()] = blocks.ravel()
    return table


@dataclass(frozen=True)
class _LeafTables:
    """Per-leaf masks and the flat table of SHAP terms.

    Leaf ``l``'s ``m`` path-feature conditions occupy bits ``[q_l, q_l + m)`` of one packed
    bit string per row; its mask is a little-endian 32-bit read at byte ``q_l // 8``, shifted
    right by ``q_l % 8`` and cut to ``m`` bits (``m + 7 <= 32``).
    """

    levels: list[tuple[int, int, Ints, Ints]]  # conjunctions, level by level
    bit_condition: Ints  # condition behind each bit, plus 32 bits of padding
    leaf_byte: Ints
    leaf_shift: npt.NDArray[np.int64]
    full_mask: npt.NDArray[np.int64]
    pair_leaf: Ints  # one pair per (leaf, path feature), sorted by feature
    pair_base: Ints  # table offset of (leaf, mask 0, slot)
    pair_width: Ints  # the pair's leaf's m: the table stride between masks
    feature_start: Ints
    used_features: Ints
    table: F64
    # per leaf, in leaf order: where its bits start, its table block; per tree: its leaves
    leaf_first_bit: Ints
    leaf_offset: Ints
    tree_first_leaf: Ints  # leaves of tree t: tree_first_leaf[t] .. tree_first_leaf[t + 1]
    bit_feature: Ints  # the feature behind each bit

    @classmethod
    def build(
        cls,
        leaves: list[Leaf],
        leaf_tree: list[int],
        n_trees: int,
        ands: tuple[Ints, list[tuple[int, int, Ints, Ints]]],
    ) -> _LeafTables:
        renumber, levels = ands
        widths = np.array([len(leaf.features) for leaf in leaves], dtype=np.intp)
        sizes = widths << widths  # m * 2^m entries per leaf
        offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.intp)
        first_bit = np.concatenate(([0], np.cumsum(widths)[:-1])).astype(np.int64)
        pair_leaf = np.repeat(np.arange(len(leaves)), widths)
        slot = np.concatenate([np.arange(m) for m in widths.tolist()])
        pair_feature = np.array([f for leaf in leaves for f in leaf.features], dtype=np.intp)
        order = np.argsort(pair_feature, kind="stable")
        used, first = np.unique(pair_feature[order], return_index=True)
        bits = [c for leaf in leaves for c in leaf.conditions] + [0] * 32
        return cls(
            levels=levels,
            bit_condition=renumber[np.array(bits, dtype=np.intp)],
            leaf_byte=(first_bit >> 3).astype(np.intp),
            leaf_shift=first_bit & 7,
            full_mask=(np.int64(1) << widths.astype(np.int64)) - 1,
            pair_leaf=pair_leaf[order],
            pair_base=(offsets[pair_leaf] + slot)[order],
            pair_width=widths[pair_leaf][order],
            feature_start=first.astype(np.intp),
            used_features=used,
            table=_fill_tables(leaves, widths, offsets),
            leaf_first_bit=first_bit.astype(np.intp),
            leaf_offset=offsets,
            tree_first_leaf=np.searchsorted(leaf_tree, np.arange(n_trees + 1)).astype(np.intp),
            bit_feature=pair_feature,
        )

    def conditions(self, decisions: NodeDecisions, x: F64, n_conditions: int) -> Bools:
        """Every condition (node sides, then the conjunctions) for each row of ``x``: (rows,
        conditions)."""
        conditions = np.empty((x.shape[0], n_conditions), dtype=np.bool_)
        decisions.fill(x, conditions)
        for start, stop, a, b in self.levels:
            out = conditions[:, start:stop]
            np.logical_and(conditions.take(a, axis=1), conditions.take(b, axis=1), out=out)
        return conditions

    def tree_terms(self, t: int, by_condition: Bools, rows: dict[int, Ints]) -> dict[int, F64]:
        """Tree ``t``'s contributions per feature, for cells whose feature ``f`` takes the
        value of probe row ``rows[f][i]``; ``by_condition[c]`` is condition ``c`` at every
        probe row (the cell tables' fill, :mod:`creditops.modeling.treeshap_cells`)."""
        out: dict[int, F64] = {}
        for leaf in range(int(self.tree_first_leaf[t]), int(self.tree_first_leaf[t + 1])):
            first = int(self.leaf_first_bit[leaf])
            width = int(self.full_mask[leaf]).bit_length()
            features = self.bit_feature[first : first + width].tolist()
            conditions = self.bit_condition[first : first + width].tolist()
            mask = np.zeros(next(iter(rows.values())).size, dtype=np.intp)
            for b, (feature, condition) in enumerate(zip(features, conditions, strict=True)):
                mask |= by_condition[condition].take(rows[feature]).astype(np.intp) << b
            base = mask * width + int(self.leaf_offset[leaf])
            for b, feature in enumerate(features):
                terms = self.table.take(base + b)
                out[feature] = out[feature] + terms if feature in out else terms
        return out

    def explain(self, conditions: npt.NDArray[np.bool_]) -> F64:
        """(rows, used features) contributions given the node sides filled in ``conditions``."""
        for start, stop, a, b in self.levels:
            out = conditions[:, start:stop]
            np.logical_and(conditions.take(a, axis=1), conditions.take(b, axis=1), out=out)
        packed = np.packbits(conditions.take(self.bit_condition, axis=1), axis=1, bitorder="little")
        n_rows, n_bytes = packed.shape
        words = np.ndarray((n_rows, n_bytes - 3), dtype="<u4", buffer=packed, strides=(n_bytes, 1))
        masks = (words.take(self.leaf_byte, axis=1) >> self.leaf_shift) & self.full_mask
        index = masks.take(self.pair_leaf, axis=1) * self.pair_width + self.pair_base
        terms = self.table.take(index)
        return np.asarray(np.add.reduceat(terms, self.feature_start, axis=1), dtype=np.float64)


@dataclass(frozen=True)
class TreeShapExplainer:
    """Exact ``pred_contrib`` of a LightGBM binary or regression model (see module docs)."""

    n_features: int
    bias: float
    decisions: NodeDecisions
    tables: _LeafTables | None  # None when every tree is a single leaf
    n_conditions: int
    chunk_rows: int
    # what the cell tables are built from, on first use
    trees: list[Tree] = field(default_factory=list, repr=False, compare=False)
    node_id: dict[tuple[int, int], int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def table_bytes(self) -> int:
        return 0 if self.tables is None else int(self.tables.table.nbytes)

    @cached_property
    def cells(self) -> CellTables | None:
        """The per-tree cell tables, built on first use; None when the model's grids are too
        large: the per-leaf tables then serve every batch. Each cell's numbers come from the
        per-leaf tables at one representative row."""
        tables = self.tables
        if tables is None:
            return None
        return CellTables.build(
            self.trees,
            self.decisions,
            self.node_id,
            lambda probe: tables.conditions(self.decisions, probe, self.n_conditions),
            tables.tree_terms,
        )

    @classmethod
    def from_booster(
        cls,
        booster: lgb.Booster,
        *,
        max_path_features: int = 12,
        max_table_bytes: int = MAX_TABLE_BYTES,
    ) -> TreeShapExplainer | None:
        """Precompute the tables; None when the model is not one this class reproduces exactly
        (multiclass, random-forest averaging, linear trees, empty nodes, a path with more than
        ``max_path_features`` distinct features, or tables above ``max_table_bytes``)."""
        if not 1 <= max_path_features <= MAX_PATH_FEATURES_LIMIT:
            raise ValueError(
                "The 'max_path_features' parameter of TreeShapExplainer.from_booster must be an "
                f"int in [1, {MAX_PATH_FEATURES_LIMIT}]. Got {max_path_features!r} instead."
            )
        parsed = parse_model(booster.model_to_string())
        if parsed is None or not is_supported(*parsed):
            return None
        header, trees = parsed
        bias = 0.0
        for tree in trees:
            bias += tree.expected_value()
        decisions, node_id = NodeDecisions.build(trees)
        ands = Conjunctions(decisions.n_nodes)
        leaves: list[Leaf] = []
        leaf_tree: list[int] = []
        for t, tree in enumerate(trees):
            if tree.split_feature:
                found = collect_leaves(tree, t, node_id, ands)
                leaves += found
                leaf_tree += [t] * len(found)
        widths = [len(leaf.features) for leaf in leaves]
        if (
            max(widths, default=0) > max_path_features
            or 8 * sum(m << m for m in widths) > max_table_bytes
        ):
            return None
        tables = (
            _LeafTables.build(leaves, leaf_tree, len(trees), ands.by_level()) if leaves else None
        )
        width = 1 if tables is None else max(tables.bit_condition.size, tables.pair_leaf.size)
        n_features = int(header["max_feature_idx"]) + 1
        n_conditions = decisions.n_nodes * 2 + len(ands.operands)
        return cls(
            n_features,
            bias,
            decisions,
            tables,
            n_conditions,
            max(1, _CHUNK_ELEMENTS // width),
            trees=trees,
            node_id=node_id,
        )

    def contributions(self, x: F64, method: Method = "auto") -> F64:
        """(rows, n_features + 1) contributions, the last column the bias, as ``pred_contrib``.

        ``method``: ``"auto"`` and ``"cells"`` take the cell tables when the model has them
        (built on first use), else the per-leaf tables; ``"leaves"`` forces those. The two
        agree within rounding.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(
                "The 'x' parameter of TreeShapExplainer.contributions must be a 2-d array with "
                f"{self.n_features} columns. Got shape {x.shape} instead."
            )
        out = np.zeros((x.shape[0], self.n_features + 1), dtype=np.float64)
        out[:, -1] = self.bias
        if self.tables is None:
            return out
        if method != "leaves" and self.cells is not None:
            out[:, self.cells.out_features] = self.cells.explain(x)
            return out
        for start in range(0, x.shape[0], self.chunk_rows):
            chunk = x[start : start + self.chunk_rows]
            conditions = np.empty((chunk.shape[0], self.n_conditions), dtype=np.bool_)
            self.decisions.fill(chunk, conditions)
            out[start : start + chunk.shape[0], self.tables.used_features] = self.tables.explain(
                conditions
            )
        return out
