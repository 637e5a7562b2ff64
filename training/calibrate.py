"""Choose and fit the probability calibrator on the validation window.

Isotonic is flexible but can overfit a small window (a few hundred positives for pCVR); Platt
has two parameters and cannot. Instead of a fixed rule, both are cross-fitted on the two time
halves of the validation window (fit on one, score on the other, both ways) and the lower
logloss wins; the winner is then refitted on the whole window. The choice is logged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from features.calibrator import Calibrator
from training.evaluate import logloss

CHOICE_ROWS = 200_000  # at most about this many validation rows are used to choose the method


@dataclass(frozen=True)
class CalibrationChoice:
    calibrator: Calibrator
    method: str
    scores: dict[str, float]  # cross-fitted validation logloss per method tried
    notes: list[str] = field(default_factory=list)


def _crossfit_logloss(method: str, p: np.ndarray, y: np.ndarray) -> float:
    half = p.size // 2
    folds = [(slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))]
    losses, weights = [], []
    for fit_part, score_part in folds:
        try:
            cal = Calibrator(method).fit(p[fit_part], y[fit_part])  # type: ignore[arg-type]
        except ValueError:
            return math.inf  # e.g. Platt on a half with one class
        losses.append(logloss(y[score_part], cal.transform(p[score_part])))
        weights.append(y[score_part].size)
    return float(np.average(losses, weights=weights))


def choose_calibrator(
    p_valid: np.ndarray, y_valid: np.ndarray, methods: Sequence[str] = ("isotonic", "platt")
) -> CalibrationChoice:
    """Pick the method with the lower cross-fitted logloss; inputs in time order.

    With a single class in the window there is nothing to calibrate against: the raw scores
    are kept (method `identity`) and the note says so.
    """
    p = np.asarray(p_valid, dtype=np.float64)
    y = np.asarray(y_valid, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(
            f"p_valid and y_valid must be equal-length 1-d arrays: {p.shape}, {y.shape}"
        )
    positives = int(y.sum())
    if p.size < 4 or positives == 0 or positives == y.size:
        note = (
            f"validation window has {positives} positives in {y.size} rows: "
            "calibration skipped (identity)"
        )
        cal = Calibrator("identity").fit(p if p.size else np.zeros(1), y if y.size else np.zeros(1))
        return CalibrationChoice(cal, "identity", {}, [note])
    # The choice needs a representative sample, not every row: a time-ordered stride keeps
    # both halves' time order and caps the cost on multi-million-row windows.
    stride = max(1, p.size // CHOICE_ROWS)
    scores = {m: _crossfit_logloss(m, p[::stride], y[::stride]) for m in methods}
    best = min(scores, key=lambda m: (scores[m], m != "platt"))  # ties: the simpler model
    notes = []
    if not math.isfinite(scores[best]):
        best = "platt" if "platt" in methods else methods[0]
        notes.append("no method could be cross-fitted (a validation half has one class)")
    return CalibrationChoice(Calibrator(best).fit(p, y), best, scores, notes)  # type: ignore[arg-type]
