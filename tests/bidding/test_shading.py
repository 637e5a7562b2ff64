"""First-price shading: exact on the win curve, same on both paths, and worth doing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bidding.shading import expected_surplus, shade, shade_array
from bidding.strategies import NO_SURPLUS, Value, bid_one
from bidding.winrate import WinRateModel


def _first_price_history(n: int, seed: int):
    """Our past first-price auctions: random exploratory bids, market price never seen."""
    rng = np.random.default_rng(seed)
    market = rng.lognormal(math.log(40.0), 0.5, n)
    bid = rng.lognormal(math.log(40.0), 0.7, n)
    won = bid > market
    model = WinRateModel().fit(bid, won, np.where(won, bid, np.nan), np.full(n, "first"))
    return model.curve()


CURVE = _first_price_history(20_000, seed=11)


def test_shading_earns_more_surplus_than_truthful_and_a_fixed_shade():
    rng = np.random.default_rng(12)
    n = 50_000
    value = rng.lognormal(math.log(55.0), 0.5, n)
    market = rng.lognormal(math.log(40.0), 0.5, n)  # same market, new auctions

    def realised(bids):
        won = bids > market
        return float(np.sum(np.where(won, value - bids, 0.0)))  # first price pays the bid

    shaded = realised(shade_array(value, CURVE))
    truthful = realised(value)
    fixed = realised(0.8 * value)
    assert truthful == pytest.approx(0.0, abs=1e-6)
    assert shaded > fixed * 1.05 > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_argmax_against_brute_force_with_floor_and_max_bid(seed):
    rng = np.random.default_rng(seed)
    for _ in range(150):
        v = float(rng.lognormal(math.log(50.0), 0.8))
        floor = float(rng.uniform(0, 80)) if rng.random() < 0.4 else 0.0
        max_bid = float(rng.uniform(5, 120)) if rng.random() < 0.4 else math.inf
        b = shade(v, CURVE, floor, max_bid)
        hi = min(v, max_bid)
        if hi < floor:
            assert b == 0.0
            continue
        grid = np.linspace(floor, hi, 5001)
        best = max(float(expected_surplus(grid, np.full_like(grid, v), CURVE).max()), 0.0)
        got = float(expected_surplus(np.array([b]), np.array([v]), CURVE)[0])
        assert got >= best - 1e-9
        assert b == 0.0 or floor <= b <= hi


def test_scalar_and_array_paths_agree():
    rng = np.random.default_rng(5)
    v = rng.lognormal(math.log(50.0), 1.0, 4000)
    floor = np.where(rng.random(4000) < 0.3, rng.uniform(0, 90, 4000), 0.0)
    arr = shade_array(v, CURVE, floor, 70.0)
    one = np.array([shade(float(a), CURVE, float(f), 70.0) for a, f in zip(v, floor, strict=True)])
    np.testing.assert_array_equal(arr, one)


def test_no_bid_without_positive_surplus():
    assert shade(10.0, CURVE, floor=10.0) == 0.0  # only the floor is allowed: zero surplus
    assert shade(10.0, CURVE, floor=20.0) == 0.0
    assert shade(0.0, CURVE) == 0.0
    assert bid_one(Value(), 10.0, floor=10.0, curve=CURVE) == (0.0, NO_SURPLUS)


def test_second_price_bids_truthfully_first_price_shades():
    second, _ = bid_one(Value(), 60.0, max_bid=100.0)
    first, reason = bid_one(Value(), 60.0, max_bid=100.0, curve=CURVE)
    assert second == 60.0
    assert reason == "" and 0.0 < first < 60.0
