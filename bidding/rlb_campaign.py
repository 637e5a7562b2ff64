"""RLB for a campaign of the campaigns file: its settings, its market-price model, its table.

A campaign with `strategy = "rlb"` carries a `[campaigns.rlb]` table (`RlbConfig`): the
market-price histogram (a JSON file the service reads; `market_from_json` parses its content
here, without I/O), the campaign's average CTR (and CVR), and the auctions it expects per
campaign-local day. The episode of the dynamic program is the campaign's budget period, the
local day that pacing and the budgets already use (`bidding.pacing.local_day`): the state is
(auctions left today, budget left today). A day has far more auctions than a table can hold,
so the table is solved for `horizon` auctions with the same budget per auction, and
`Rlb.price_at` maps (t, b) -> (horizon, b x horizon / t) while more than `horizon` are left
(the paper's large-scale mapping); the last `horizon` auctions of the day use the exact rows.

Units: prices are CPM and a win spends price / 1000 of the budget (`serving.state.events`), so
the DP's budget is in CPM units (`PRICE_UNITS` x money), which also makes `bid_with_state`'s cap
(the budget left) the right one: a bid never costs more than what is left.

`RlbBidder` is what the per-impression path calls (bidding/selection.py): it turns the
campaign's budget left and the clock into the `PacingState` of `bidding.stateful` and asks
`bid_with_state`, the function the replay parity test holds to the episode replay. A campaign
whose table is not solved yet bids with `PENDING`, which never bids (`rlb_not_ready`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bidding.goals import GoalValue
from bidding.pacing import PacingPlan, PacingState, local_day
from bidding.rlb import DEFAULT_GRID, MarketModel, Rlb, market_from_counts, solve_rlb
from bidding.stateful import bid_with_state

if TYPE_CHECKING:
    from bidding.winrate import WinCurve

RLB_NOT_READY: Final = "rlb_not_ready"
PRICE_UNITS: Final = 1000.0  # CPM price units per unit of budget (a win spends price / 1000)
# The table covers twice the day's budget per auction: a campaign behind plan (or started
# mid-day with nothing spent) has more budget per auction left than the day's average.
COVER: Final = 2.0
MAX_BINS: Final = 100_000  # histogram bins: the DP's inner loop walks them


class RlbConfig(BaseModel):
    """`[campaigns.rlb]`: what the dynamic program needs beside the campaign's budget."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    market: str = Field(
        min_length=1,
        description="market-price histogram JSON, relative to the campaigns file",
    )
    avg_ctr: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    avg_cvr: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    auctions_per_day: int = Field(ge=1, le=10**10)
    horizon: int = Field(1000, ge=1, le=10_000)
    grid: int = Field(DEFAULT_GRID, ge=16, le=16_384)

    def problems(self, goal: str) -> list[str]:
        """Cross-field checks against the campaign's goal ("rlb.<field>: <reason>" lines)."""
        out = []
        if goal != "cpm" and self.avg_ctr is None:
            out.append(f"rlb.avg_ctr: required for goal {goal!r} (the mean pCTR per auction)")
        if goal in ("cpa", "roas") and self.avg_cvr is None:
            out.append(f"rlb.avg_cvr: required for goal {goal!r} (the mean pCVR per click)")
        return out

    def mean_value(self, goal: GoalValue) -> float:
        """The DP's theta: the goal's value at the average pCTR (x pCVR: independence assumed)."""
        return goal.value(self.avg_ctr or 0.0, self.avg_cvr or 1.0)

    def table_horizon(self) -> int:
        return min(self.horizon, self.auctions_per_day)


def market_from_json(data: object, *, rate: float = 1.0) -> MarketModel:
    """A market-price histogram from its parsed JSON: `market_price_counts` (index i = auctions
    whose market price fell in [i x step, (i+1) x step), CPM in the campaign's currency) with
    an optional `step` (default 1) and `smoothing` (add-k over the support, default 1), or a
    RLB-benchmark train-info file as it is (`market_price_counts_train`, step 1). `rate`
    converts the campaign's currency into the account currency (as its other amounts).
    ValueError names the field."""
    if not isinstance(data, Mapping):
        raise ValueError("file: expected a JSON object with market_price_counts")
    key = "market_price_counts" if "market_price_counts" in data else "market_price_counts_train"
    counts = data.get(key)
    if not isinstance(counts, list) or not counts:
        raise ValueError(f"{key}: required, a non-empty list of counts")
    if len(counts) > MAX_BINS:
        raise ValueError(f"{key}: {len(counts)} bins, at most {MAX_BINS} (use a wider step)")
    for i, c in enumerate(counts):
        if isinstance(c, bool) or not isinstance(c, int | float) or not (0 <= c < math.inf):
            raise ValueError(f"{key}[{i}]: not a count >= 0: {c!r}")
    if not sum(counts) > 0:
        raise ValueError(f"{key}: all zero")
    step, smoothing = data.get("step", 1.0), data.get("smoothing", 1.0)
    for name, x, strict in (("step", step, True), ("smoothing", smoothing, False)):
        ok = isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
        if not (ok and (x > 0 if strict else x >= 0)):
            raise ValueError(f"{name}: must be a number {'>' if strict else '>='} 0, got {x!r}")
    return market_from_counts(counts, step=float(step) * rate, smoothing=float(smoothing))


def solve_campaign(
    config: RlbConfig, goal: GoalValue, daily_budget: float, market: MarketModel
) -> Rlb:
    """The table for one campaign: `table_horizon()` auctions and the day's budget per auction
    (seconds at the default grid; the service solves it at load, off the request path)."""
    h = config.table_horizon()
    budget = daily_budget * PRICE_UNITS * h / config.auctions_per_day
    theta = np.array([config.mean_value(goal)])
    table = solve_rlb(market, theta, np.ones(1), h, budget, grid=config.grid, cover=COVER)
    return Rlb(table)


@dataclass(frozen=True, slots=True)
class RlbBidder:
    """A solved campaign's bid on the service's state: budget left (money, from the budgets
    the service keeps) and the clock (epoch seconds)."""

    strategy: Rlb
    daily_budget: float
    expected_auctions: float  # per campaign-local day
    tz: ZoneInfo
    plan: PacingPlan | None = None  # traffic over the day; None: even
    # Memos, each one tuple swapped whole (a reader never sees half of an update): the local
    # day last seen (start, end, length), as local_day costs microseconds; and the last state
    # built (budget left, day start, state), as the budget snapshot changes about once a
    # second and a frozen dataclass costs microseconds to build.
    _day: list[tuple[float, float, float]] = field(
        default_factory=lambda: [(0.0, -math.inf, 1.0)], repr=False
    )
    _last: list[tuple[float, float, PacingState | None]] = field(
        default_factory=lambda: [(math.nan, math.nan, None)], repr=False
    )

    def state(self, budget_left: float, now: float) -> PacingState:
        """The day's pacing state in price units; an unknown budget left (no snapshot yet)
        counts as the whole day's budget."""
        start, end, length = self._day[0]
        if not (start <= now < end):
            start, length = local_day(now, self.tz)
            self._day[0] = (start, start + length, length)
        left_then, start_then, state = self._last[0]
        if state is not None and left_then == budget_left and start_then == start:
            return state
        budget = self.daily_budget * PRICE_UNITS
        left = budget_left * PRICE_UNITS if budget_left < self.daily_budget else budget
        state = PacingState(budget, start, length, budget - left)
        self._last[0] = (budget_left, start, state)
        return state

    def bid(
        self,
        value: float,
        budget_left: float,
        now: float,
        *,
        floor: float = 0.0,
        max_bid: float = math.inf,
        curve: WinCurve | None = None,
    ) -> tuple[float, str]:
        price, reason = bid_with_state(
            self.strategy,
            value,
            self.state(budget_left, now),
            now,
            self.expected_auctions,
            plan=self.plan,
            floor=floor,
            max_bid=max_bid,
            curve=curve,
        )
        # the state's budget left is budget - (budget - left): a rounding above `left` when
        # almost nothing is left must not become a bid above what is left
        cap = budget_left * PRICE_UNITS
        return (cap, reason) if 0.0 <= cap < price else (price, reason)


@dataclass(frozen=True, slots=True)
class PendingRlb:
    """An rlb campaign before its table is solved: never bids (`rlb_not_ready`), on either
    path, so a campaign is never priced by something other than what it asked for."""

    name: ClassVar[str] = "rlb"

    def price(self, value: float) -> float:
        return math.nan

    def prices(self, values: np.ndarray) -> np.ndarray:
        return np.full(np.shape(values), math.nan)

    def bid(
        self,
        value: float,
        budget_left: float,
        now: float,
        *,
        floor: float = 0.0,
        max_bid: float = math.inf,
        curve: WinCurve | None = None,
    ) -> tuple[float, str]:
        return 0.0, RLB_NOT_READY


PENDING: Final = PendingRlb()
