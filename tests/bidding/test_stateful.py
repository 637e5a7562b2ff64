"""Parity: an episode replayed by bidding/episodes.py and the service's entry point on the
pacing state (bidding/stateful.py) give the same bid at every auction."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from bidding.episodes import episode_bounds, episode_budgets, replay_episodes
from bidding.fitting import fit_strategy
from bidding.goals import goal_value
from bidding.pacing import new_state, traffic_plan
from bidding.replay import make_log
from bidding.stateful import auctions_left, bid_with_state
from tests.helpers.auctions import synthetic_auctions

GOAL = goal_value("max_clicks", None)


def test_replay_and_pacing_state_give_the_same_bids():
    s = synthetic_auctions(3000, seed=11).log
    log = make_log(pctr=s.pctr, market_price=np.round(s.market_price), click=s.click)
    t_len = 1000
    bounds = episode_bounds(len(log), t_len)
    budgets = episode_budgets(bounds, float(log.market_price.mean()) / 16)
    rlb = fit_strategy("rlb", log.pctr, log.market_price, log.click, budgets.sum(), horizon=t_len)
    res = replay_episodes(log, rlb, budgets, bounds, GOAL)
    assert res.wins > 0
    # the replay's own trajectory, rebuilt: bid, win, spend per auction of episode 0
    start, length = 1_000_000.0, 3600.0
    spent = 0.0
    seen = 0
    for i in range(t_len):
        state = replace(new_state(float(budgets[0]), start, length), spent=spent)
        now = start + i / t_len * length  # auctions arrive evenly over the period
        live, _ = bid_with_state(rlb, float(log.pctr[i]), state, now, t_len)
        replayed = rlb.price_at(float(log.pctr[i]), t_len - i, state.budget_left)
        assert live == replayed
        if live > log.market_price[i]:
            spent += float(log.market_price[i])
            seen += 1
        if state.budget - spent <= 0.0:
            break
    episode = replay_episodes(log.take(slice(0, t_len)), rlb, budgets[:1], bounds[:2], GOAL)
    assert seen == episode.wins and spent == pytest.approx(episode.spend)


def test_auctions_left_follows_the_plan_and_ends_with_the_period():
    state = new_state(100.0, 0.0, 24 * 3600.0)
    assert auctions_left(state, 0.0, 24_000) == 24_000
    assert auctions_left(state, 12 * 3600.0, 24_000) == 12_000
    shaped = traffic_plan([1.0] * 12 + [3.0] * 12)  # three quarters of traffic after noon
    assert auctions_left(state, 12 * 3600.0, 24_000, shaped) == 18_000
    assert auctions_left(state, 24 * 3600.0, 24_000) == 0
    assert bid_with_state(_rlb_stub(), 0.01, state, 25 * 3600.0, 24_000)[0] == 0.0
    with pytest.raises(ValueError, match=r"^expected_auctions:"):
        auctions_left(state, 0.0, math.nan)


def _rlb_stub():
    s = synthetic_auctions(2000, seed=1).log
    return fit_strategy("rlb", s.pctr, s.market_price, s.click, float(s.market_price.sum()) / 8)
