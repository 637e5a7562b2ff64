"""The simulate command's core: fit every strategy on one window, replay it on the next.

Per (strategy, budget fraction): fit on `fit_log` with that fraction of its budget base,
replay `replay_log` with the same fraction of its own. The budget base is the window's total
market price (the iPinYou benchmark), or, given `price_per_auction` (the RLB benchmark's
CPM_train / 1000), that price x the window's auctions: per episode, c0 x CPM / 1000 x T.

Which replay: static strategies replay vectorised (bidding/replay.py); rlb, which bids on the
state, replays auction by auction (bidding/episodes.py). Episodes given by an id column are the
RLB benchmark's protocol, so there every strategy replays by its rules (bids capped by the budget
left, leftover lost), and the grid-fitted strategies (constant, linear) are tuned on the fit
window's episodes under the same rules. The fit bids as the replay does (`replay_bids`, shading
included), so lambdas solved for the fit window's budget spend it in replay too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bidding.episodes import episode_bounds, episode_budgets, replay_episodes, tune_on_episodes
from bidding.fitting import RLB_HORIZON, fit_strategy, price_grid
from bidding.goals import GoalValue
from bidding.replay import (
    AuctionLog,
    ReplayResult,
    log_values,
    parse_budget_fraction,
    replay,
    replay_bids,
)
from bidding.rlb import MarketModel, Rlb
from bidding.strategies import BidStrategy, Constant, Linear, strategy_name
from bidding.winrate import WinRateModel

GridRow = tuple[str, float, BidStrategy, ReplayResult]


def budget_per_auction(log: AuctionLog, price_per_auction: float | None) -> float:
    """The window's average market price, or the given training-days price per auction."""
    if price_per_auction is not None:
        if not (math.isfinite(price_per_auction) and price_per_auction > 0):
            raise ValueError(f"price per auction: must be a number > 0, got {price_per_auction!r}")
        return float(price_per_auction)
    return float(log.market_price.mean()) if len(log) else 0.0


def replay_grid(
    fit_log: AuctionLog,
    replay_log: AuctionLog,
    strategies: Sequence[str],
    fractions: Sequence[str | float],
    goal: GoalValue,
    *,
    max_bid: float = math.inf,
    episode_length: int | None = None,
    win_model: WinRateModel | None = None,
    seed: int = 0,
    fit_episodes: np.ndarray | None = None,
    replay_episodes_ids: np.ndarray | None = None,
    price_per_auction: float | None = None,
    market_model: MarketModel | None = None,
) -> list[GridRow]:
    """Names and fractions are all checked before any work. Returns (name, fraction, fitted
    strategy, result) rows. `fit_episodes` / `replay_episodes_ids`: episode ids per auction
    (both or neither); `market_model`: rlb's market-price model (default: the fit window's)."""
    names = [strategy_name(s) for s in strategies]
    fracs = [parse_budget_fraction(f) for f in fractions]
    if (fit_episodes is None) != (replay_episodes_ids is None):
        raise ValueError("episode: give episode ids for both the fit and the replay window")
    by_ids = fit_episodes is not None
    fit_values = log_values(fit_log, goal)
    fit_rate = budget_per_auction(fit_log, price_per_auction)
    rate = budget_per_auction(replay_log, price_per_auction)
    n_fit, n = len(fit_log), len(replay_log)
    if by_ids:
        fit_bounds = episode_bounds(n_fit, ids=fit_episodes)
        bounds = episode_bounds(n, ids=replay_episodes_ids)
        horizon = int(np.diff(fit_bounds).max())
    elif episode_length is not None:
        fit_bounds = episode_bounds(n_fit, episode_length)
        bounds = episode_bounds(n, episode_length)
        horizon = episode_length
    else:
        fit_bounds, bounds = np.array([0, n_fit]), np.array([0, n])
        horizon = min(RLB_HORIZON, n_fit)

    def fit_bids(strategy: BidStrategy, values: np.ndarray) -> np.ndarray:
        return replay_bids(strategy, values, fit_log, slice(None), max_bid, win_model)

    rows: list[GridRow] = []
    for name in names:
        for frac in fracs:
            strat = _fit(
                name, frac, fit_log, fit_values, fit_rate, fit_bounds, goal, max_bid, seed,
                fit_bids, by_ids, horizon, market_model,
            )  # fmt: skip
            if by_ids or isinstance(strat, Rlb):
                budgets = episode_budgets(bounds, frac * rate)
                res = replay_episodes(
                    replay_log, strat, budgets, bounds, goal, max_bid=max_bid, win_model=win_model
                )
            else:
                res = replay(
                    replay_log, strat, frac * rate * n, goal, max_bid=max_bid,
                    win_model=win_model, episode_length=episode_length,
                )  # fmt: skip
            rows.append((name, frac, strat, res))
    return rows


def _fit(
    name: str,
    frac: float,
    log: AuctionLog,
    values: np.ndarray,
    rate: float,
    bounds: np.ndarray,
    goal: GoalValue,
    max_bid: float,
    seed: int,
    bids: object,
    by_ids: bool,
    horizon: int,
    market_model: MarketModel | None,
) -> BidStrategy:
    if by_ids and name in ("linear", "constant"):
        budgets = episode_budgets(bounds, frac * rate)
        grid = price_grid(log.market_price, 48).tolist()
        if name == "constant":
            return tune_on_episodes(Constant, grid, log, budgets, bounds, goal, max_bid=max_bid)
        avg = float(np.nanmean(values))
        if not avg > 0:
            raise ValueError("values: the training window's average value must be > 0")
        return tune_on_episodes(
            lambda x: Linear(x, avg), grid, log, budgets, bounds, goal, max_bid=max_bid
        )
    return fit_strategy(
        name, values, log.market_price, log.click, frac * rate * len(log), floor=log.floor,
        first_price=log.first_price, max_bid=max_bid, seed=seed, bids=bids,  # type: ignore[arg-type]
        scale_free=not goal.has_target, horizon=horizon, market_model=market_model,
    )  # fmt: skip
