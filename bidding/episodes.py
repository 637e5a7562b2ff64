"""Episode replay by the RLB benchmark's rules, one auction at a time.

Cai et al. (WSDM 2017) score bidders on episodes of T auctions, each with its own budget: a bid
is capped by the budget left, a win pays the market price (second price), and what is left at
an episode's end is lost. A state-aware strategy (rlb) must see the state after every auction,
so this replay walks the auctions in order and asks `strategies.bid_one` (the function serving
calls) for each bid with `auctions_left` and `budget_left`; with the cap, spend never exceeds an
episode's budget. Static strategies replay under the same rules from their array bids (one
`bid_array` call, then the cap), which gives the same bids as `bid_one` with
`max_bid = budget left` (tests/bidding/test_episodes.py) at a fraction of the cost: tuning a base
bid on fifty episodes replays them once per grid point.

Episodes come from a fixed length or from an episode column (ids in time order).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from bidding.goals import GoalValue
from bidding.replay import AuctionLog, ReplayResult, log_values, replay_bids, summarize
from bidding.rlb import Rlb
from bidding.strategies import BidStrategy, bid_one
from bidding.winrate import WinRateModel

# An episode counts as exhausted when under 1% of its budget is left at its end (bidding goes on
# while anything is left: a cheap impression may still fit).
EXHAUSTED_SHARE = 0.01


def episode_bounds(n: int, length: int | None = None, ids: object | None = None) -> np.ndarray:
    """Start of each episode plus n at the end: fixed `length`, or where `ids` change."""
    if ids is not None:
        a = np.asarray(ids)
        if a.shape != (n,):
            raise ValueError(f"episode: expected one id per auction ({n}), got shape {a.shape}")
        change = np.flatnonzero(a[1:] != a[:-1]) + 1
        starts = np.concatenate([[0], change, [n]]) if n else np.zeros(1, np.int64)
        _, first = np.unique(a, return_index=True)
        if first.size != starts.size - 1:
            raise ValueError("episode: an episode's auctions must be contiguous (in time order)")
        return starts.astype(np.int64)
    if not (isinstance(length, int) and length > 0):
        raise ValueError(f"episode_length: must be an integer > 0, got {length!r}")
    return np.append(np.arange(0, n, length), n).astype(np.int64)


def episode_budgets(bounds: np.ndarray, per_auction: float) -> np.ndarray:
    """The paper's budget: c0 x CPM / 1000 x T, i.e. budget per auction x episode length."""
    if not (math.isfinite(per_auction) and per_auction >= 0):
        raise ValueError(f"budget per auction: must be a finite number >= 0, got {per_auction!r}")
    return np.diff(bounds).astype(np.float64) * per_auction


def replay_episodes(
    log: AuctionLog,
    strategy: BidStrategy,
    budgets: np.ndarray,
    bounds: np.ndarray,
    goal: GoalValue,
    *,
    max_bid: float = math.inf,
    win_model: WinRateModel | None = None,
) -> ReplayResult:
    """Replay each episode with its budget, bids capped by the budget left (module docstring)."""
    budgets = np.asarray(budgets, dtype=np.float64)
    vals = log_values(log, goal)
    bids, won, cost, at, exhausted = _run(log, strategy, budgets, bounds, vals, max_bid, win_model)
    eps = int(budgets.shape[0])
    total = float(budgets.sum())
    return summarize(strategy.name, total, log, bids, won, cost, at, eps, exhausted)


def _run(
    log: AuctionLog,
    strategy: BidStrategy,
    budgets: np.ndarray,
    bounds: np.ndarray,
    vals: np.ndarray,
    max_bid: float,
    win_model: WinRateModel | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None, int]:
    n = len(log)
    if bounds[-1] != n or budgets.shape[0] != bounds.shape[0] - 1:
        raise ValueError("episodes: bounds and budgets do not match the log")
    market = log.market_price.tolist()
    floor = log.floor.tolist()
    first = log.first_price.tolist()
    bids = np.zeros(n)
    won = np.zeros(n, dtype=bool)
    cost = np.zeros(n)
    stateful = isinstance(strategy, Rlb)
    if stateful:
        v = vals.tolist()
        keys, codes = log.shading_groups
        curves = [win_model.curve(k) for k in keys] if win_model is not None else []
        seg = codes.tolist()
    else:
        static = replay_bids(strategy, vals, log, slice(None), max_bid, win_model).tolist()
    exhausted_at, exhausted = None, 0
    for e in range(budgets.shape[0]):
        start, end = int(bounds[e]), int(bounds[e + 1])
        left = float(budgets[e])
        low = EXHAUSTED_SHARE * left
        for i in range(start, end):
            if left <= 0.0:
                break
            if stateful:
                curve = curves[seg[i]] if curves and seg[i] >= 0 else None
                cap = max_bid if max_bid < left else left
                bid = bid_one(
                    strategy, v[i], floor=floor[i], max_bid=cap, budget_left=left,
                    curve=curve, auctions_left=end - i,
                )[0]  # fmt: skip
            else:
                bid = static[i]
                if bid > left:
                    bid = left if left >= floor[i] else 0.0
            if bid <= 0.0:
                continue
            bids[i] = bid
            if bid > market[i] and bid >= floor[i]:
                paid = bid if first[i] else max(market[i], floor[i])
                won[i], cost[i] = True, paid
                left -= paid
        if left <= low and budgets[e] > 0:
            exhausted += 1
            if exhausted_at is None:
                w = np.flatnonzero(won[start:end])
                exhausted_at = start + (int(w[-1]) if w.size else 0)
    return bids, won, cost, exhausted_at, exhausted


def tune_on_episodes(
    make: Callable[[float], BidStrategy],
    grid: Sequence[float],
    log: AuctionLog,
    budgets: np.ndarray,
    bounds: np.ndarray,
    goal: GoalValue,
    *,
    max_bid: float = math.inf,
    win_model: WinRateModel | None = None,
) -> BidStrategy:
    """The grid point with the most clicks on these episodes; ties: most value won (the
    model's expected clicks), then least spend (as fitting._best_on_grid)."""
    vals = log_values(log, goal)
    budgets = np.asarray(budgets, dtype=np.float64)
    best: tuple[tuple[float, float, float], float] | None = None
    for x in grid:
        _, won, cost, _, _ = _run(log, make(float(x)), budgets, bounds, vals, max_bid, win_model)
        key = (float(log.click[won].sum()), float(vals[won].sum()), -float(cost.sum()))
        if best is None or key > best[0]:
            best = (key, float(x))
    if best is None:
        raise ValueError("grid: empty")
    return make(best[1])
