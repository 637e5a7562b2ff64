"""Creative selection: the creative with the highest expected value, with optional exploration.

pCTR depends on the creative, so a campaign's value differs per creative. Pure greedy choice never
learns about creatives it under-rates; exploration fixes that, and returning the probability with
which the shown creative was chosen (the propensity) lets creatives be evaluated off-policy later
(IPS / doubly robust). Randomness comes in from the caller, so this module stays pure.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Exploration = Literal["greedy", "epsilon", "thompson"]


@dataclass(frozen=True, slots=True)
class CreativeChoice:
    index: int
    propensity: float  # P(this creative | this impression) under the selection policy


def _argmax(values: Sequence[float]) -> int:
    """First maximum; ties go to the first-listed creative so choices are reproducible."""
    best, best_i = -np.inf, 0
    for i, v in enumerate(values):
        if v > best:
            best, best_i = v, i
    return best_i


def epsilon_greedy_probs(values: np.ndarray, epsilon: float) -> np.ndarray:
    """Full action distribution per row (rows x creatives): what off-policy estimators need."""
    values = np.atleast_2d(values)
    k = values.shape[1]
    probs = np.full(values.shape, epsilon / k)
    probs[np.arange(values.shape[0]), values.argmax(axis=1)] += 1.0 - epsilon
    return probs


def choose(
    values: Sequence[float],
    *,
    exploration: Exploration = "greedy",
    epsilon: float = 0.1,
    rng: random.Random | None = None,
    pctrs: Sequence[float] | None = None,
    prior_strength: float = 1000.0,
    draws: int = 64,
) -> CreativeChoice:
    """Pick one creative index among `values` (expected value per creative, same order).

    - greedy: the best, propensity 1.
    - epsilon: the best with probability 1 - epsilon, else uniform; exact propensity.
    - thompson: sample each creative's pCTR from Beta(pctr * n, (1 - pctr) * n) with
      n = prior_strength, scale its value by sample / pctr, pick the best sample; the propensity
      is estimated from `draws` further samples (Thompson has no closed form).
    """
    k = len(values)
    if k == 0:
        raise ValueError("no creatives to choose from")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    best = _argmax(values)
    if exploration == "greedy" or k == 1:
        return CreativeChoice(best, 1.0)
    rng = rng or random.Random()
    if exploration == "epsilon":
        i = rng.randrange(k) if rng.random() < epsilon else best
        return CreativeChoice(i, epsilon / k + (1.0 - epsilon if i == best else 0.0))
    if exploration == "thompson":
        if pctrs is None or len(pctrs) != k:
            raise ValueError("thompson exploration needs one pctr per creative")
        nprng = np.random.default_rng(rng.getrandbits(64))
        p = np.clip(np.asarray(pctrs, dtype=np.float64), 1e-9, 1 - 1e-9)
        v = np.asarray(values, dtype=np.float64)
        samples = nprng.beta(p * prior_strength, (1 - p) * prior_strength, size=(draws + 1, k))
        scores = v * samples / p
        winners = scores.argmax(axis=1)
        i = int(winners[0])
        propensity = float((winners[1:] == i).mean()) if draws else 1.0
        return CreativeChoice(i, max(propensity, 1.0 / (draws + 1)))
    raise ValueError(f"unknown exploration {exploration!r}: use greedy, epsilon or thompson")
