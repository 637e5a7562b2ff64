"""A LightGBM forest compiled to flat arrays and walked by numba: batch scoring, same numbers.

Why: scoring the test window is the largest step of training after LightGBM's own boosting
(hundreds of thousands of rows times hundreds of trees), and `Booster.predict` walks each tree
through LightGBM's generic predictor at ~80 ns per tree and row on this machine. The same walk
over flat arrays, compiled by numba, takes about half of that, and the trees are summed in the
same order from 0.0, so the raw scores are bit-identical to `Booster.predict(raw_score=True)`
(tests/features/test_forest.py holds it to that on rows with NaN, zeros, negative and unseen
category codes). tl2cgen and lleaves compile per model (seconds to minutes); onnxruntime was
slower than LightGBM here.

Only what bidopt trains is accepted: one tree per iteration, a binary or regression objective,
no linear trees. Anything else raises `ForestError` naming the reason.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import lightgbm as lgb
import numba
import numpy as np

Array = np.ndarray
# feature, threshold, left, right, kind, cat_start, cat_words: one tuple argument for numba
Nodes = tuple[Array, Array, Array, Array, Array, Array, Array]
# LightGBM's kZeroThreshold: |x| <= this is zero (a float literal in C++, hence the cast)
ZERO: Final = float(np.float32(1e-35))
_CATEGORICAL: Final = 1
_DEFAULT_LEFT: Final = 2
_MISSING_ZERO: Final = 1
_MISSING_NAN: Final = 2


class ForestError(ValueError):
    """A model this evaluator does not handle; the message says what."""


@numba.njit(inline="always")
def _leaf(x: Array, node: int, nodes: Nodes) -> int:
    """LightGBM's Tree::GetLeaf (NumericalDecision / CategoricalDecision), node < 0 a leaf."""
    feature, threshold, left, right, kind, cat_start, cat_words = nodes
    while node >= 0:
        v = x[feature[node]]
        k = kind[node]
        if k & _CATEGORICAL:
            go_left = False
            if not math.isnan(v):
                code = int(v)
                if code >= 0:
                    c = int(threshold[node])
                    word = code >> 5
                    if word < cat_start[c + 1] - cat_start[c]:
                        go_left = (cat_words[cat_start[c] + word] >> (code & 31)) & 1 == 1
        else:
            missing = (k >> 2) & 3
            if math.isnan(v) and missing != _MISSING_NAN:
                v = 0.0
            if (missing == _MISSING_ZERO and -ZERO <= v <= ZERO) or (
                missing == _MISSING_NAN and math.isnan(v)
            ):
                go_left = (k & _DEFAULT_LEFT) != 0
            else:
                go_left = v <= threshold[node]
        node = left[node] if go_left else right[node]
    return ~node


@numba.njit(cache=True, nogil=True)
def _raw_serial(x: Array, roots: Array, nodes: Nodes, leaves: Array) -> Array:
    out = np.empty(x.shape[0])
    for r in range(x.shape[0]):
        row = x[r]
        s = 0.0
        for t in range(roots.shape[0]):
            s += leaves[_leaf(row, roots[t], nodes)]
        out[r] = s
    return out


def _ints(tree: dict[str, str], key: str) -> list[int]:
    return [int(v) for v in tree[key].split()]


def _blocks(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The model text's header and its `Tree=` blocks as key -> raw value."""
    header: dict[str, str] = {}
    trees: list[dict[str, str]] = []
    current = header
    for line in text.splitlines():
        if line.startswith("Tree="):
            current = {}
            trees.append(current)
        elif line.startswith("end of trees"):
            break
        elif "=" in line:
            key, value = line.split("=", 1)
            current[key] = value
    return header, trees


@dataclass(frozen=True)
class Forest:
    """The trees as flat arrays: internal nodes numbered across trees, a child < 0 is a leaf
    (~child indexes `leaves`), categorical splits point at their bitset in `cat_words`."""

    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    kind: np.ndarray
    cat_start: np.ndarray
    cat_words: np.ndarray
    leaves: np.ndarray
    num_features: int
    sigmoid: float | None  # binary objective: p = 1 / (1 + exp(-sigmoid * raw))

    @classmethod
    def from_booster(cls, booster: lgb.Booster) -> Forest:
        return cls.from_model_text(booster.model_to_string())

    @classmethod
    def from_model_text(cls, text: str) -> Forest:
        header, trees = _blocks(text)
        if int(header.get("num_tree_per_iteration", "1")) != 1:
            raise ForestError("only one tree per iteration is supported (not multiclass)")
        if header.get("linear_tree", "0").strip() not in ("", "0"):
            raise ForestError("linear trees are not supported")
        objective = header.get("objective", "").split()
        sigmoid: float | None = None
        if objective and objective[0] == "binary":
            sigmoid = 1.0
            for part in objective[1:]:
                if part.startswith("sigmoid:"):
                    sigmoid = float(part.split(":", 1)[1])
        elif objective and objective[0] not in ("regression", "regression_l2"):
            raise ForestError(f"objective {objective[0]!r} is not supported (binary, regression)")
        feature: list[int] = []
        threshold: list[float] = []
        left: list[int] = []
        right: list[int] = []
        kind: list[int] = []
        leaves: list[float] = []
        roots: list[int] = []
        cat_start, cat_words = [0], []
        for tree in trees:
            n_leaves = int(tree["num_leaves"])
            node0, leaf0 = len(feature), len(leaves)
            leaves.extend(float(v) for v in tree["leaf_value"].split())
            if n_leaves == 1:
                roots.append(~leaf0)
                continue
            roots.append(node0)
            bounds = _ints(tree, "cat_boundaries") if int(tree.get("num_cat", "0")) else []
            words = _ints(tree, "cat_threshold") if bounds else []
            decisions = _ints(tree, "decision_type")
            for f, thr, d, lc, rc in zip(
                _ints(tree, "split_feature"),
                tree["threshold"].split(),
                decisions,
                _ints(tree, "left_child"),
                _ints(tree, "right_child"),
                strict=True,
            ):
                feature.append(f)
                kind.append(d)
                left.append(node0 + lc if lc >= 0 else ~(leaf0 + ~lc))
                right.append(node0 + rc if rc >= 0 else ~(leaf0 + ~rc))
                if d & _CATEGORICAL:
                    c = int(float(thr))
                    threshold.append(float(len(cat_start) - 1))
                    cat_words.extend(words[bounds[c] : bounds[c + 1]])
                    cat_start.append(len(cat_words))
                else:
                    threshold.append(float(thr))
        return cls(
            roots=np.array(roots, dtype=np.int64),
            feature=np.array(feature, dtype=np.int64),
            threshold=np.array(threshold, dtype=np.float64),
            left=np.array(left, dtype=np.int64),
            right=np.array(right, dtype=np.int64),
            kind=np.array(kind, dtype=np.uint8),
            cat_start=np.array(cat_start, dtype=np.int64),
            cat_words=np.array(cat_words, dtype=np.uint32),
            leaves=np.array(leaves, dtype=np.float64),
            num_features=int(header.get("max_feature_idx", "-1")) + 1,
            sigmoid=sigmoid,
        )

    def predict_raw(self, x: np.ndarray, threads: int = 1) -> np.ndarray:
        """Sum of the trees per row of a 2-d float64 matrix (NaN = missing)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ForestError(f"matrix has shape {x.shape}, model needs (n, {self.num_features})")
        nodes = (
            self.feature,
            self.threshold,
            self.left,
            self.right,
            self.kind,
            self.cat_start,
            self.cat_words,
        )
        if threads <= 1 or x.shape[0] < 10_000:
            return _raw_serial(x, self.roots, nodes, self.leaves)  # type: ignore[no-any-return]
        # Row blocks on Python threads (the kernel releases the GIL) rather than numba's
        # parallel mode: its OpenMP threads and LightGBM's spin against each other on 2 cores.
        out = np.empty(x.shape[0])
        bounds = np.linspace(0, x.shape[0], threads + 1).astype(int)

        def block(lo: int, hi: int) -> None:
            out[lo:hi] = _raw_serial(x[lo:hi], self.roots, nodes, self.leaves)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(block, bounds[:-1], bounds[1:]))
        return out

    def predict(self, x: np.ndarray, threads: int = 1) -> np.ndarray:
        """What `Booster.predict` returns: the probability for a binary model."""
        raw = self.predict_raw(x, threads)
        if self.sigmoid is None:
            return raw
        return 1.0 / (1.0 + np.exp(-self.sigmoid * raw))
