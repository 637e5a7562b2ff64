"""Episode replay by the RLB benchmark's rules, against a per-auction loop over `bid_one` (the
function serving calls with its pacing state): the same bids, the same wins, no overspend."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bidding.episodes import (
    episode_bounds,
    episode_budgets,
    replay_episodes,
    tune_on_episodes,
)
from bidding.fitting import fit_strategy
from bidding.goals import goal_value
from bidding.grid import replay_grid
from bidding.replay import make_log
from bidding.strategies import Linear, bid_one
from tests.helpers.auctions import synthetic_auctions

GOAL = goal_value("max_clicks", None)


def _log(n: int = 6000, seed: int = 4):
    s = synthetic_auctions(n, seed=seed)
    lg = s.log
    # integer prices, no floors, second price: the benchmark's auctions
    return make_log(pctr=lg.pctr, market_price=np.round(lg.market_price), click=lg.click)


def _reference(log, strategy, budgets, bounds, max_bid=math.inf):
    """What a live bidder does: ask bid_one with the state, settle, update the budget."""
    bids, won = np.zeros(len(log)), np.zeros(len(log), bool)
    for e in range(budgets.size):
        left = float(budgets[e])
        for i in range(int(bounds[e]), int(bounds[e + 1])):
            if left <= 0.0:
                break
            bid, _ = bid_one(
                strategy, float(log.pctr[i]), max_bid=min(max_bid, left), budget_left=left,
                auctions_left=int(bounds[e + 1]) - i,
            )  # fmt: skip
            bids[i] = bid
            if bid > log.market_price[i]:
                won[i] = True
                left -= float(log.market_price[i])
        assert left >= -1e-9  # capped by the budget left: never overspent
    return bids, won


@pytest.mark.parametrize("kind", ["rlb", "linear"])
def test_replay_bids_as_the_state_aware_bid_function_does(kind):
    log = _log()
    bounds = episode_bounds(len(log), 500)
    budgets = episode_budgets(bounds, float(log.market_price.mean()) / 16)
    strategy = (
        fit_strategy("rlb", log.pctr, log.market_price, log.click, budgets.sum(), horizon=500)
        if kind == "rlb"
        else Linear(20.0, float(log.pctr.mean()))
    )
    res = replay_episodes(log, strategy, budgets, bounds, GOAL)
    bids, won = _reference(log, strategy, budgets, bounds)
    assert res.wins == int(won.sum()) and res.bids == int((bids > 0).sum())
    assert res.clicks == float(log.click[won].sum())
    assert res.spend == pytest.approx(float(log.market_price[won].sum()))
    assert res.episodes == 12 and res.spend <= budgets.sum()


def test_each_episode_has_its_budget_and_leftover_is_lost():
    log = _log()
    bounds = episode_bounds(len(log), 1000)
    budgets = episode_budgets(bounds, float(log.market_price.mean()) / 8)
    strategy = Linear(60.0, float(log.pctr.mean()))
    whole = replay_episodes(log, strategy, budgets, bounds, GOAL)
    parts = [
        replay_episodes(
            log.take(slice(a, b)), strategy, budgets[i : i + 1], np.array([0, b - a]), GOAL
        )
        for i, (a, b) in enumerate(itertools.pairwise(bounds))
    ]
    assert whole.clicks == sum(p.clicks for p in parts)
    assert whole.spend == pytest.approx(sum(p.spend for p in parts))
    assert all(p.spend <= p.budget for p in parts)


def test_episode_bounds_from_ids_and_bad_ids():
    np.testing.assert_array_equal(episode_bounds(5, ids=np.array([1, 1, 2, 2, 2])), [0, 2, 5])
    np.testing.assert_array_equal(episode_bounds(5, 2), [0, 2, 4, 5])
    with pytest.raises(ValueError, match=r"^episode: an episode's auctions must be contiguous"):
        episode_bounds(4, ids=np.array([1, 2, 1, 2]))
    with pytest.raises(ValueError, match=r"^episode: expected one id per auction"):
        episode_bounds(4, ids=np.array([1, 2]))
    with pytest.raises(ValueError, match=r"^episode_length:"):
        episode_bounds(4, 0)


def test_tuned_base_bid_is_the_grid_point_with_most_clicks():
    log = _log(8000)
    bounds = episode_bounds(len(log), 1000)
    budgets = episode_budgets(bounds, float(log.market_price.mean()) / 16)
    avg = float(log.pctr.mean())
    grid = np.geomspace(2.0, 400.0, 12).tolist()
    best = tune_on_episodes(lambda x: Linear(x, avg), grid, log, budgets, bounds, GOAL)
    clicks = [replay_episodes(log, Linear(x, avg), budgets, bounds, GOAL).clicks for x in grid]
    assert replay_episodes(log, best, budgets, bounds, GOAL).clicks == max(clicks)


def test_grid_with_episode_ids_replays_every_strategy_by_the_benchmark_rules():
    log = _log(12_000)
    fit, rep = log.take(slice(0, 6000)), log.take(slice(6000, 12_000))
    ids = np.repeat(np.arange(12), 1000)
    rows = replay_grid(
        fit, rep, ["linear", "rlb", "lagrangian"], ["1/16"], GOAL,
        fit_episodes=ids[:6000], replay_episodes_ids=ids[6000:], price_per_auction=40.0,
    )  # fmt: skip
    for name, frac, _, res in rows:
        assert res.episodes == 6, name
        assert res.budget == pytest.approx(frac * 40.0 * 6000), name
        assert res.spend <= res.budget + 1e-9, name  # bids capped by the budget left
        assert 0 < res.spend_share <= 1.0, name
