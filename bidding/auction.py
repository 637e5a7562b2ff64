"""How a logged auction resolves for a given bid, and where a budget runs out.

Shared by replay, strategy fitting and the pacing loop so that all three agree on what winning
and paying mean:

- a bid wins when it is strictly above the logged market price (the highest competing bid) and
  at or above the floor;
- second price pays max(market price, floor) (the floor is the reserve; on logs where the
  paying price already includes it, as on iPinYou, this is the market price);
- first price pays the bid.

A bidder only learns the price after it has bid, so, as in serving, it keeps bidding while
spend < budget: the auction that crosses the budget is played and paid, and spend can exceed
the budget by at most one payment (itself at most the max bid).
"""

from __future__ import annotations

import numpy as np


def settle(
    bids: np.ndarray, market: np.ndarray, floor: np.ndarray, first_price: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(won, cost) per auction; cost is 0 where lost."""
    won = (bids > market) & (bids >= floor) & (bids > 0)
    price = np.where(first_price, bids, np.maximum(market, floor))
    return won, np.where(won, price, 0.0)


def budget_stop(cost: np.ndarray, budget: float) -> tuple[int, bool]:
    """(auctions played, budget exhausted): play while spend < budget, cumulative-sum style.

    The auction whose payment makes spend reach the budget is the last one played; every later
    auction gets no bid. A budget <= 0 plays nothing.
    """
    n = int(cost.shape[0])
    if budget <= 0:
        return 0, True
    if not np.isfinite(budget):
        return n, False
    cum = np.cumsum(cost)
    idx = int(np.searchsorted(cum, budget, side="left"))
    return (idx + 1, True) if idx < n else (n, False)


def budget_stops(cost: np.ndarray, budgets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise `budget_stop` for a 2-D (episodes x auctions) cost matrix."""
    n = cost.shape[1]
    cum = np.cumsum(cost, axis=1)
    hit = cum >= budgets[:, None]
    exhausted = hit.any(axis=1) | (budgets <= 0)
    played = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, n)
    return np.where(budgets <= 0, 0, played), exhausted
