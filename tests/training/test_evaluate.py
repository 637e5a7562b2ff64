"""Each metric against scikit-learn where it has one, and against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from training.evaluate import (
    auc,
    base_entropy,
    calibration_ratio,
    ece,
    evaluate,
    logloss,
    ne,
)


@pytest.fixture
def sample() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.001, 0.2, 5000)
    y = (rng.random(5000) < p).astype(float)
    return y, p


def test_logloss_matches_sklearn(sample):
    y, p = sample
    assert logloss(y, p) == pytest.approx(log_loss(y, p), rel=1e-12)


def test_auc_matches_sklearn(sample):
    y, p = sample
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p), rel=1e-12)


def test_ne_hand_computed():
    y = np.array([1.0, 0.0, 0.0, 0.0])
    p = np.array([0.5, 0.5, 0.5, 0.5])
    # logloss = ln 2; base rate 0.25: H = -(0.25 ln 0.25 + 0.75 ln 0.75)
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert base_entropy(0.25) == pytest.approx(h)
    assert ne(y, p) == pytest.approx(math.log(2) / h)
    # predicting the base rate everywhere gives NE exactly 1
    assert ne(y, np.full(4, 0.25)) == pytest.approx(1.0)


def test_ece_hand_computed_equal_mass_bins():
    # 4 rows, 2 bins of 2 rows after sorting by p: {0.1, 0.2} with labels {0, 1},
    # {0.6, 0.8} with labels {1, 1}: |0.3 - 1| + |1.4 - 2| = 0.7 + 0.6 = 1.3 over 4 rows
    p = np.array([0.8, 0.1, 0.6, 0.2])
    y = np.array([1.0, 0.0, 1.0, 1.0])
    assert ece(y, p, bins=2) == pytest.approx(1.3 / 4)
    # one bin: |sum p - sum y| / n
    assert ece(y, p, bins=1) == pytest.approx(abs(1.7 - 3) / 4)


def test_ece_is_zero_when_each_bin_is_calibrated():
    p = np.repeat([0.1, 0.5], 10)
    y = np.array([1.0] + [0.0] * 9 + [1.0] * 5 + [0.0] * 5)
    assert ece(y, p, bins=2) == pytest.approx(0.0)


def test_ece_rel_and_calibration_ratio_hand_computed():
    p = np.array([0.8, 0.1, 0.6, 0.2])
    y = np.array([1.0, 0.0, 1.0, 1.0])
    metrics = evaluate(y, p).metrics
    assert metrics["ece"] == pytest.approx(ece(y, p))
    assert metrics["ece_rel"] == pytest.approx(metrics["ece"] / 0.75)
    assert calibration_ratio(y, p) == pytest.approx(1.7 / 3)
    assert metrics["calibration_ratio"] == pytest.approx(1.7 / 3)


def test_per_channel_names_and_skips():
    y = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    p = np.array([0.4, 0.2, 0.1, 0.3, 0.6, 0.2])
    ch = np.array(["web", "web", "ctv", "ctv", "app", "app"], dtype=object)
    ev = evaluate(y, p, channels=ch)
    assert ev.metrics["auc_web"] == pytest.approx(1.0)
    assert ev.metrics["logloss_ctv"] == pytest.approx(log_loss([0, 0], [0.1, 0.3], labels=[0, 1]))
    assert "auc_ctv" not in ev.metrics and "ece_rel_ctv" not in ev.metrics
    assert any("auc_ctv, ne_ctv" in n and "without positives" in n for n in ev.notes)
    for name in ("auc", "logloss", "ne", "ece", "ece_rel", "calibration_ratio"):
        assert name in ev.metrics


def test_oracle_metrics(sample):
    y, p = sample
    noisy = np.clip(p * 1.3, 0, 1)
    m = evaluate(y, noisy, truth=p).metrics
    assert m["oracle_logloss"] == pytest.approx(log_loss(y, p))
    assert m["oracle_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["oracle_gap"] == pytest.approx(
        (m["logloss"] - m["oracle_logloss"]) / m["oracle_logloss"]
    )
    assert m["oracle_gap"] > 0


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="equal"):
        evaluate(np.zeros(3), np.zeros(4))
