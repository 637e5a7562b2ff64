from __future__ import annotations

import math

import numpy as np
import pytest

from bidding.auction import settle
from bidding.fitting import (
    at_bound,
    empirical_win_curve,
    fit_lagrangian_lambda,
    fit_linear_base_bid,
    fit_ortb,
    fit_strategy,
    fit_win_function_c,
    win_function,
)
from bidding.goals import goal_value
from bidding.replay import replay, window_budget
from bidding.strategies import Lagrangian, Linear, bid_array
from tests.helpers.auctions import synthetic_auctions

CPC = goal_value("cpc", 100.0)


@pytest.mark.parametrize("kind", ["ortb1", "ortb2"])
def test_win_function_c_is_recovered(kind):
    b = np.linspace(1.0, 200.0, 80)
    assert fit_win_function_c(b, win_function(kind, 37.0, b), kind) == pytest.approx(37.0, rel=1e-4)


def test_c_from_market_prices_matches_the_median_for_ortb1():
    rng = np.random.default_rng(0)
    market = rng.lognormal(math.log(50.0), 0.4, 50_000)
    b, w = empirical_win_curve(market)
    assert np.all(np.diff(w) >= 0) and 0 < w[0] < w[-1] < 1
    # b / (c + b) = 1/2 at b = c: the fitted c sits near the median market price
    assert fit_win_function_c(b, w, "ortb1") == pytest.approx(50.0, rel=0.15)


def _spend(strategy, values, market):
    bids = bid_array(strategy, values)
    z = np.zeros(market.shape)
    return settle(bids, market, z, z.astype(bool))[1].sum()


@pytest.mark.parametrize("kind", ["ortb1", "ortb2"])
def test_ortb_lambda_spends_the_training_budget(kind):
    s = synthetic_auctions(50_000, seed=1)
    values = CPC.values(s.log.pctr)
    budget = window_budget(s.log, 1 / 8)
    strat = fit_ortb(values, s.log.market_price, budget, kind=kind)
    assert strat.name == kind
    assert _spend(strat, values, s.log.market_price) == pytest.approx(budget, rel=1e-3)


def test_lagrangian_lambda_zero_when_budget_does_not_bind_else_spends_it():
    s = synthetic_auctions(50_000, seed=2)
    values = CPC.values(s.log.pctr)
    assert fit_lagrangian_lambda(values, s.log.market_price, 1e12) == Lagrangian(0.0)
    budget = window_budget(s.log, 1 / 16)
    lag = fit_lagrangian_lambda(values, s.log.market_price, budget)
    assert lag.lam > 0
    assert _spend(lag, values, s.log.market_price) == pytest.approx(budget, rel=1e-3)


def test_linear_base_bid_is_the_best_on_its_grid_for_clicks():
    s = synthetic_auctions(50_000, seed=3)
    values = CPC.values(s.log.pctr)
    budget = window_budget(s.log, 1 / 8)
    lin = fit_linear_base_bid(values, s.log.market_price, s.log.click, budget)
    assert lin.avg_value == pytest.approx(values.mean())
    best = replay(s.log, lin, budget, CPC).clicks
    for k in (0.5, 0.8, 1.25, 2.0):
        other = Linear(lin.base_bid * k, lin.avg_value)
        assert replay(s.log, other, budget, CPC).clicks <= best


def test_every_name_fits_and_unknown_names_are_refused():
    s = synthetic_auctions(5000, seed=4)
    values = CPC.values(s.log.pctr)
    budget = window_budget(s.log, 1 / 4)
    for name in ("const", "rand", "lin", "value", "ortb1", "ortb2", "lagrangian"):
        strat = fit_strategy(name, values, s.log.market_price, s.log.click, budget)
        assert np.all(np.isfinite(bid_array(strat, values)))
    with pytest.raises(ValueError, match=r"unknown strategy 'nope'"):
        fit_strategy("nope", values, s.log.market_price, s.log.click, budget)
    with pytest.raises(ValueError, match=r"^budget:"):
        fit_ortb(values, s.log.market_price, 0.0)
    with pytest.raises(ValueError, match=r"^market_price:"):
        fit_lagrangian_lambda(values, np.array([]), 1.0)


def test_max_clicks_lagrangian_fits_its_scale_and_a_starved_one_is_reported():
    """The issue's trap: value = pCTR x 1 CPM sits far below the market. With a target goal the
    Lagrangian cannot bid above the value (lambda at its bound 0, reported); with max_clicks the
    value has no money scale, so lambda goes below 0 and the budget is spent."""
    s = synthetic_auctions(50_000, seed=2)
    m = s.log.market_price
    budget = window_budget(s.log, 1 / 16)
    starved = fit_lagrangian_lambda(goal_value("cpc", 1.0).values(s.log.pctr), m, budget)
    assert starved == Lagrangian(0.0)
    assert "bound 0" in at_bound(starved, m)
    clicks = goal_value("max_clicks", None).values(s.log.pctr)
    fitted = fit_lagrangian_lambda(clicks, m, budget, scale_free=True)
    assert -1.0 < fitted.lam < 0.0 and at_bound(fitted, m, scale_free=True) == ""
    assert _spend(fitted, clicks, m) == pytest.approx(budget, rel=1e-3)
    assert at_bound(Linear(1e9, 1.0), m).startswith("its bid level is at the top")
    assert at_bound(fit_linear_base_bid(clicks, m, s.log.click, budget), m) == ""
