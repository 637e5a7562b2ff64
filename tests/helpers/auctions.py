"""Seeded synthetic auction logs with known truth, for bidding tests and benches (not product).

Not a substitute for features/synth.py (full canonical logs for the whole pipeline): this is
the minimum replay needs, generated in a few milliseconds per million auctions, with the true
CTR kept so a strategy can be scored on learned and on true probabilities. Market prices
rise with quality (buyers see the same signals), which is what makes the choice of strategy
matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bidding.pacing import DAY, DEFAULT_TRAFFIC
from bidding.replay import AuctionLog, make_log

CHANNELS = ("web", "app", "video")


@dataclass(frozen=True)
class SyntheticAuctions:
    log: AuctionLog  # pctr = learned (noisy) CTR
    true_log: AuctionLog  # the same auctions with pctr = true CTR
    true_ctr: np.ndarray
    market_sigma: float


def synthetic_auctions(
    n: int,
    *,
    seed: int = 0,
    base_ctr: float = 0.002,
    ctr_sigma: float = 0.9,
    model_noise: float = 0.35,
    market_cpm: float = 50.0,
    market_sigma: float = 0.5,
    quality_elasticity: float = 0.5,
    first_price_share: float = 0.0,
    floor_share: float = 0.0,
    cvr: float = 0.05,
) -> SyntheticAuctions:
    rng = np.random.default_rng(seed)
    ctr = np.minimum(np.exp(rng.normal(math.log(base_ctr), ctr_sigma, n)), 0.5)
    pctr = np.minimum(ctr * np.exp(rng.normal(-0.5 * model_noise**2, model_noise, n)), 1.0)
    market = (
        market_cpm
        * (ctr / base_ctr) ** quality_elasticity
        * np.exp(rng.normal(-0.5 * market_sigma**2, market_sigma, n))
    )
    click = (rng.random(n) < ctr).astype(np.int8)
    conversion = (click == 1) & (rng.random(n) < cvr)
    first = rng.random(n) < first_price_share
    floor = np.where(rng.random(n) < floor_share, market * rng.uniform(0.2, 1.2, n), 0.0)
    hourly = np.asarray(DEFAULT_TRAFFIC)
    hour = rng.choice(hourly.shape[0], size=n, p=hourly / hourly.sum())
    time = np.sort((hour + rng.random(n)) * (DAY / hourly.shape[0]))
    segment = np.asarray(CHANNELS)[rng.integers(0, len(CHANNELS), n)]
    common = {
        "market_price": market,
        "click": click,
        "pcvr": np.full(n, cvr),
        "conversion": conversion.astype(np.int8),
        "auction_type": first,
        "floor": floor,
        "segment": segment,
        "time": time,
    }
    return SyntheticAuctions(
        make_log(pctr=pctr, **common), make_log(pctr=ctr, **common), ctr, market_sigma
    )
