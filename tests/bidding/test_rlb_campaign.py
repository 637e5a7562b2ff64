"""An rlb campaign of the campaigns file (bidding/rlb_campaign.py): its settings refused by name,
no bid before its table is solved, and, solved, the same bid as `bid_with_state` on the
campaign's day and spend (the function the episode replay is held to in test_stateful.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bidding.campaign_fx import load_in_account_currency
from bidding.campaigns import Campaign, CampaignError, load_campaigns
from bidding.fx import parse_fx
from bidding.pacing import PacingState, local_day
from bidding.rlb_campaign import (
    PENDING,
    PRICE_UNITS,
    RLB_NOT_READY,
    RlbBidder,
    market_from_json,
    solve_campaign,
)
from bidding.selection import CampaignState, select
from bidding.stateful import bid_with_state
from bidding.strategies import INVALID_VALUE, bid_one

RLB = """
[[campaigns]]
id = "r1"
goal = "cpc"
target = 0.5
max_bid = 9.0
daily_budget = 2.0
strategy = "rlb"
rlb = { market = "m.json", avg_ctr = 0.004, auctions_per_day = 2000, horizon = 60, grid = 128 }
creatives = ["cr"]
"""
RLB_LINE = next(line for line in RLB.splitlines(keepends=True) if line.startswith("rlb = "))
# market prices in [1, 7) CPM: an rlb bid never needs more than 7, whatever the value
MARKET: dict[str, Any] = {"market_price_counts": [0, 5, 9, 7, 4, 2, 1], "step": 1.0}
WHEN = datetime(2025, 6, 2, 15, 0, tzinfo=UTC)
NOW = WHEN.timestamp()


def _solved(text: str = RLB, market: dict[str, Any] = MARKET) -> Campaign:
    c = load_campaigns(text)["r1"]
    assert c.rlb is not None
    table = solve_campaign(c.rlb, c.goal_value, c.daily_budget, market_from_json(market))
    c.attach_rlb(RlbBidder(table, c.daily_budget, c.rlb.auctions_per_day, c.tz))
    return c


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('rlb = { market = "m.json", ', "rlb = { ", "rlb.market: required"),
        ("auctions_per_day = 2000", "auctions_per_day = 0", "rlb.auctions_per_day: must be >= 1"),
        ("auctions_per_day = 2000", "auctions_per_day = 1.5", "rlb.auctions_per_day: must be an"),
        ("horizon = 60", "horizon = 0", "rlb.horizon: must be >= 1"),
        ("grid = 128", "grid = 4", "rlb.grid: must be >= 16"),
        ("avg_ctr = 0.004", "avg_ctr = 2.0", "rlb.avg_ctr: must be <= 1"),
        ("avg_ctr = 0.004", "avg_ctr = 0.004, spend = 3", "rlb.spend: unknown field"),
        ("avg_ctr = 0.004, ", "", "rlb.avg_ctr: required for goal 'cpc'"),
        ('goal = "cpc"', 'goal = "cpa"', "rlb.avg_cvr: required for goal 'cpa'"),
        ('strategy = "rlb"', 'strategy = "value"', "rlb: only for strategy 'rlb'"),
        ("rlb = {", "strategy_params = { lam = 1 }\nrlb = {", "strategy_params: rlb takes none"),
        (RLB_LINE, "", "rlb: required for strategy 'rlb'"),
    ],
)
def test_bad_rlb_settings_name_the_campaign_and_field(old: str, new: str, message: str) -> None:
    assert old in RLB
    with pytest.raises(CampaignError) as info:
        load_campaigns(RLB.replace(old, new), "c.toml")
    assert any(line.startswith("c.toml: campaign 'r1': ") for line in info.value.errors)
    assert any(message in line for line in info.value.errors), info.value.errors


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "file: expected a JSON object"),
        ({"step": 1.0}, "market_price_counts_train: required"),
        ({"market_price_counts": []}, "market_price_counts: required, a non-empty list"),
        ({"market_price_counts": [1, -2]}, r"market_price_counts\[1\]: not a count >= 0: -2"),
        ({"market_price_counts": [1, "x"]}, r"market_price_counts\[1\]: not a count"),
        ({"market_price_counts": [0, 0]}, "market_price_counts: all zero"),
        ({"market_price_counts": [1], "step": 0}, "step: must be a number > 0, got 0"),
        ({"market_price_counts": [1], "smoothing": -1}, "smoothing: must be a number >= 0"),
    ],
)
def test_bad_market_histogram_names_the_field(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        market_from_json(data)


def test_market_histogram_formats_and_currency() -> None:
    m = market_from_json(MARKET)
    assert m.step == 1.0 and m.pdf.shape == (7,) and m.pdf.sum() == pytest.approx(1.0)
    assert m.pdf[0] > 0  # smoothed over the support: an unseen price is not certain to lose
    bench_file = market_from_json({"cpm_train": 1.0, "market_price_counts_train": [1, 3]})
    assert bench_file.step == 1.0 and bench_file.pdf[1] > bench_file.pdf[0]
    assert market_from_json(MARKET, rate=1.25).step == 1.25


def test_unsolved_rlb_campaign_never_bids() -> None:
    c = load_campaigns(RLB)["r1"]
    assert c.rlb_bidder is PENDING and c.bid_strategy is PENDING
    d = select([c], {"event_time": WHEN, "channel": "web"}, {("r1", "cr"): (0.004, 0.0)})
    assert (d.bid, d.reason) == (False, RLB_NOT_READY)
    assert bid_one(c.bid_strategy, 2.0) == (0.0, INVALID_VALUE)  # the static path refuses too


def _state(c: Campaign, spent: float, now: float = NOW) -> PacingState:
    """The day's pacing state in price units, built here independently of RlbBidder."""
    start, length = local_day(now, c.tz)
    return PacingState(c.daily_budget * 1000.0, start, length, spent * 1000.0)


@pytest.mark.parametrize("spent", [0.0, 0.3, 1.2, 1.99])
@pytest.mark.parametrize("pctr", [0.001, 0.004, 0.02])
def test_selection_bids_bid_with_state_on_the_day_and_spend(spent: float, pctr: float) -> None:
    c = _solved()
    assert c.rlb is not None
    req = {"event_time": WHEN, "channel": "web"}
    # the pacing multiplier is not applied: rlb paces itself
    states = {"r1": CampaignState(0.5, c.daily_budget - spent)}
    d = select([c], req, {("r1", "cr"): (pctr, 0.0)}, states=states, now=NOW)
    value = c.goal_value.value(pctr)
    want = bid_with_state(c.bid_strategy, value, _state(c, spent), NOW, c.rlb.auctions_per_day)
    assert (d.price, d.reason) == want
    assert want[0] <= 7.0  # beats the market's top bin at most, whatever the value (up to 10)


def test_rlb_bid_moves_with_budget_and_time_left() -> None:
    c = _solved()
    b = c.rlb_bidder
    assert isinstance(b, RlbBidder)
    value = c.goal_value.value(0.004)
    start, length = local_day(NOW, c.tz)
    rich = b.bid(value, 2.0, start + 0.9 * length)[0]  # whole budget, a tenth of the day left
    poor = b.bid(value, 0.2, start + 0.1 * length)[0]  # a tenth left, most of the day to go
    assert rich > poor > 0.0
    assert b.bid(value, 0.0, NOW) == (0.0, "budget_spent")
    assert b.bid(value, 2.0, start + length - 1e-3)[0] <= 2.0 * PRICE_UNITS  # capped by budget
    # no snapshot yet (DEFAULT_STATE's infinite budget): bids as with the whole day's budget
    assert b.bid(value, math.inf, NOW) == b.bid(value, 2.0, NOW)


def test_the_day_follows_the_campaign_timezone_and_rolls_over() -> None:
    c = _solved(RLB.replace('strategy = "rlb"', 'strategy = "rlb"\ntimezone = "Asia/Tokyo"'))
    b = c.rlb_bidder
    assert isinstance(b, RlbBidder)
    first = b.state(1.0, NOW)
    assert (first.start, first.length) == local_day(NOW, c.tz)
    nxt = b.state(1.0, first.start + first.length + 5.0)
    assert nxt.start == first.start + first.length and nxt.spent == pytest.approx(1000.0)


def test_rule_multiply_scales_the_value_and_set_stays_fixed() -> None:
    text = RLB + (
        '[[campaigns.rules]]\nwhen = { segment = "vip" }\nthen = { multiply = 2.0 }\n'
        '[[campaigns.rules]]\nwhen = { segment = "fixed" }\nthen = { set = 1.5 }\n'
    )
    c = _solved(text)
    b = c.rlb_bidder
    assert isinstance(b, RlbBidder)
    scores = {("r1", "cr"): (0.003, 0.0)}
    states = {"r1": CampaignState(1.0, 1.0)}
    v = c.goal_value.value(0.003)

    def price(segment: str) -> float:
        req = {"event_time": WHEN, "channel": "web", "user_segments": [segment]}
        return select([c], req, scores, states=states, now=NOW).price

    assert price("vip") == b.bid(2.0 * v, 1.0, NOW)[0] != b.bid(v, 1.0, NOW)[0]
    assert price("fixed") == 1.5


def test_converted_rlb_campaign_bids_scale_with_the_rate() -> None:
    """As for every configurable strategy (test_campaign_fx.py): budget, target and the
    market's prices all in euros, converted at 1.25, give the same bids times 1.25."""
    fx = parse_fx("date,base,currency,rate\n2025-06-06,EUR,USD,1.25\n")
    text = RLB.replace('goal = "cpc"', 'currency = "EUR"\ngoal = "cpc"')
    own = _solved(text)
    conv = load_in_account_currency(text, "c.toml", "USD", fx)["r1"]
    assert conv.rlb is not None and conv.fx is not None
    market = market_from_json(MARKET, rate=conv.fx.rate)
    table = solve_campaign(conv.rlb, conv.goal_value, conv.daily_budget, market)
    conv.attach_rlb(RlbBidder(table, conv.daily_budget, conv.rlb.auctions_per_day, conv.tz))
    for pctr, left in ((0.002, 2.0), (0.004, 1.0), (0.01, 0.3)):
        mine = own.rlb_bidder.bid(own.goal_value.value(pctr), left, NOW)[0]  # type: ignore[union-attr]
        theirs = conv.rlb_bidder.bid(conv.goal_value.value(pctr), left * 1.25, NOW)[0]  # type: ignore[union-attr]
        assert mine > 0 and theirs == pytest.approx(mine * 1.25, rel=1e-9)


def test_the_table_is_solved_for_the_day_budget_per_auction() -> None:
    c = _solved()
    assert c.rlb is not None
    t = c.bid_strategy.table  # type: ignore[attr-defined]
    assert t.horizon == 60 and t.budget == pytest.approx(2.0 * 1000 * 60 / 2000)
    assert np.all(np.diff(t.values[-1]) >= -1e-12)  # V non-decreasing in budget
    few = _solved(RLB.replace("auctions_per_day = 2000", "auctions_per_day = 10"))
    assert few.bid_strategy.table.horizon == 10  # type: ignore[attr-defined]


@settings(max_examples=150, deadline=None)
@given(
    left=st.floats(-1.0, 3.0),
    when=st.floats(0.0, 1.0),
    floor=st.floats(0.0, 5.0),
    max_bid=st.floats(0.01, 20.0),
)
def test_the_service_bid_keeps_the_strategy_contract(
    left: float, when: float, floor: float, max_bid: float
) -> None:
    """The checks test_strategy_contract.py makes of every strategy, on the service's path:
    finite, >= 0, capped by the max bid and by what is left, floor kept, monotone in value,
    nothing once the budget is spent."""
    b = SOLVED.rlb_bidder
    assert isinstance(b, RlbBidder)
    start, length = local_day(NOW, SOLVED.tz)
    now = start + when * length * 0.999
    values = [SOLVED.goal_value.value(p) for p in (0.0, 0.0005, 0.002, 0.004, 0.01, 0.05)]
    bids = [b.bid(v, left, now, floor=floor, max_bid=max_bid) for v in values]
    prices = [p for p, _ in bids]
    assert all(math.isfinite(p) and p >= 0.0 for p in prices)
    if left <= 0:
        assert all(r == "budget_spent" for _, r in bids)
    assert all(p <= min(max_bid, max(left, 0.0) * PRICE_UNITS) for p in prices)
    assert all(p == 0.0 or p >= floor for p in prices)
    assert prices == sorted(prices)


SOLVED = _solved()
