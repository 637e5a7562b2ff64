"""A synthetic day of auctions under the pacing controller, for pacing tests and benches.

Not product code: it is how the controller's default gains were tuned and how tests show that
a paced day spends its budget (and an unpaced one would not).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bidding.auction import settle
from bidding.pacing import (
    DAY,
    DEFAULT_TRAFFIC,
    PacedRun,
    PacingPlan,
    PidGains,
    new_state,
    run_paced,
    traffic_plan,
)


@dataclass(frozen=True)
class DayResult:
    budget: float
    spend: float
    spend_share: float  # spend / budget
    exhausted_share: float | None  # share of the day when the budget ran out
    max_bid_seen: float
    run: PacedRun


def simulate_day(
    *,
    overspend: float = 2.0,
    auctions: int = 200_000,
    traffic: Sequence[float] = DEFAULT_TRAFFIC,
    traffic_noise: float = 0.2,
    plan: PacingPlan | None = None,
    gains: PidGains = PidGains(),
    interval: float = 900.0,
    seed: int = 0,
) -> DayResult:
    """A synthetic day: hourly traffic that differs from the expected shape by `traffic_noise`,
    log-normal values and market prices, truthful bids x the pacing multiplier, second price.
    The budget is the unpaced spend / `overspend` (2: bidding the value would spend twice it;
    0.5: it would spend half, so pacing has to bid up)."""
    rng = np.random.default_rng(seed)
    hourly = np.asarray(traffic, dtype=float) * rng.lognormal(0.0, traffic_noise, len(traffic))
    hour = rng.choice(len(traffic), size=auctions, p=hourly / hourly.sum())
    times = np.sort((hour + rng.random(auctions)) * (DAY / len(traffic)))
    values = rng.lognormal(math.log(40.0), 0.6, auctions)
    market = rng.lognormal(math.log(50.0), 0.5, auctions)
    floor = np.zeros(auctions)
    first = np.zeros(auctions, dtype=bool)
    max_bid = float(np.quantile(values, 0.999)) * 3
    unpaced = settle(values, market, floor, first)[1].sum()
    budget = float(unpaced / overspend)

    def bid_fn(sl: slice, multiplier: float, budget_left: float) -> np.ndarray:
        return np.minimum(values[sl] * multiplier, max_bid)

    run = run_paced(
        times,
        bid_fn,
        market,
        floor,
        first,
        new_state(budget, 0.0),
        plan or traffic_plan(traffic),
        gains,
        interval,
    )
    return DayResult(
        budget=budget,
        spend=run.spend,
        spend_share=run.spend / budget,
        exhausted_share=None if run.exhausted_at is None else run.exhausted_at / DAY,
        max_bid_seen=float(run.bids.max(initial=0.0)),
        run=run,
    )
