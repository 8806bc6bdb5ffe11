"""Score rows with a LightGBM booster's trees, compiled once per model, all trees at once.

``lightgbm.Booster.predict`` rebuilds its predictor on every call, and even
a prepared call to its C function (``LGBM_BoosterPredictForMat``) walks
each row down each tree, a branch the processor mispredicts about every
other node: at the ranker's serving size, some 75 rows by 50 trees of 7
leaves, that was 40 to 60 microseconds an answer, half of the ranker's own
time. ``BoosterScorer`` reads the trees once (``Booster.dump_model``) and
scores the rows as QuickScorer does (Lucchese et al., SIGIR 2015): each
tree's leaves as the bits of a mask, every split node tested against a
whole column of rows at once (one comparison a row, no branch to
mispredict), a failed test clearing the node's left subtree's leaves, and
each row's exit leaf the lowest bit left, the leaves numbered from left to
right. The loops are compiled by numba (``recsys.models.compiled``). The
scores are LightGBM's to the bit: the same comparisons, NaN and zero rules,
and leaf values added tree by tree in the same order
(tests/models/test_booster_scoring.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# A tree's leaves are the bits of one unsigned 64-bit mask.
MAX_LEAVES = 64
# LightGBM's missing-value rules of a split (its "missing_type"), numbered for
# the compiled loop: None reads a missing value as 0; Zero sends zeros (and
# missing values) the default way; NaN sends NaN the default way.
MISSING_NONE, MISSING_ZERO, MISSING_NAN = 0, 1, 2
_MISSING_TYPES = {"None": MISSING_NONE, "Zero": MISSING_ZERO, "NaN": MISSING_NAN}
_ALL_LEAVES = (1 << MAX_LEAVES) - 1
# Objectives whose prediction is the trees' raw sum (no sigmoid, no exponent).
_RAW_OBJECTIVES = frozenset({"lambdarank", "rank_xendcg", "regression"})


class BoosterScorer:
    """Scores rows as ``booster.predict(rows, num_threads=1)`` does.

    Args:
        booster: A loaded ``lightgbm.Booster`` with numerical splits only and
            at most 64 leaves a tree (what the ranker trains).

    Raises:
        ValueError: A tree has a categorical split, linear leaves or more
            than 64 leaves, or the objective transforms the trees' sum.
    """

    def __init__(self, booster: Any) -> None:
        model = booster.dump_model()
        self._features = int(model["max_feature_idx"]) + 1
        if int(model.get("num_tree_per_iteration", 1)) != 1 or model.get("average_output"):
            raise ValueError("the booster has several trees an iteration or averages them")
        objective = str(model.get("objective", "")).split(" ")[0]
        if objective not in _RAW_OBJECTIVES:
            raise ValueError(f"the booster's objective {objective!r} transforms its scores")
        nodes: list[tuple[int, float, int, int, int, int]] = []
        leaves = []
        for tree, info in enumerate(model["tree_info"]):
            leaf_values: list[float] = []
            _flatten(info["tree_structure"], tree, nodes, leaf_values)
            if len(leaf_values) > MAX_LEAVES:
                raise ValueError(f"a tree has {len(leaf_values)} leaves; at most {MAX_LEAVES}")
            leaves.append(leaf_values + [0.0] * (MAX_LEAVES - len(leaf_values)))
        columns = list(zip(*nodes, strict=True)) if nodes else [()] * 6
        self._node_feature = np.array(columns[0], dtype=np.int64)
        self._node_threshold = np.array(columns[1], dtype=np.float64)
        self._node_tree = np.array(columns[2], dtype=np.int64)
        self._node_missing = np.array(columns[3], dtype=np.int64)
        self._node_default_left = np.array(columns[4], dtype=np.bool_)
        self._node_right_mask = np.array(columns[5], dtype=np.uint64)
        self._leaf_values = np.array(leaves, dtype=np.float64).reshape(-1, MAX_LEAVES)
        # The compiled loop reads columns unchecked: a split must name a column.
        if len(nodes) and not 0 <= self._node_feature.min() <= self._node_feature.max() < (
            self._features
        ):
            raise ValueError(f"a split reads a feature outside the booster's {self._features}")

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Return the booster's score of each row (float64, one per row).

        Args:
            rows: (n, the booster's number of features) values.

        Raises:
            ValueError: The rows have another number of columns.
        """
        from recsys.models.compiled import forest_scores

        # LightGBM reads float32 rows as float64 too (exactly).
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self._features:
            raise ValueError(f"rows of shape {rows.shape}; the booster scores {self._features}")
        return forest_scores(
            rows,
            self._node_feature,
            self._node_threshold,
            self._node_tree,
            self._node_missing,
            self._node_default_left,
            self._node_right_mask,
            self._leaf_values,
        )


def _flatten(
    node: dict[str, Any],
    tree: int,
    nodes: list[tuple[int, float, int, int, int, int]],
    leaf_values: list[float],
) -> list[int]:
    """Append a subtree's split nodes and its leaves (left to right); return its leaves' bits.

    A node's mask keeps every leaf but those of its left subtree: the leaves
    a row that fails the node's test can still reach.
    """
    if "leaf_value" in node:
        if node.get("leaf_coeff"):
            raise ValueError("the booster has linear leaves; only constant leaves are scored")
        leaf_values.append(float(node["leaf_value"]))
        return [len(leaf_values) - 1]
    if node["decision_type"] != "<=":
        raise ValueError(
            f"the booster has a {node['decision_type']!r} (categorical) split; "
            "only numerical splits are scored"
        )
    if "left_child" not in node or "right_child" not in node:
        raise ValueError("the booster has a split node without two children")
    missing = _MISSING_TYPES.get(node.get("missing_type", ""))
    if missing is None:
        raise ValueError(f"the booster has a split of missing type {node.get('missing_type')!r}")
    at = len(nodes)
    nodes.append((0, 0.0, 0, 0, 0, 0))  # its place, before its subtrees' nodes
    left = _flatten(node["left_child"], tree, nodes, leaf_values)
    right = _flatten(node["right_child"], tree, nodes, leaf_values)
    mask = _ALL_LEAVES
    for leaf in left:
        mask &= ~(1 << leaf)
    nodes[at] = (
        int(node["split_feature"]),
        float(node["threshold"]),
        tree,
        missing,
        int(bool(node["default_left"])),
        mask,
    )
    return left + right
