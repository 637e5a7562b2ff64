"""Probability calibration stored as a handful of numbers, never as a pickled estimator.

LightGBM's raw scores are ranked well but biased (early stopping, class imbalance); bids multiply
probabilities by money, so the bias would be paid for. Isotonic keeps only its knots and rebuilds
the interpolation on load, as scikit-learn's IsotonicRegression does internally; Platt keeps a, b.
"""

from __future__ import annotations

import bisect
import json
import math
from typing import Literal

import numpy as np

Method = Literal["isotonic", "platt", "identity"]
EPS = 1e-6  # keeps logloss finite where isotonic would say exactly 0 or 1


class NotFittedError(RuntimeError):
    pass


class Calibrator:
    def __init__(self, method: Method = "isotonic") -> None:
        if method not in ("isotonic", "platt", "identity"):
            raise ValueError(f"calibration method must be isotonic, platt or identity: {method!r}")
        self.method = method

    def fit(self, p: np.ndarray, y: np.ndarray) -> Calibrator:
        p = np.asarray(p, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if p.shape != y.shape or p.ndim != 1 or p.size == 0:
            raise ValueError(f"p and y must be equal-length 1-d arrays, got {p.shape}, {y.shape}")
        if not np.isfinite(p).all():
            raise ValueError("p has non-finite values")
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip").fit(p, y)
            self.x_knots_ = np.asarray(iso.X_thresholds_, dtype=np.float64)
            self.y_knots_ = np.asarray(iso.y_thresholds_, dtype=np.float64)
        elif self.method == "platt":
            from sklearn.linear_model import LogisticRegression

            z = _logit(p).reshape(-1, 1)
            lr = LogisticRegression(C=1e6, max_iter=1000).fit(z, y)
            self.a_ = float(lr.coef_[0, 0])
            self.b_ = float(lr.intercept_[0])
        else:
            self.fitted_ = True
        return self

    def _check(self) -> None:
        attr = {"isotonic": "x_knots_", "platt": "a_", "identity": "fitted_"}[self.method]
        if not hasattr(self, attr):
            raise NotFittedError(f"Calibrator({self.method!r}) is used before fit or load")

    def transform(self, p: np.ndarray) -> np.ndarray:
        self._check()
        p = np.asarray(p, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(p, self.x_knots_, self.y_knots_)
        if self.method == "platt":
            return np.clip(1.0 / (1.0 + np.exp(-(self.a_ * _logit(p) + self.b_))), EPS, 1 - EPS)
        return np.clip(p, EPS, 1 - EPS)

    def transform_one(self, p: float) -> float:
        """The scalar path for serving: same arithmetic as `transform`, no numpy overhead."""
        if self.method == "isotonic":
            xs, ys = self._lists()
            if p <= xs[0]:
                return ys[0]
            if p >= xs[-1]:
                return ys[-1]
            j = bisect.bisect_right(xs, p) - 1
            slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
            return slope * (p - xs[j]) + ys[j]
        if self.method == "platt":
            q = min(max(p, EPS), 1 - EPS)
            z = self.a_ * math.log(q / (1 - q)) + self.b_
            return min(max(1.0 / (1.0 + math.exp(-z)), EPS), 1 - EPS)
        return min(max(p, EPS), 1 - EPS)

    def _lists(self) -> tuple[list[float], list[float]]:
        cached = self.__dict__.get("_knot_lists")
        if cached is None:
            self._check()
            cached = (self.x_knots_.tolist(), self.y_knots_.tolist())
            self.__dict__["_knot_lists"] = cached
        return cached

    def to_json(self) -> str:
        self._check()
        data: dict[str, object] = {"method": self.method}
        if self.method == "isotonic":
            data |= {"x_knots": self.x_knots_.tolist(), "y_knots": self.y_knots_.tolist()}
        elif self.method == "platt":
            data |= {"a": self.a_, "b": self.b_}
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        data = json.loads(text)
        cal = cls(data["method"])
        if cal.method == "isotonic":
            x = np.asarray(data["x_knots"], dtype=np.float64)
            y = np.asarray(data["y_knots"], dtype=np.float64)
            if x.size == 0 or x.shape != y.shape or np.any(np.diff(x) < 0):
                raise ValueError("calibrator JSON: knots must be non-empty, equal length, sorted")
            cal.x_knots_, cal.y_knots_ = x, y
        elif cal.method == "platt":
            cal.a_, cal.b_ = float(data["a"]), float(data["b"])
        else:
            cal.fitted_ = True
        return cal


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, EPS, 1 - EPS)
    return np.log(q / (1 - q))
