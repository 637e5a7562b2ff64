"""Replay: hand-checked outcomes, and the vectorised replay against a per-impression loop over
`bid_one` (the serving path), so both price every auction the same way."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bidding.goals import goal_value
from bidding.grid import replay_grid
from bidding.pacing import DEFAULT_TRAFFIC, traffic_plan
from bidding.replay import (
    make_log,
    parse_budget_fraction,
    replay,
    replay_paced,
    window_budget,
)
from bidding.strategies import Constant, Lagrangian, Linear, Ortb1, Value, bid_one
from bidding.winrate import WinRateModel
from tests.helpers.auctions import synthetic_auctions

CPC = goal_value("cpc", 100.0)  # value = pCTR x 100,000


def test_hand_checked_second_and_first_price_with_floor_and_budget():
    log = make_log(
        pctr=[0.0002, 0.0002, 0.0002, 0.0002, 0.0002],  # value 20 each
        market_price=[10.0, 25.0, 5.0, 8.0, 1.0],
        click=[1, 1, 0, 1, 1],
        auction_type=["second", "second", "first", "second", "second"],
        floor=[0.0, 0.0, 0.0, 15.0, 0.0],
    )
    r = replay(log, Value(), budget=100.0, goal=CPC)
    # won: #0 pays 10, #1 lost (25 > 20), #2 first price pays 20, #3 pays the floor 15, #4 pays 1
    assert (r.bids, r.wins, r.clicks, r.spend) == (5, 4, 3.0, 46.0)
    assert r.exhausted_at is None and r.ecpc == pytest.approx(46.0 / 3)
    assert r.win_rate == pytest.approx(4 / 5) and r.ctr == pytest.approx(3 / 4)
    r = replay(log, Value(), budget=25.0, goal=CPC)  # #2 crosses 25: it is paid, then stop
    assert (r.bids, r.wins, r.spend, r.exhausted_at) == (3, 2, 30.0, 2)
    assert r.exhausted_fraction == pytest.approx(2 / 5)
    assert replay(log, Value(), budget=0.0, goal=CPC).bids == 0


def _loop_replay(log, strategy, budget, goal, max_bid, model=None):
    """The serving path, one impression at a time."""
    spent, wins, clicks, bids = 0.0, 0, 0.0, 0
    for i in range(len(log)):
        value = goal.value(float(log.pctr[i]))
        first = bool(log.first_price[i])
        curve = model.curve(str(log.segment[i])) if (model is not None and first) else None
        price, _ = bid_one(
            strategy, value, floor=float(log.floor[i]), max_bid=max_bid,
            budget_left=budget - spent, curve=curve,
        )  # fmt: skip
        bids += price > 0
        m, f = float(log.market_price[i]), float(log.floor[i])
        if price > 0 and price > m and price >= f:
            spent += price if first else max(m, f)
            wins += 1
            clicks += float(log.click[i])
    return bids, wins, clicks, spent


@pytest.mark.parametrize(
    "strategy", [Value(), Lagrangian(2.0), Ortb1(40.0, 0.5), Linear(30.0, 20.0), Constant(45.0)]
)
def test_vectorised_replay_equals_per_impression_serving_loop(strategy):
    s = synthetic_auctions(6000, seed=4, first_price_share=0.4, floor_share=0.3)
    model = WinRateModel(min_segment_size=500).fit(
        s.log.market_price * np.exp(np.random.default_rng(0).normal(0, 0.3, 6000)),
        np.ones(6000, bool),
        s.log.market_price,
        np.full(6000, "second"),
        segment=s.log.segment,
    )
    budget = window_budget(s.log, 1 / 8)
    r = replay(s.log, strategy, budget, CPC, max_bid=150.0, win_model=model)
    bids, wins, clicks, spent = _loop_replay(s.log, strategy, budget, CPC, 150.0, model)
    assert (r.bids, r.wins, r.clicks) == (bids, wins, clicks)
    assert r.spend == pytest.approx(spent, rel=1e-12)


def test_episodes_are_independent_replays_with_their_budget_share():
    s = synthetic_auctions(10_500, seed=5)
    budget = window_budget(s.log, 1 / 4)
    r = replay(s.log, Lagrangian(1.0), budget, CPC, episode_length=2000)
    assert r.episodes == 6
    parts = [
        replay(s.log.take(slice(a, min(a + 2000, 10_500))), Lagrangian(1.0),
               budget * (min(a + 2000, 10_500) - a) / 10_500, CPC)
        for a in range(0, 10_500, 2000)
    ]  # fmt: skip
    assert r.wins == sum(p.wins for p in parts)
    assert r.spend == pytest.approx(sum(p.spend for p in parts))
    assert r.episodes_exhausted == sum(p.exhausted_at is not None for p in parts)


def test_paced_replay_spends_the_budget_over_the_day_where_static_runs_out():
    s = synthetic_auctions(60_000, seed=6)
    budget = window_budget(s.log, 1 / 16)
    static = replay(s.log, Value(), budget, CPC, max_bid=300.0)
    paced = replay_paced(
        s.log, Value(), budget, CPC, plan=traffic_plan(DEFAULT_TRAFFIC), start=0.0,
        length=86_400.0, max_bid=300.0,
    )  # fmt: skip
    assert static.exhausted_fraction is not None and static.exhausted_fraction < 0.5
    assert 0.95 * budget <= paced.spend <= budget + 300.0
    assert paced.exhausted_fraction is None or paced.exhausted_fraction > 0.9
    assert paced.clicks > static.clicks


def test_log_without_clicks_replays_to_zeros_not_a_crash():
    log = make_log(pctr=[0.1, 0.2], market_price=[1.0, 2.0], click=[0, 0])
    r = replay(log, Value(), 1e9, CPC)
    assert r.clicks == 0 and r.conversions == 0 and r.wins == 2
    assert math.isnan(r.ecpc) and math.isnan(r.ecpa)
    none = replay(log, Constant(0.5), 1e9, CPC)
    assert none.wins == 0 and math.isnan(none.ctr) and none.clicks == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"market_price": None}, r"^market_price: missing price array"),
        ({"pctr": [0.1, 1.5, 0.2]}, r"^pctr: 1 value\(s\) outside \[0, 1\].*row 1"),
        ({"pctr": [0.1, math.nan, 0.2]}, r"^pctr: .*row 1"),
        ({"pcvr": [0.1, 0.2, -0.1]}, r"^pcvr: .*row 2"),
        ({"market_price": [1.0, -2.0, 1.0]}, r"^market_price: .*row 1"),
        ({"click": [0, 1]}, r"^click: expected one value per auction \(3\)"),
        ({"auction_type": ["second", "vickrey", "first"]}, r"^auction_type: .*row 1"),
        ({"time": [0.0, 5.0, 4.0]}, r"^time: 1 value\(s\) go back in time.*row 2"),
    ],
)
def test_bad_log_input_names_the_column(kwargs, match):
    cols = {"pctr": [0.1, 0.2, 0.3], "market_price": [1.0, 2.0, 3.0], "click": [0, 1, 0]}
    cols.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_log(**cols)


@pytest.mark.parametrize("bad", ["0", "0.0", "2", "-1/8", "1/0", "abc", 1.5])
def test_budget_fraction_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match=r"^budget fraction:"):
        parse_budget_fraction(bad)


def test_budget_fraction_forms():
    assert parse_budget_fraction("1/32") == 1 / 32
    assert parse_budget_fraction(" 0.25 ") == 0.25
    assert parse_budget_fraction(1) == 1.0


def test_replay_grid_checks_names_and_fractions_before_any_work():
    s = synthetic_auctions(2000, seed=7)
    fit, test = s.log.split(0.3)
    with pytest.raises(ValueError, match=r"^strategy: unknown strategy 'magic'"):
        replay_grid(fit, test, ["lin", "magic"], ["1/8"], CPC)
    with pytest.raises(ValueError, match=r"^budget fraction:"):
        replay_grid(fit, test, ["lin"], ["1/8", "3/2"], CPC)
    with pytest.raises(ValueError, match=r"^pcvr:"):
        replay(make_log(pctr=[0.1], market_price=[1.0], click=[0]), Value(), 1.0,
               goal_value("cpa", 5.0))  # fmt: skip
    with pytest.raises(ValueError, match=r"^episode_length:"):
        replay(test, Value(), 1.0, CPC, episode_length=0)


def test_replay_grid_fits_on_the_fit_window_and_beats_baselines():
    s = synthetic_auctions(120_000, seed=8)
    fit, test = s.log.split(0.3)
    rows = replay_grid(fit, test, ["constant", "random", "lagrangian", "ortb1"], ["1/8"], CPC)
    by = {name: (strat, res) for name, _, strat, res in rows}
    lag = by["lagrangian"][0]
    fit_spend = replay(fit, lag, math.inf, CPC).spend  # unconstrained spend on the fit window
    assert fit_spend == pytest.approx(window_budget(fit, 1 / 8), rel=1e-3)
    clicks = {k: v[1].clicks for k, v in by.items()}
    assert max(clicks["lagrangian"], clicks["ortb1"]) > max(clicks["constant"], clicks["random"])


def test_replay_grid_fits_lambda_with_the_shading_the_replay_applies():
    """Fitted on unshaded first-price payments, lambda would leave most of the budget unspent
    once the replay shades those bids; the fit bids as the replay does, so spend meets budget."""
    s = synthetic_auctions(60_000, seed=9, first_price_share=0.7)
    fit, test = s.log.split(0.3)
    rng = np.random.default_rng(1)
    model = WinRateModel(min_segment_size=500).fit(
        fit.market_price * np.exp(rng.normal(0, 0.3, len(fit))),
        np.ones(len(fit), bool),
        fit.market_price,
        np.full(len(fit), "second"),
        segment=fit.segment,
    )
    rows = replay_grid(fit, test, ["lagrangian", "ortb1"], ["1/8"], CPC, win_model=model)
    for name, _, strat, _ in rows:
        spent = replay(fit, strat, math.inf, CPC, win_model=model).spend
        assert spent == pytest.approx(window_budget(fit, 1 / 8), rel=1e-3), name
        unshaded = replay(fit, strat, math.inf, CPC).spend
        assert unshaded > 1.1 * spent, (name, unshaded, spent)  # shading mattered here


def test_expected_clicks_sum_the_known_probabilities_over_the_wins():
    log = make_log(
        pctr=[0.1, 0.2, 0.3],
        market_price=[1.0, 5.0, 1.0],
        click=[1, 0, 0],
        expected_click=[0.25, 0.5, 0.125],
    )
    r = replay(log, Constant(2.0), math.inf, CPC)  # wins rows 0 and 2
    assert (r.wins, r.clicks, r.expected_clicks) == (2, 1.0, 0.375)
    assert replay(log.take(slice(1, 3)), Constant(2.0), math.inf, CPC).expected_clicks == 0.125
    without = make_log(pctr=[0.1], market_price=[1.0], click=[0])
    assert replay(without, Constant(2.0), math.inf, CPC).expected_clicks is None
    with pytest.raises(ValueError, match=r"^expected_click: 1 value\(s\) outside \[0, 1\]"):
        make_log(pctr=[0.1], market_price=[1.0], click=[0], expected_click=[1.5])


def test_with_probabilities_shares_the_auctions_and_checks_the_new_ones() -> None:
    from bidding.replay import with_probabilities

    log = make_log(
        pctr=[0.1, 0.2, 0.3], market_price=[1.0, 2.0, 3.0], click=[0, 1, 0], segment=["a", "b", "a"]
    )
    other = with_probabilities(log, [0.5, 0.4, 0.3], [0.05, 0.04, 0.03])
    assert other.pctr.tolist() == [0.5, 0.4, 0.3] and other.pcvr is not None
    assert other.market_price is log.market_price and other.segment is log.segment
    assert log.pctr.tolist() == [0.1, 0.2, 0.3]
    with pytest.raises(ValueError, match="pctr"):
        with_probabilities(log, [0.5, 1.5, 0.3])
    with pytest.raises(ValueError, match="pcvr"):
        with_probabilities(log, [0.5, 0.4, 0.3], [0.1, float("nan"), 0.1])
