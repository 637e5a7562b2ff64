"""Budget pacing: a PID controller on the bid multiplier so spend follows a plan over the day.

After Zhang et al., "Feedback control of real-time display advertising" (WSDM 2016): every
control interval the error between planned and actual cumulative spend drives
phi = kp e + ki integral(e) + kd de/dt, and the bids are multiplied by exp(phi) (for a
Lagrangian bidder this is lambda = 1 / multiplier - 1). The error is measured as a share of the
budget and time as a share of the period, so one set of gains suits any budget or day length.

Only the arithmetic lives here, over an explicit frozen `PacingState`: where the state is kept
(one process, Redis for several workers) is the service's business. `run_paced` is the loop
that replay and the day simulator of the tests and benches (tests/helpers/pacing_day.py) share;
it is pure given its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np

from bidding.auction import budget_stop, settle

DAY: Final = 86_400.0
# Expected share of daily auctions per hour (UTC-agnostic shape: quiet night, evening peak).
DEFAULT_TRAFFIC: Final = (
    0.30, 0.20, 0.15, 0.12, 0.12, 0.18, 0.35, 0.60, 0.85, 0.95, 1.00, 1.05,
    1.10, 1.05, 1.00, 1.00, 1.05, 1.15, 1.30, 1.45, 1.50, 1.30, 0.90, 0.55,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PacingPlan:
    """Cumulative share of the budget to have spent at each point of the period.

    `weights` are per equal slot (e.g. 24 hours); spend is planned in proportion, linearly
    within a slot.
    """

    weights: tuple[float, ...]
    cumulative: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        w = self.weights
        if not w or any(not (math.isfinite(x) and x >= 0) for x in w) or sum(w) <= 0:
            raise ValueError("plan: weights must be finite, >= 0 and not all zero")
        total = sum(w)
        cum = [0.0]
        for x in w:
            cum.append(cum[-1] + x / total)
        cum[-1] = 1.0
        object.__setattr__(self, "cumulative", tuple(cum))

    def fraction(self, t: float) -> float:
        """Planned share of the budget spent by `t`, the elapsed share of the period."""
        if t <= 0.0:
            return 0.0
        if t >= 1.0:
            return 1.0
        k = len(self.weights)
        pos = t * k
        i = int(pos)
        c = self.cumulative
        return c[i] + (c[i + 1] - c[i]) * (pos - i)


def even_plan(slots: int = 24) -> PacingPlan:
    return PacingPlan((1.0,) * slots)


def traffic_plan(expected_traffic: Sequence[float]) -> PacingPlan:
    """Spend where the auctions are: per-slot weights from expected traffic (e.g. hourly)."""
    return PacingPlan(tuple(float(x) for x in expected_traffic))


@dataclass(frozen=True, slots=True)
class PidGains:
    """Defaults tuned with `simulate_day` (tests/helpers/pacing_day.py): unpaced spend from 0.3x
    to 8x the budget, control intervals of 5 to 30 minutes and hourly traffic off its expected
    shape by 20-40%: spend ended at 99-100% of the budget, never exhausted before 97% of the
    day."""

    kp: float = 20.0  # per unit of budget share behind plan
    ki: float = 50.0  # per unit of (budget share x period share)
    kd: float = 0.0
    min_multiplier: float = 0.02
    max_multiplier: float = 20.0


@dataclass(frozen=True, slots=True)
class PacingState:
    """Everything the controller remembers about one campaign's period (one day)."""

    budget: float
    start: float  # period start, seconds (e.g. local midnight as epoch seconds)
    length: float = DAY
    spent: float = 0.0
    multiplier: float = 1.0
    integral: float = 0.0
    last_error: float = 0.0
    last_update: float = math.nan  # NaN: never stepped

    @property
    def budget_left(self) -> float:
        return self.budget - self.spent

    @property
    def lam(self) -> float:
        """The Lagrangian lambda equivalent to the multiplier (value / (1 + lambda))."""
        return 1.0 / self.multiplier - 1.0


def local_day(now: float, tz: ZoneInfo) -> tuple[float, float]:
    """(start, length) in epoch seconds of the campaign-local day containing `now`.

    Days are 23 or 25 hours long when clocks change; pacing plans them by share of the day.
    """
    local = datetime.fromtimestamp(now, tz)
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz)
    following = midnight.date() + timedelta(days=1)
    nxt = datetime(following.year, following.month, following.day, tzinfo=tz)
    return midnight.timestamp(), nxt.timestamp() - midnight.timestamp()


def new_state(
    budget: float, start: float, length: float = DAY, multiplier: float = 1.0
) -> PacingState:
    if not (math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget: must be a finite number > 0, got {budget!r}")
    if not (math.isfinite(length) and length > 0):
        raise ValueError(f"length: must be a finite number of seconds > 0, got {length!r}")
    return PacingState(budget=budget, start=start, length=length, multiplier=multiplier)


def step(
    state: PacingState,
    now: float,
    spend_so_far: float,
    plan: PacingPlan,
    gains: PidGains = PidGains(),
) -> PacingState:
    """One control update at time `now` given the period's spend so far; returns the new state."""
    t = (now - state.start) / state.length
    error = plan.fraction(t) - spend_so_far / state.budget  # > 0: behind plan, bid up
    last = state.start if math.isnan(state.last_update) else state.last_update
    prev_t = (last - state.start) / state.length
    dt = max(t - prev_t, 0.0)
    lo, hi = math.log(gains.min_multiplier), math.log(gains.max_multiplier)
    integral = state.integral + error * dt
    if gains.ki > 0:  # anti-windup: the integral alone never asks for more than the bounds
        integral = min(max(integral, lo / gains.ki), hi / gains.ki)
    deriv = (error - state.last_error) / dt if dt > 0 else 0.0
    phi = gains.kp * error + gains.ki * integral + gains.kd * deriv
    multiplier = math.exp(min(max(phi, lo), hi))
    return replace(
        state,
        spent=spend_so_far,
        multiplier=multiplier,
        integral=integral,
        last_error=error,
        last_update=now,
    )


# bid_fn(auction slice, multiplier, budget left) -> bids for those auctions.
BidFn = Callable[[slice, float, float], np.ndarray]


@dataclass(frozen=True)
class PacedRun:
    won: np.ndarray  # per auction
    cost: np.ndarray  # per auction (0 where lost or not bid)
    bids: np.ndarray  # per auction (0 = no bid)
    interval_end: np.ndarray  # per control interval, seconds
    interval_spend: np.ndarray
    multipliers: np.ndarray  # used during each interval
    spend: float
    exhausted_at: float | None  # seconds when spend reached the budget, None if never


def run_paced(
    times: np.ndarray,
    bid_fn: BidFn,
    market: np.ndarray,
    floor: np.ndarray,
    first_price: np.ndarray,
    state: PacingState,
    plan: PacingPlan,
    gains: PidGains = PidGains(),
    interval: float = 900.0,
) -> PacedRun:
    """Replay time-ordered auctions one control interval at a time: bid with the current
    multiplier, settle, stop at the budget, then let the controller step."""
    n = times.shape[0]
    won = np.zeros(n, dtype=bool)
    cost = np.zeros(n)
    bids = np.zeros(n)
    ends, spends, mults = [], [], []
    spent = state.spent
    exhausted: float | None = None
    edges = np.arange(state.start + interval, state.start + state.length + interval, interval)
    lo_i = int(np.searchsorted(times, state.start, "left"))
    for end in edges:
        hi_i = int(np.searchsorted(times, min(end, state.start + state.length), "right"))
        sl = slice(lo_i, hi_i)
        before = spent
        if hi_i > lo_i and spent < state.budget:
            b = bid_fn(sl, state.multiplier, state.budget - spent)
            w, c = settle(b, market[sl], floor[sl], first_price[sl])
            played, hit = budget_stop(c, state.budget - spent)
            b[played:], w[played:], c[played:] = 0.0, False, 0.0
            bids[sl], won[sl], cost[sl] = b, w, c
            spent += float(c.sum())
            if hit and exhausted is None:
                exhausted = float(times[lo_i + played - 1])
        ends.append(float(end))
        spends.append(spent - before)
        mults.append(state.multiplier)
        state = step(state, float(end), spent, plan, gains)
        lo_i = hi_i
    return PacedRun(
        won, cost, bids, np.array(ends), np.array(spends), np.array(mults), spent, exhausted
    )
