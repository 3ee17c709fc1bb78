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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]

K_ZERO_THRESHOLD = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float constant)
MAX_TABLE_BYTES = 256 * 2**20
MAX_PATH_FEATURES_LIMIT = 20
_CHUNK_ELEMENTS = 1 << 18  # (rows x bits) per batch chunk: bounds memory, stays in cache
_MISSING_ZERO, _MISSING_NAN = 1, 2  # missing types; 0 is None


@dataclass(frozen=True)
class _Tree:
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
class _Leaf:
    value: float
    conditions: list[int]  # slot -> condition the row must meet for o = 1
    features: list[int]  # slot -> feature index
    zero_fraction: list[float]  # slot -> z


def _parse_model(text: str) -> tuple[dict[str, str], list[_Tree]] | None:
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
            for f in fields(_Tree)
        }
        trees.append(_Tree(**cast(dict[str, Any], parsed)))
    return header, trees


def _is_supported(header: dict[str, str], trees: list[_Tree]) -> bool:
    """One output per row, no averaging, known missing types, every node with data."""
    if header.get("num_class") != "1" or header.get("num_tree_per_iteration") != "1":
        return False
    if "average_output" in header or "max_feature_idx" not in header:
        return False
    return all(
        not tree.split_feature
        or (
            min(tree.leaf_count + tree.internal_count) > 0
            and max(tree.decision_type) >> 2 <= _MISSING_NAN
        )
        for tree in trees
    )


def _numeric_rule(threshold: float, decision_type: int) -> tuple[float, float, float, float]:
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
    if missing == _MISSING_ZERO:
        nan_left = default_left
        if default_left:
            lo, hi = max(math.nextafter(threshold, math.inf), -k), k
        else:
            lo, hi = -k, min(threshold, k)
    else:
        zero_left = threshold >= 0.0
        nan_left = default_left if missing == _MISSING_NAN else zero_left
        if -k <= threshold < k:
            threshold = k if zero_left else math.nextafter(-k, -math.inf)
    return threshold, (-math.inf if nan_left else math.nan), lo, hi


@dataclass(frozen=True)
class _NodeDecisions:
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
    def build(cls, trees: list[_Tree]) -> tuple[_NodeDecisions, dict[tuple[int, int], int]]:
        keys = [(t, i) for t, tree in enumerate(trees) for i in range(len(tree.split_feature))]
        numeric = [(t, i) for t, i in keys if not trees[t].decision_type[i] & 1]
        categorical = [(t, i) for t, i in keys if trees[t].decision_type[i] & 1]
        rules = [
            _numeric_rule(trees[t].threshold[i], trees[t].decision_type[i]) for t, i in numeric
        ]
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


class _Conjunctions:
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


def _collect_leaves(
    tree: _Tree, t: int, node_id: dict[tuple[int, int], int], ands: _Conjunctions
) -> list[_Leaf]:
    """Root-to-leaf paths with merged features and zero fractions, multiplied as LightGBM's
    TreeSHAP does (this split's ratio times the incoming fraction)."""
    leaves: list[_Leaf] = []
    stack: list[tuple[int, _Leaf]] = [(0, _Leaf(0.0, [], [], []))]
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
            stack.append((child, _Leaf(0.0, conditions, features, zero)))
    return leaves


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


def _fill_tables(leaves: list[_Leaf], widths: Ints, offsets: Ints) -> F64:
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

    @classmethod
    def build(
        cls, leaves: list[_Leaf], renumber: Ints, levels: list[tuple[int, int, Ints, Ints]]
    ) -> _LeafTables:
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
        )

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
    decisions: _NodeDecisions
    tables: _LeafTables | None  # None when every tree is a single leaf
    n_conditions: int
    chunk_rows: int

    @property
    def table_bytes(self) -> int:
        return 0 if self.tables is None else int(self.tables.table.nbytes)

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
        parsed = _parse_model(booster.model_to_string())
        if parsed is None or not _is_supported(*parsed):
            return None
        header, trees = parsed
        bias = 0.0
        for tree in trees:
            bias += tree.expected_value()
        decisions, node_id = _NodeDecisions.build(trees)
        ands = _Conjunctions(decisions.n_nodes)
        leaves = [
            leaf
            for t, tree in enumerate(trees)
            if tree.split_feature
            for leaf in _collect_leaves(tree, t, node_id, ands)
        ]
        widths = [len(leaf.features) for leaf in leaves]
        if (
            max(widths, default=0) > max_path_features
            or 8 * sum(m << m for m in widths) > max_table_bytes
        ):
            return None
        tables = _LeafTables.build(leaves, *ands.by_level()) if leaves else None
        width = 1 if tables is None else max(tables.bit_condition.size, tables.pair_leaf.size)
        n_features = int(header["max_feature_idx"]) + 1
        n_conditions = decisions.n_nodes * 2 + len(ands.operands)
        return cls(
            n_features, bias, decisions, tables, n_conditions, max(1, _CHUNK_ELEMENTS // width)
        )

    def contributions(self, x: F64) -> F64:
        """(rows, n_features + 1) contributions, the last column the bias, as ``pred_contrib``."""
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
        for start in range(0, x.shape[0], self.chunk_rows):
            chunk = x[start : start + self.chunk_rows]
            conditions = np.empty((chunk.shape[0], self.n_conditions), dtype=np.bool_)
            self.decisions.fill(chunk, conditions)
            out[start : start + chunk.shape[0], self.tables.used_features] = self.tables.explain(
                conditions
            )
        return out
