"""Test-window metrics for calibrated probabilities, under the names MLflow logs them with.

Ranking (auc) is not enough for bidding: a bid multiplies the probability by money, so the
calibration metrics (ece, ece_rel, calibration_ratio) matter as much as logloss. On synthetic
logs the generator's true probabilities give the floor any model could reach (oracle_*).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

ECE_BINS = 20
CLIP = 1e-15


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)  # metrics left out, and why


def _arrays(y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray) -> tuple:
    ya = np.asarray(y, dtype=np.float64)
    pa = np.asarray(p, dtype=np.float64)
    if ya.shape != pa.shape or ya.ndim != 1 or ya.size == 0:
        raise ValueError(
            f"labels and predictions must be equal, non-empty 1-d: {ya.shape} {pa.shape}"
        )
    return ya, pa


def logloss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy; probabilities clipped to [1e-15, 1 - 1e-15]."""
    ya, pa = _arrays(y, p)
    q = np.clip(pa, CLIP, 1 - CLIP)
    return float(-np.mean(ya * np.log(q) + (1 - ya) * np.log1p(-q)))


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    ya, pa = _arrays(y, p)
    return float(roc_auc_score(ya, pa))


def base_entropy(rate: float) -> float:
    """Logloss of always predicting the base rate: the denominator of normalized entropy."""
    if rate <= 0 or rate >= 1:
        return 0.0
    return -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))


def ne(y: np.ndarray, p: np.ndarray) -> float:
    """Normalized entropy (He et al., 2014): < 1 means better than predicting the base rate."""
    ya, pa = _arrays(y, p)
    h = base_entropy(float(ya.mean()))
    return logloss(ya, pa) / h if h > 0 else math.nan


def ece(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error over equal-mass bins of the sorted predictions.

    Equal mass, not equal width: CTRs crowd near zero, so equal-width bins would leave almost all
    rows in the first bin. Each bin contributes |mean p - mean y| weighted by its share of rows.
    """
    ya, pa = _arrays(y, p)
    order = np.argsort(pa, kind="mergesort")
    total = 0.0
    for idx in np.array_split(order, min(bins, ya.size)):
        total += abs(float(pa[idx].sum()) - float(ya[idx].sum()))
    return total / ya.size


def calibration_ratio(y: np.ndarray, p: np.ndarray) -> float:
    """Predicted over observed positives: 1.0 means spend would be forecast without bias."""
    ya, pa = _arrays(y, p)
    positives = float(ya.sum())
    return float(pa.sum()) / positives if positives > 0 else math.nan


def _core(ya: np.ndarray, pa: np.ndarray, suffix: str, notes: list[str]) -> dict[str, float]:
    out = {f"logloss{suffix}": logloss(ya, pa), f"ece{suffix}": ece(ya, pa)}
    positives, n = float(ya.sum()), ya.size
    where = f" for {suffix[1:]}" if suffix else ""
    if 0 < positives < n:
        out[f"auc{suffix}"] = auc(ya, pa)
        out[f"ne{suffix}"] = ne(ya, pa)
    else:
        notes.append(
            f"auc{suffix}, ne{suffix} skipped: {int(positives)} positives in {n} rows{where}"
        )
    if positives > 0:
        out[f"ece_rel{suffix}"] = out[f"ece{suffix}"] / float(ya.mean())
        out[f"calibration_ratio{suffix}"] = calibration_ratio(ya, pa)
    else:
        notes.append(f"ece_rel{suffix}, calibration_ratio{suffix} skipped: no positives{where}")
    return out


def evaluate(
    y: np.ndarray,
    p: np.ndarray,
    *,
    channels: np.ndarray | None = None,
    truth: np.ndarray | None = None,
) -> Evaluation:
    """All metrics on one window: overall, per channel (`<metric>_<channel>`), against the oracle.

    A metric that is undefined on a slice (auc without positives) is left out and explained in
    `notes` rather than logged as NaN.
    """
    ya, pa = _arrays(y, p)
    notes: list[str] = []
    metrics = _core(ya, pa, "", notes)
    metrics["rows"] = float(ya.size)
    metrics["positives"] = float(ya.sum())
    metrics["mean_label"] = float(ya.mean())
    metrics["mean_pred"] = float(pa.mean())
    if channels is not None:
        ch = np.asarray(channels, dtype=object)
        if ch.shape != ya.shape:
            raise ValueError(f"channels must align with labels: {ch.shape} vs {ya.shape}")
        skipped: list[str] = []
        for name in sorted({c for c in ch.tolist() if c is not None}):
            mask = ch == name
            metrics |= _core(ya[mask], pa[mask], f"_{name}", skipped)
        if skipped:
            names = [n.split(" skipped")[0] for n in skipped]
            notes.append(f"per-channel metrics undefined without positives: {', '.join(names)}")
    if truth is not None:
        ta = np.asarray(truth, dtype=np.float64)
        if ta.shape != ya.shape:
            raise ValueError(f"truth must align with labels: {ta.shape} vs {ya.shape}")
        if np.isfinite(ta).all():
            metrics["oracle_logloss"] = logloss(ya, ta)
            if 0 < ya.sum() < ya.size:
                metrics["oracle_auc"] = auc(ya, ta)
            metrics["oracle_gap"] = (metrics["logloss"] - metrics["oracle_logloss"]) / metrics[
                "oracle_logloss"
            ]
        else:
            notes.append("oracle metrics skipped: true probabilities missing for some rows")
    return Evaluation(metrics=metrics, notes=notes)
