"""Off-policy estimates of a selection policy's value from logged impressions (bench helper).

Logged data only shows the reward of the creative that was shown; IPS reweights by how much more
(or less) often the new policy would have shown it, self-normalised IPS trades a little bias for
much less variance, and doubly robust adds a reward model so that unmatched actions still count.
Confidence intervals are bootstrap percentiles, since click rewards are far from normal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    name: str
    value: float
    low: float
    high: float


def _check(reward: np.ndarray, pscore: np.ndarray, pi_logged: np.ndarray) -> None:
    if not (reward.shape == pscore.shape == pi_logged.shape):
        raise ValueError("reward, pscore and pi_logged must have one value per logged impression")
    if np.any(pscore <= 0) or np.any(pscore > 1):
        raise ValueError("pscore (logging propensity) must be in (0, 1]")


def ips(reward: np.ndarray, pscore: np.ndarray, pi_logged: np.ndarray) -> np.ndarray:
    """Per-row IPS terms; the estimate is their mean. `pi_logged` = π_e(logged action | x)."""
    _check(reward, pscore, pi_logged)
    return pi_logged / pscore * reward


def snips_value(reward: np.ndarray, pscore: np.ndarray, pi_logged: np.ndarray) -> float:
    w = pi_logged / pscore
    return float((w * reward).sum() / w.sum()) if w.sum() > 0 else 0.0


def dr(
    reward: np.ndarray,
    pscore: np.ndarray,
    pi_logged: np.ndarray,
    q_logged: np.ndarray,
    pi_all: np.ndarray,
    q_all: np.ndarray,
) -> np.ndarray:
    """Per-row doubly robust terms: model value of π_e plus the IPS-weighted model residual."""
    _check(reward, pscore, pi_logged)
    direct = (pi_all * q_all).sum(axis=1)
    return direct + pi_logged / pscore * (reward - q_logged)


def estimates(
    reward: np.ndarray,
    pscore: np.ndarray,
    pi_logged: np.ndarray,
    q_logged: np.ndarray,
    pi_all: np.ndarray,
    q_all: np.ndarray,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> list[Estimate]:
    """IPS, SNIPS and DR with bootstrap percentile intervals over logged rows."""
    rng = np.random.default_rng(seed)
    n = reward.size
    ips_t = ips(reward, pscore, pi_logged)
    dr_t = dr(reward, pscore, pi_logged, q_logged, pi_all, q_all)
    w = pi_logged / pscore
    idx = rng.integers(0, n, size=(n_boot, n))
    boot = {
        "ips": ips_t[idx].mean(axis=1),
        "snips": (w[idx] * reward[idx]).sum(axis=1) / np.maximum(w[idx].sum(axis=1), 1e-300),
        "dr": dr_t[idx].mean(axis=1),
    }
    point = {
        "ips": float(ips_t.mean()),
        "snips": snips_value(reward, pscore, pi_logged),
        "dr": float(dr_t.mean()),
    }
    lo, hi = 100 * alpha / 2, 100 * (1 - alpha / 2)
    return [
        Estimate(k, point[k], float(np.percentile(b, lo)), float(np.percentile(b, hi)))
        for k, b in boot.items()
    ]


def on_policy(reward: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """The logged policy's own value (mean reward) with the same bootstrap interval."""
    rng = np.random.default_rng(seed)
    boot = reward[rng.integers(0, reward.size, size=(n_boot, reward.size))].mean(axis=1)
    return Estimate(
        "logged",
        float(reward.mean()),
        float(np.percentile(boot, 2.5)),
        float(np.percentile(boot, 97.5)),
    )
