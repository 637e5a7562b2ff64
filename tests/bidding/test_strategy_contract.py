"""Every strategy, through the same checks, on both the serving (scalar) and replay (array) path.

Adding a strategy to STRATEGIES without an instance here fails `test_every_strategy_is_checked`.
rlb also bids on the state (auctions left, budget left): its own checks at the end run the same
properties over that state, through `bid_one(..., auctions_left=...)` (what serving calls).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bidding.goals import goal_value
from bidding.rlb import Rlb, fit_rlb, market_from_prices
from bidding.strategies import (
    BELOW_FLOOR,
    BUDGET_SPENT,
    INVALID_VALUE,
    STRATEGY_NAMES,
    Constant,
    Lagrangian,
    Linear,
    Ortb1,
    Ortb2,
    RandomBid,
    Value,
    bid_array,
    bid_one,
)
from bidding.winrate import WinRateModel

GOAL = goal_value("cpc", 10.0)  # value = pCTR x 10,000 CPM


def _rlb() -> Rlb:
    """Solved on a log-normal market around 30 CPM for episodes of 60 auctions, budget 600."""
    rng = np.random.default_rng(5)
    market = market_from_prices(np.round(rng.lognormal(math.log(30.0), 0.6, 20_000)))
    values = GOAL.values(rng.beta(1.0, 300.0, 20_000))
    return fit_rlb(values, market, 60, 600.0)


RLB = _rlb()

INSTANCES = [
    Constant(12.0),
    RandomBid(0.0, 80.0, seed=3),
    Linear(base_bid=40.0, avg_value=20.0),
    Value(),
    Ortb1(c=40.0, lam=0.05),
    Ortb2(c=40.0, lam=0.05),
    Lagrangian(lam=0.4),
    RLB,
]
IDS = [s.name for s in INSTANCES]


def _curve():
    rng = np.random.default_rng(0)
    m = rng.lognormal(math.log(30.0), 0.6, 5000)
    b = rng.lognormal(math.log(30.0), 0.6, 5000)
    won = b > m
    model = WinRateModel().fit(b, won, np.where(won, m, np.nan), np.full(5000, "second"))
    return model.curve()


CURVE = _curve()


def test_every_strategy_is_checked():
    assert sorted(IDS) == sorted(STRATEGY_NAMES)


def _deterministic(s) -> bool:
    return s.name != "random"


probs = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40)
prices = st.floats(0.0, 200.0)


@pytest.mark.parametrize("strategy", INSTANCES, ids=IDS)
@pytest.mark.parametrize("curve", [None, CURVE], ids=["second", "first"])
@settings(max_examples=60, deadline=None)
@given(pctr=probs, floor=prices, max_bid=st.floats(0.01, 300.0), mult=st.floats(0.05, 5.0))
def test_bids_are_finite_nonnegative_capped_and_above_floor(
    strategy, curve, pctr, floor, max_bid, mult
):
    values = GOAL.values(np.asarray(pctr))
    kw = {"floor": floor, "max_bid": max_bid, "multiplier": mult, "curve": curve}
    arr = bid_array(strategy, values, **kw)
    one = np.array([bid_one(strategy, float(v), **kw)[0] for v in values])
    for bids in (arr, one):
        assert np.all(np.isfinite(bids))
        assert np.all(bids >= 0.0)
        assert np.all(bids <= max_bid)
        assert np.all((bids == 0.0) | (bids >= floor))
    if _deterministic(strategy):
        np.testing.assert_array_equal(arr, one)  # one bid function: serving == replay
    if curve is not None:  # shading never bids above the unshaded (truthful) price
        truthful = bid_array(strategy, values, max_bid=max_bid, multiplier=mult)
        assert np.all(arr <= truthful + 1e-9)


@pytest.mark.parametrize("strategy", INSTANCES, ids=IDS)
@pytest.mark.parametrize("curve", [None, CURVE], ids=["second", "first"])
@settings(max_examples=60, deadline=None)
@given(pctr=probs, bump=probs, floor=prices, max_bid=st.floats(0.01, 300.0))
def test_monotone_non_decreasing_in_pctr(strategy, curve, pctr, bump, floor, max_bid):
    p = np.asarray(pctr)
    q = np.minimum(p + np.resize(np.asarray(bump), p.shape), 1.0)  # q >= p elementwise
    kw = {"floor": floor, "max_bid": max_bid, "curve": curve}
    low = bid_array(strategy, GOAL.values(p), **kw)
    high = bid_array(strategy, GOAL.values(q), **kw)  # same length, same seed: same draws
    assert np.all(high >= low - 1e-9 * np.maximum(low, 1.0))
    if _deterministic(strategy):
        order = np.argsort(p, kind="stable")
        sorted_bids = bid_array(strategy, GOAL.values(p[order]), **kw)
        assert np.all(np.diff(sorted_bids) >= -1e-9 * np.maximum(sorted_bids[1:], 1.0))


@pytest.mark.parametrize("strategy", INSTANCES, ids=IDS)
@pytest.mark.parametrize("left", [0.0, -5.0])
def test_no_bid_when_budget_is_spent(strategy, left):
    values = GOAL.values(np.linspace(0.0, 0.05, 50))
    assert np.all(bid_array(strategy, values, budget_left=left) == 0.0)
    for v in values:
        assert bid_one(strategy, float(v), budget_left=left) == (0.0, BUDGET_SPENT)


@pytest.mark.parametrize("strategy", INSTANCES, ids=IDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0])
def test_non_finite_or_negative_value_is_no_bid(strategy, bad):
    assert bid_one(strategy, bad, max_bid=50.0) == (0.0, INVALID_VALUE)
    arr = bid_array(strategy, np.array([bad, 1.0, bad]), max_bid=50.0)
    assert arr[0] == 0.0 and arr[2] == 0.0 and np.isfinite(arr[1])


@pytest.mark.parametrize("strategy", INSTANCES, ids=IDS)
def test_below_floor_is_no_bid_with_reason(strategy):
    price, reason = bid_one(strategy, 30.0, floor=1e6, max_bid=1e7)
    assert (price, reason) == (0.0, BELOW_FLOOR)
    # a max bid under the floor can never clear it either
    assert bid_one(strategy, 30.0, floor=10.0, max_bid=5.0) == (0.0, BELOW_FLOOR)


def test_overflowing_price_is_no_bid_not_capped():
    # value / lambda overflowing to inf must not silently become the max bid
    price, reason = bid_one(Ortb1(c=1.0, lam=1e-308), 1e300, max_bid=50.0)
    assert (price, reason) == (0.0, INVALID_VALUE)
    assert bid_array(Ortb1(c=1.0, lam=1e-308), np.array([1e300]), max_bid=50.0)[0] == 0.0


def test_pacing_multiplier_scales_before_cap():
    assert bid_one(Value(), 10.0, multiplier=0.5) == (5.0, "")
    assert bid_one(Value(), 10.0, multiplier=3.0, max_bid=20.0) == (20.0, "")


def test_random_scalar_path_stays_in_range():
    s = RandomBid(5.0, 6.0, seed=1)
    draws = [bid_one(s, 1.0)[0] for _ in range(200)]
    assert min(draws) >= 5.0 and max(draws) <= 6.0 and len(set(draws)) > 100


states = st.tuples(st.integers(1, 200), st.floats(0.0, 2_000.0))


@settings(max_examples=200, deadline=None)
@given(pctr=probs, state=states, floor=st.floats(0.0, 60.0), max_bid=st.floats(0.01, 300.0))
def test_rlb_on_any_state_is_capped_by_budget_left_and_monotone(pctr, state, floor, max_bid):
    t, left = state
    values = np.sort(GOAL.values(np.asarray(pctr)))
    kw = {"floor": floor, "max_bid": max_bid, "budget_left": left, "auctions_left": t}
    bids = np.array([bid_one(RLB, float(v), **kw)[0] for v in values])
    assert np.all(np.isfinite(bids)) and np.all(bids >= 0.0)
    assert np.all(bids <= min(max_bid, left)) if left > 0 else np.all(bids == 0.0)
    assert np.all((bids == 0.0) | (bids >= floor))
    assert np.all(np.diff(bids) >= 0.0)  # monotone in value at a fixed state
    for v, b in zip(values.tolist(), bids.tolist(), strict=True):  # one bid function
        p = min(RLB.price_at(v, t, left), max_bid) if left > 0 else 0.0
        assert b == (p if p >= floor and p > 0 else 0.0)


@pytest.mark.parametrize("left", [0.0, -5.0])
def test_rlb_no_bid_when_budget_is_spent_at_any_state(left):
    for t in (1, 30, 60, 500):
        assert bid_one(RLB, 80.0, budget_left=left, auctions_left=t) == (0.0, BUDGET_SPENT)
        assert RLB.price_at(80.0, t, left) == 0.0
    assert RLB.price_at(80.0, 0, 100.0) == 0.0  # the episode is over


def test_rlb_without_state_bids_as_at_the_episode_start():
    values = GOAL.values(np.linspace(0.0, 0.05, 30))
    start = [RLB.price_at(float(v), 60, 600.0) for v in values]
    assert [bid_one(RLB, float(v))[0] for v in values] == start
    np.testing.assert_array_equal(bid_array(RLB, values), start)
