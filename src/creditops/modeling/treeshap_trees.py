"""The trees of a LightGBM model as :mod:`creditops.modeling.treeshap` needs them.

``Booster.model_to_string()`` parsed into :class:`Tree` objects (thresholds and leaf values
keep their 17 significant digits), the check that a model is one the tables reproduce
exactly (:func:`is_supported`), every internal node's decision vectorised over the nodes of
all trees (:class:`NodeDecisions`, reproducing LightGBM 4's ``Tree::NumericalDecision`` and
``Tree::CategoricalDecision`` and the dense-row zeroing of ``|v| <= kZeroThreshold``), the
AND-ed conditions of features split more than once on a path (:class:`Conjunctions`), and
the root-to-leaf paths with their zero fractions (:func:`collect_leaves`). The TreeSHAP
maths, the per-leaf tables and :class:`~creditops.modeling.treeshap.TreeShapExplainer` are
in :mod:`creditops.modeling.treeshap`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, cast

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]

K_ZERO_THRESHOLD = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float constant)
MISSING_ZERO, MISSING_NAN = 1, 2  # missing types; 0 is None


@dataclass(frozen=True)
class Tree:
    """One tree of a LightGBM model string, in the arrays ``Tree`` holds in C++."""

    split_feature: list[int]
    threshold: list[float]
    decision_type: list[int]
    left_child: list[int]
    right_child: list[int]
    leaf_value: list[float]
    leaf_count: list[int]
    internal_count: list[int]
    cat_boundaries: list[int]
    cat_threshold: list[int]

    def count(self, node: int) -> int:
        return self.internal_count[node] if node >= 0 else self.leaf_count[~node]

    def expected_value(self) -> float:
        """``Tree::ExpectedValue``, summed in the same order."""
        if not self.split_feature:
            return self.leaf_value[0]
        total, value = float(self.internal_count[0]), 0.0
        for count, leaf_value in zip(self.leaf_count, self.leaf_value, strict=True):
            value += (count / total) * leaf_value
        return value


@dataclass(frozen=True)
class Leaf:
    value: float
    conditions: list[int]  # slot -> condition the row must meet for o = 1
    features: list[int]  # slot -> feature index
    zero_fraction: list[float]  # slot -> z


def parse_model(text: str) -> tuple[dict[str, str], list[Tree]] | None:
    """Header and trees of a model string; None if a tree is linear or lacks a field."""
    header: dict[str, str] = {}
    blocks: list[dict[str, str]] = []
    for line in text.splitlines():
        if line.startswith("end of trees"):
            break
        if line.startswith("Tree="):
            blocks.append({})
            continue
        key, _, value = line.partition("=")
        (blocks[-1] if blocks else header)[key.strip()] = value.strip()
    trees = []
    for block in blocks:
        if block.get("is_linear") != "0" or "leaf_value" not in block:
            return None
        parsed = {
            f.name: [
                float(t) if f.type == "list[float]" else int(t)
                for t in block.get(f.name, "").split()
            ]
            for f in fields(Tree)
        }
        trees.append(Tree(**cast(dict[str, Any], parsed)))
    return header, trees


def is_supported(header: dict[str, str], trees: list[Tree]) -> bool:
    """One output per row, no averaging, known missing types, every node with data."""
    if header.get("num_class") != "1" or header.get("num_tree_per_iteration") != "1":
        return False
    if "average_output" in header or "max_feature_idx" not in header:
        return False
    return all(
        not tree.split_feature
        or (
            min(tree.leaf_count + tree.internal_count) > 0
            and max(tree.decision_type) >> 2 <= MISSING_NAN
        )
        for tree in trees
    )


def numeric_rule(threshold: float, decision_type: int) -> tuple[float, float, float, float]:
    """(threshold, NaN substitute, flip interval lo, hi) making ``fmax(v, sub) <= threshold``,
    flipped on ``[lo, hi]``, equal to LightGBM's decision on the raw value ``v``.

    The C API turns ``|v| <= k`` (``k = kZeroThreshold``) into 0. For missing types None and
    NaN, that only matters when ``-k <= threshold < k``; moving the threshold to ``k`` (0
    goes left) or just below ``-k`` (0 goes right) reproduces it. For missing type Zero,
    ``[-k, k]`` follows ``default_left``: the part of it where ``v <= threshold`` disagrees is
    the flip interval. NaN becomes 0 unless the missing type is NaN; the substitute -inf
    sends it left, NaN (compares false) right.
    """
    k = K_ZERO_THRESHOLD
    missing, default_left = (decision_type >> 2) & 3, bool(decision_type & 2)
    lo, hi = math.inf, -math.inf
    if missing == MISSING_ZERO:
        nan_left = default_left
        if default_left:
            lo, hi = max(math.nextafter(threshold, math.inf), -k), k
        else:
            lo, hi = -k, min(threshold, k)
    else:
        zero_left = threshold >= 0.0
        nan_left = default_left if missing == MISSING_NAN else zero_left
        if -k <= threshold < k:
            threshold = k if zero_left else math.nextafter(-k, -math.inf)
    return threshold, (-math.inf if nan_left else math.nan), lo, hi


@dataclass(frozen=True)
class NodeDecisions:
    """Every internal node of every tree, numeric nodes first, then categorical ones."""

    num_feature: Ints
    num_threshold: F64
    nan_sub: F64
    flip_nodes: Ints  # numeric nodes with a non-empty flip interval (missing type Zero)
    flip_lo: F64
    flip_hi: F64
    cat_feature: Ints
    cat_size: F64  # categories covered by the node's bitset; larger values go right
    cat_offset: Ints  # position of category 0 in cat_table
    cat_table: npt.NDArray[np.bool_]  # per node: [False, bit 0 .. bit size-1, False]

    @classmethod
    def build(cls, trees: list[Tree]) -> tuple[NodeDecisions, dict[tuple[int, int], int]]:
        keys = [(t, i) for t, tree in enumerate(trees) for i in range(len(tree.split_feature))]
        numeric = [(t, i) for t, i in keys if not trees[t].decision_type[i] & 1]
        categorical = [(t, i) for t, i in keys if trees[t].decision_type[i] & 1]
        rules = [numeric_rule(trees[t].threshold[i], trees[t].decision_type[i]) for t, i in numeric]
        threshold, nan_sub, lo, hi = np.array(rules, dtype=np.float64).reshape(-1, 4).T
        flips = np.flatnonzero(lo <= hi)
        bitsets = []
        for t, i in categorical:
            bounds, cat_idx = trees[t].cat_boundaries, int(trees[t].threshold[i])
            words = np.array(trees[t].cat_threshold[bounds[cat_idx] : bounds[cat_idx + 1]], "<u4")
            bitsets.append(np.unpackbits(words.view(np.uint8), bitorder="little").astype(np.bool_))
        sizes = np.array([b.size for b in bitsets], dtype=np.intp)
        padded = [np.concatenate(([False], b, [False])) for b in bitsets]
        decisions = cls(
            num_feature=np.array([trees[t].split_feature[i] for t, i in numeric], dtype=np.intp),
            num_threshold=threshold,
            nan_sub=nan_sub,
            flip_nodes=flips,
            flip_lo=lo[flips],
            flip_hi=hi[flips],
            cat_feature=np.array([trees[t].split_feature[i] for t, i in categorical], np.intp),
            cat_size=sizes.astype(np.float64),
            cat_offset=np.cumsum(sizes + 2) - sizes - 1,
            cat_table=np.concatenate([np.zeros(0, np.bool_), *padded]),
        )
        return decisions, {key: j for j, key in enumerate(numeric + categorical)}

    @property
    def n_nodes(self) -> int:
        return int(self.num_feature.size + self.cat_feature.size)

    def fill(self, x: F64, conditions: npt.NDArray[np.bool_]) -> None:
        """Write "goes left" at each node to column ``node`` of ``conditions`` and "goes
        right" to column ``n_nodes + node``, for every row of ``x``."""
        n_num, n_nodes = self.num_feature.size, self.n_nodes
        values = np.fmax(x.take(self.num_feature, axis=1), self.nan_sub)
        left = conditions[:, :n_num]
        np.less_equal(values, self.num_threshold, out=left)
        if self.flip_nodes.size:
            flipped = values[:, self.flip_nodes]
            left[:, self.flip_nodes] ^= (flipped >= self.flip_lo) & (flipped <= self.flip_hi)
        if self.cat_feature.size:
            # NaN and values >= size go to the False slot after the bitset, values <= -1 to
            # the one before it; (-1, 0) truncates to category 0 as static_cast<int> does.
            clipped = np.fmax(np.fmin(x.take(self.cat_feature, axis=1), self.cat_size), -1.0)
            index = clipped.astype(np.intp) + self.cat_offset
            conditions[:, n_num:n_nodes] = self.cat_table.take(index)
        np.logical_not(conditions[:, :n_nodes], out=conditions[:, n_nodes : 2 * n_nodes])


class Conjunctions:
    """Conditions after the 2 * n_nodes node sides: ANDs of two earlier conditions, for paths
    that split on one feature more than once (``o_j`` needs every such split met)."""

    def __init__(self, n_nodes: int) -> None:
        self.base = 2 * n_nodes
        self.operands: list[tuple[int, int]] = []
        self.level: list[int] = []

    def conjoin(self, a: int, b: int) -> int:
        self.operands.append((a, b))
        self.level.append(
            1 + max(self.level[c - self.base] if c >= self.base else 0 for c in (a, b))
        )
        return self.base + len(self.operands) - 1

    def by_level(self) -> tuple[Ints, list[tuple[int, int, Ints, Ints]]]:
        """A renumbering of conditions that makes each level contiguous, and per level
        (start, stop, a, b) in new numbers; a level only reads lower ones."""
        level = np.array(self.level, dtype=np.intp)
        order = np.argsort(level, kind="stable")
        renumber = np.arange(self.base + level.size)
        renumber[self.base + order] = self.base + np.arange(level.size)
        operands = renumber[np.array(self.operands, dtype=np.intp).reshape(-1, 2)[order]]
        stops = np.cumsum(np.unique(level, return_counts=True)[1]).tolist()
        starts = [0, *stops[:-1]]
        return renumber, [
            (self.base + i, self.base + j, operands[i:j, 0], operands[i:j, 1])
            for i, j in zip(starts, stops, strict=True)
        ]


def collect_leaves(
    tree: Tree, t: int, node_id: dict[tuple[int, int], int], ands: Conjunctions
) -> list[Leaf]:
    """Root-to-leaf paths with merged features and zero fractions, multiplied as LightGBM's
    TreeSHAP does (this split's ratio times the incoming fraction)."""
    leaves: list[Leaf] = []
    stack: list[tuple[int, Leaf]] = [(0, Leaf(0.0, [], [], []))]
    while stack:
        node, path = stack.pop()
        if node < 0:
            leaves.append(replace(path, value=tree.leaf_value[~node]))
            continue
        feature, parent, j = tree.split_feature[node], float(tree.count(node)), node_id[(t, node)]
        for child, side in (
            (tree.left_child[node], j),
            (tree.right_child[node], ands.base // 2 + j),
        ):
            ratio = tree.count(child) / parent
            conditions, features, zero = [*path.conditions], [*path.features], [*path.zero_fraction]
            if feature in features:
                slot = features.index(feature)
                zero[slot] = ratio * zero[slot]
                conditions[slot] = ands.conjoin(conditions[slot], side)
            else:
                conditions.append(side)
                features.append(feature)
                zero.append(ratio)
            stack.append((child, Leaf(0.0, conditions, features, zero)))
    return leaves
