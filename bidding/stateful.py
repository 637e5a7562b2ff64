"""State-aware bidding from the service's pacing state: what serving would call for rlb.

The replay knows the state exactly (auctions left in the episode, budget left). A live bidder
knows its `PacingState` (budget, spend so far, the period's start and length) and an estimate of
the period's auctions; the auctions still to come are that estimate times the share of traffic
the plan puts after `now` (bidding/pacing.py's plans: even, or shaped by hourly traffic). Both
then call the same `strategies.bid_one(..., auctions_left=, budget_left=)`, capped by the budget
left, so replay and serving give the same bid for the same state (tests/bidding/test_stateful.py
replays an episode and asks this function at each auction's time and spend).

A state-aware strategy paces itself: the pacing multiplier is not applied on top of it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

from bidding.pacing import PacingPlan, PacingState
from bidding.strategies import BidStrategy, bid_one

if TYPE_CHECKING:
    from bidding.winrate import WinCurve


class StateBidder(Protocol):
    """A campaign's state-aware bid (bidding/rlb_campaign.py): what selection asks instead of
    `bid_one` when a campaign has one. `budget_left` is the campaign's (money, as in
    `selection.CampaignState`), `now` the service's clock (epoch seconds)."""

    def bid(
        self,
        value: float,
        budget_left: float,
        now: float,
        *,
        floor: float = 0.0,
        max_bid: float = math.inf,
        curve: WinCurve | None = None,
    ) -> tuple[float, str]: ...


def auctions_left(
    state: PacingState, now: float, expected_auctions: float, plan: PacingPlan | None = None
) -> int:
    """Auctions expected from `now` (this one included) to the end of the period; 0 after it."""
    if not (0.0 < expected_auctions < math.inf):  # also false for NaN
        raise ValueError(f"expected_auctions: must be a number > 0, got {expected_auctions!r}")
    elapsed = (now - state.start) / state.length
    if elapsed >= 1.0:
        return 0
    if plan is None:  # the even plan, inline: this runs once per impression in the service
        share = 1.0 - elapsed if elapsed > 0.0 else 1.0
    else:
        share = 1.0 - plan.fraction(elapsed)
    return max(1, round(expected_auctions * share))


def bid_with_state(
    strategy: BidStrategy,
    value: float,
    state: PacingState,
    now: float,
    expected_auctions: float,
    *,
    plan: PacingPlan | None = None,
    floor: float = 0.0,
    max_bid: float = math.inf,
    curve: WinCurve | None = None,
) -> tuple[float, str]:
    """(price, no-bid reason) for one impression, on the pacing state (see the module);
    `curve` shades a first-price bid as `bid_one` does in the episode replay."""
    left = state.budget_left
    t = auctions_left(state, now, expected_auctions, plan)
    cap = max_bid if max_bid < left else left
    if t == 0:
        left = 0.0  # the period is over: its budget is gone
    return bid_one(
        strategy, value, floor=floor, max_bid=cap, budget_left=left, auctions_left=t, curve=curve
    )
