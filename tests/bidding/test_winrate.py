"""The censored win-rate model against logs whose market price distribution is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bidding.winrate import POOLED, WinRateModel, segment_key, true_lognormal_cdf

MU, SIGMA = math.log(50.0), 0.6


def _log(n: int, seed: int, mu: float = MU, sigma: float = SIGMA):
    rng = np.random.default_rng(seed)
    market = rng.lognormal(mu, sigma, n)
    bid = rng.lognormal(MU, 0.5, n)
    won = bid > market
    return bid, won, market


def _eval_grid(bid):
    return np.quantile(bid, np.linspace(0.05, 0.95, 40))


def test_kaplan_meier_recovers_lognormal_and_naive_is_biased():
    bid, won, market = _log(20_000, seed=1)
    pay = np.where(won, market, np.nan)  # second price: the price is seen only when we win
    model = WinRateModel().fit(bid, won, pay, np.full(bid.shape, "second"))
    grid = _eval_grid(bid)
    truth = true_lognormal_cdf(grid, MU, SIGMA)
    km_err = np.abs(model.win_prob(grid) - truth).max()
    # "ignore lost auctions": the empirical CDF of the prices we happened to see
    seen = np.sort(market[won])
    naive = np.searchsorted(seen, grid) / seen.shape[0]
    assert km_err < 0.03
    assert np.abs(naive - truth).max() > 0.2
    assert np.all(naive >= truth - 0.01)  # biased one way: winning looks cheaper than it is


def test_first_price_wins_as_upper_bounds_recover_the_distribution():
    bid, won, _ = _log(20_000, seed=2)
    # first price: we pay our bid and never see the market price
    model = WinRateModel().fit(bid, won, np.where(won, bid, np.nan), np.full(bid.shape, "first"))
    grid = _eval_grid(bid)
    err = np.abs(model.win_prob(grid) - true_lognormal_cdf(grid, MU, SIGMA)).max()
    assert err < 0.06


def test_mixed_auction_types_and_known_market_prices():
    bid, won, market = _log(20_000, seed=3)
    rng = np.random.default_rng(3)
    at = np.where(rng.random(bid.shape[0]) < 0.5, "first", "second")
    pay = np.where(won & (at == "second"), market, np.where(won, bid, np.nan))
    known = np.where(rng.random(bid.shape[0]) < 0.1, market, np.nan)  # e.g. min-bid-to-win
    model = WinRateModel().fit(bid, won, pay, at, market_price=known)
    grid = _eval_grid(bid)
    assert np.abs(model.win_prob(grid) - true_lognormal_cdf(grid, MU, SIGMA)).max() < 0.03


def test_never_beaten_markets_keep_win_probability_below_one():
    bid, won, market = _log(5000, seed=4)
    market = np.where(np.arange(5000) % 5 == 0, 1e6, market)  # 20% of markets out of reach
    won = bid > market
    model = WinRateModel().fit(bid, won, np.where(won, market, np.nan), np.full(5000, "second"))
    top = model.win_prob_one(1e5)
    assert 0.7 < top < 0.85


def test_segments_fit_separately_with_prefix_then_pooled_fallback():
    b1, w1, m1 = _log(8000, seed=5, mu=math.log(30.0))
    b2, w2, m2 = _log(8000, seed=6, mu=math.log(80.0))
    b3, w3, m3 = _log(50, seed=7)
    bid, won, market = (np.concatenate(x) for x in ((b1, b2, b3), (w1, w2, w3), (m1, m2, m3)))
    seg = np.array(
        [segment_key("web", "exA")] * 8000
        + [segment_key("app", "exB")] * 8000
        + [segment_key("video", "exC")] * 50
    )
    model = WinRateModel(min_segment_size=1000).fit(
        bid, won, np.where(won, market, np.nan), np.full(bid.shape, "second"), segment=seg
    )
    assert {"web", "web|exA", "app", "app|exB", POOLED} <= set(model.curves_)
    assert "video" not in model.curves_ and "video|exC" not in model.curves_
    at = 50.0
    web, app = model.win_prob_one(at, "web|exA"), model.win_prob_one(at, "app|exB")
    assert web == pytest.approx(
        true_lognormal_cdf(np.array([at]), math.log(30), SIGMA)[0], abs=0.04
    )
    assert app == pytest.approx(
        true_lognormal_cdf(np.array([at]), math.log(80), SIGMA)[0], abs=0.04
    )
    assert model.curve("web|exZ") is model.curve("web")  # unseen exchange: channel curve
    assert model.curve("video|exC") is model.curve(POOLED)  # too small: pooled
    assert model.curve("never|seen") is model.curve(None)
    probs = model.win_prob(np.full(3, at), np.array(["web|exA", "app|exB", "video|exC"]))
    assert probs.tolist() == [web, app, model.win_prob_one(at)]


def test_json_round_trip_and_scalar_vector_parity():
    bid, won, market = _log(5000, seed=8)
    model = WinRateModel(max_knots=32).fit(
        bid, won, np.where(won, market, np.nan), np.full(5000, "second")
    )
    d = json.loads(json.dumps(model.to_dict()))
    again = WinRateModel.from_dict(d)
    grid = np.linspace(0.0, 300.0, 997)
    np.testing.assert_array_equal(again.win_prob(grid), model.win_prob(grid))
    scalar = np.array([again.win_prob_one(float(b)) for b in grid])
    np.testing.assert_allclose(scalar, again.win_prob(grid), rtol=0, atol=1e-12)
    assert len(model.curve().xs) <= 32
    assert np.all(np.diff(model.win_prob(grid)) >= 0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"bid": [10.0, -1.0, 5.0]}, r"^bid: 1 row\(s\) .*row 1"),
        ({"won": [1, 2, 0]}, r"^won:"),
        ({"auction_type": ["second", "third", "first"]}, r"^auction_type: .*row 1"),
        ({"paying_price": [math.nan, math.nan, math.nan]}, r"^paying_price: .*row 0"),
        ({"bid": [10.0, 5.0]}, r"^won: expected .* length 2"),
        ({"bid": [0.0, 4.0, 5.0], "auction_type": ["first"] * 3}, r"^bid: .*bid of 0"),
    ],
)
def test_bad_input_names_the_field_and_row(change, match):
    cols = {
        "bid": [10.0, 4.0, 5.0],
        "won": [True, False, False],
        "paying_price": [3.0, math.nan, math.nan],
        "auction_type": ["second"] * 3,
    }
    cols.update(change)
    with pytest.raises(ValueError, match=match):
        WinRateModel().fit(**{k: np.asarray(v) for k, v in cols.items()})


def test_use_before_fit_and_malformed_dict_are_named_errors():
    with pytest.raises(ValueError, match=r"fit"):
        WinRateModel().win_prob_one(1.0)
    with pytest.raises(ValueError, match=r"format"):
        WinRateModel.from_dict({"format": "pickle"})
    bad = {"format": "bidopt.winrate/1", "segments": {"*": {"x": [0, 2, 1], "y": [0, 0.5, 1]}}}
    with pytest.raises(ValueError, match=r"segment '\*'.*increasing"):
        WinRateModel.from_dict(bad)
