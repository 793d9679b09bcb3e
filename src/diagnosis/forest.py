"""Isolation-forest scoring in numpy: a fitted forest's trees as one flat table of nodes.

This module owns the scoring of a fitted isolation forest: the node table (`FlatForest`), the
descent of every (row, tree) pair through it, and the path lengths that make the score, equal
to scikit-learn's `-IsolationForest.score_samples` to rounding. It must never import
scikit-learn (only `diagnosis.model` does, and hands over each fitted tree's arrays as
`TreeArrays`), never fit anything, and never do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class TreeArrays:
    """One fitted isolation tree, as scikit-learn's `Tree` arrays (`estimator.tree_`).

    Attributes:
        children_left: Per node, its left child, or a negative number for a leaf.
        children_right: Per node, its right child, or a negative number for a leaf.
        feature: Per node, the column it splits on (ignored for leaves).
        threshold: Per node, the split value: rows with a value at most this go left.
        n_node_samples: Per node, the training samples that reached it.
        max_depth: Levels below the root.
    """

    children_left: IntArray
    children_right: IntArray
    feature: IntArray
    threshold: FloatArray
    n_node_samples: IntArray
    max_depth: int


def _average_path_length(n_samples: FloatArray) -> FloatArray:
    """Expected path length of an unsuccessful search in a binary tree of `n_samples` points.

    The isolation forest paper's c(n), written as scikit-learn writes it
    (`sklearn.ensemble._iforest._average_path_length`) so scores match it to rounding.
    """
    n = np.asarray(n_samples, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _float32_at_most(x: FloatArray) -> NDArray[np.float32]:
    """Per value, the largest float32 not above it: for any float32 v, `v <= x` exactly when
    `v <= _float32_at_most(x)`, so float32 rows can be compared with float32 thresholds.
    """
    down = x.astype(np.float32)
    is_above = down.astype(np.float64) > x
    down[is_above] = np.nextafter(down[is_above], np.float32(-np.inf))
    return down


@dataclass(frozen=True, slots=True)
class FlatForest:
    """A fitted `IsolationForest` as flat arrays, scored for all rows and trees at once.

    scikit-learn's `score_samples` walks the trees one by one, each through joblib with its
    config and warning contexts: about 6-15 ms a call whatever the row count, which at the
    gateway's batch sizes was most of the engine's cost. Here the nodes of all trees sit in one
    table, renumbered so that a node's two children are neighbours (`child` and `child + 1`) and
    a leaf is its own child with an infinite threshold, and all (row, tree) pairs descend
    together one level per step: `depth` steps of five gathers on a (rows, trees) matrix, with
    no branch for leaves.

    The score is sklearn's to rounding (the tests hold it to 1e-12): `score_samples` rounds rows
    to float32 and compares them with float64 thresholds, and comparing the same float32 values
    with each threshold rounded down to float32 gives the same decision every time; a leaf counts
    its depth plus c(its training samples), and the mean over trees is normalised by
    c(`max_samples_`).

    Attributes:
        child: Per node (index into the flat table), its left child (its right one is the next
            node); a leaf points to itself.
        feature: Per node, the column it splits on (0 for leaves, whose comparison is moot).
        threshold: Per node, the split value rounded down to float32 (+inf for leaves).
        leaf_depth: Per node, depth (root 0) + c(training samples at the node): the path
            length a row ending there adds.
        roots: Per tree, the index of its root.
        depth: Levels below the root of the deepest tree.
        norm: Trees x c(`max_samples_`): the path-length sum of a score of 0.5.
    """

    child: NDArray[np.int32]
    feature: NDArray[np.int32]
    threshold: NDArray[np.float32]
    leaf_depth: FloatArray
    roots: NDArray[np.int32]
    depth: int
    norm: float

    _CHUNK_ROWS: ClassVar[int] = 512  # keeps the (rows, trees) matrices in cache

    @staticmethod
    def of(trees: Sequence[TreeArrays], max_samples: int) -> FlatForest:
        """The flat table of a fitted forest's trees, each of which sees every column, in order.

        Args:
            trees: The trees' arrays, in the forest's order.
            max_samples: Rows drawn per tree at fit (`IsolationForest.max_samples_`).
        """
        child: list[int] = []
        feature: list[int] = []
        threshold: list[float] = []
        leaf_depth: list[float] = []
        roots: list[int] = []
        for tree in trees:  # trees and nodes, not rows: once per fit or load
            c = _average_path_length(tree.n_node_samples.astype(np.float64)).tolist()
            lefts, rights = tree.children_left.tolist(), tree.children_right.tolist()
            feats, thrs = tree.feature.tolist(), tree.threshold.tolist()
            roots.append(len(child))
            # Breadth first, so that the two children of a node get consecutive numbers.
            queue, depth_of = [0], [0]
            child.append(-1)
            for pos, node in enumerate(queue):
                at = roots[-1] + pos
                d = depth_of[pos]
                leaf_depth.append(d + c[node])
                if lefts[node] < 0:
                    child[at], feature_k, thr = at, 0, np.inf
                else:
                    child[at], feature_k, thr = roots[-1] + len(queue), feats[node], thrs[node]
                    queue += [lefts[node], rights[node]]
                    depth_of += [d + 1, d + 1]
                    child += [-1, -1]
                feature.append(feature_k)
                threshold.append(thr)
        depth = max(tree.max_depth for tree in trees)
        norm = len(trees) * float(_average_path_length(np.array([max_samples]))[0])
        return FlatForest(
            np.array(child, np.int32),
            np.array(feature, np.int32),
            _float32_at_most(np.array(threshold, np.float64)),
            np.array(leaf_depth, np.float64),
            np.array(roots, np.int32),
            depth,
            norm,
        )

    def score(self, x: FloatArray) -> FloatArray:
        """`-IsolationForest.score_samples(x)` for finite rows: higher is more anomalous."""
        out = np.empty(len(x))
        for lo in range(0, len(x), self._CHUNK_ROWS):  # chunks of rows, not rows
            out[lo : lo + self._CHUNK_ROWS] = self._score(x[lo : lo + self._CHUNK_ROWS])
        return out

    def _score(self, x: FloatArray) -> FloatArray:
        n, k = x.shape
        values = x.astype(np.float32).ravel()
        row_at = (np.arange(n, dtype=np.int32) * np.int32(k))[:, None]
        node = np.repeat(self.roots[None, :], n, axis=0)
        for _ in range(self.depth):
            at = self.feature.take(node)
            at += row_at
            node = self.child.take(node) + (values.take(at) > self.threshold.take(node))
        path = self.leaf_depth.take(node).sum(axis=1)
        if self.norm <= 0:  # one training row: sklearn scores everything 1
            return np.ones(n)
        scores: FloatArray = np.exp2(-path / self.norm)
        return scores

    def state(self) -> dict[str, Any]:
        """The arrays as plain containers, for pickling."""
        return {
            "child": self.child,
            "feature": self.feature,
            "threshold": self.threshold,
            "leaf_depth": self.leaf_depth,
            "roots": self.roots,
            "depth": self.depth,
            "norm": self.norm,
        }

    @staticmethod
    def from_state(state: Mapping[str, Any], n_features: int) -> FlatForest:
        """A forest from `state` output.

        Raises:
            KeyError: A field is missing.
            ValueError: The arrays do not make a forest over `n_features` columns.
        """
        flat = FlatForest(
            np.asarray(state["child"], dtype=np.int32),
            np.asarray(state["feature"], dtype=np.int32),
            np.asarray(state["threshold"], dtype=np.float32),
            np.asarray(state["leaf_depth"], dtype=np.float64),
            np.asarray(state["roots"], dtype=np.int32),
            int(state["depth"]),
            float(state["norm"]),
        )
        n = len(flat.child)
        if {len(flat.feature), len(flat.threshold), len(flat.leaf_depth)} != {n} or n == 0:
            raise ValueError("forest arrays do not match")
        # A leaf (infinite threshold) never goes right; an inner node's right child must exist.
        reach = flat.child + (flat.threshold < np.inf)
        if flat.child.min() < 0 or reach.max() >= n:
            raise ValueError("forest node index out of range")
        if not len(flat.roots) or flat.roots.min() < 0 or flat.roots.max() >= n:
            raise ValueError("forest root index out of range")
        if flat.feature.min() < 0 or flat.feature.max() >= n_features:
            raise ValueError("forest splits on a column the detector does not have")
        return flat
