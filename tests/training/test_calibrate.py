"""Calibrator choice by cross-fitted logloss; the choice is a real Calibrator."""

from __future__ import annotations

import numpy as np

from training.calibrate import choose_calibrator
from training.evaluate import logloss


def _biased(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true = rng.uniform(0.005, 0.1, n)
    y = (rng.random(n) < true).astype(float)
    return np.clip(true * 2.5, 0, 0.99), y  # scores ranked right but 2.5x too high


def test_choice_improves_logloss_and_is_recorded():
    p, y = _biased(20_000)
    choice = choose_calibrator(p, y)
    assert choice.method in ("isotonic", "platt")
    assert set(choice.scores) == {"isotonic", "platt"}
    assert choice.scores[choice.method] == min(choice.scores.values())
    p2, y2 = _biased(20_000, seed=1)
    assert logloss(y2, choice.calibrator.transform(p2)) < logloss(y2, p2)


def test_platt_wins_on_a_tiny_window():
    p, y = _biased(300, seed=2)
    choice = choose_calibrator(p, y)
    assert choice.method == "platt"  # isotonic overfits a few positives


def test_single_class_keeps_raw_scores():
    p = np.linspace(0.01, 0.1, 50)
    choice = choose_calibrator(p, np.zeros(50))
    assert choice.method == "identity"
    assert "calibration skipped" in choice.notes[0]
    np.testing.assert_allclose(choice.calibrator.transform(p), p)
