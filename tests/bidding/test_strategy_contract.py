"""Every strategy, through the same checks, on both the serving (scalar) and replay (array) path.

Adding a strategy to STRATEGIES without an instance here fails `test_every_strategy_is_checked`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bidding.goals import goal_value
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

INSTANCES = [
    Constant(12.0),
    RandomBid(0.0, 80.0, seed=3),
    Linear(base_bid=40.0, avg_value=20.0),
    Value(),
    Ortb1(c=40.0, lam=0.05),
    Ortb2(c=40.0, lam=0.05),
    Lagrangian(lam=0.4),
]
IDS = [s.name for s in INSTANCES]
GOAL = goal_value("cpc", 10.0)  # value = pCTR x 10,000 CPM


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
