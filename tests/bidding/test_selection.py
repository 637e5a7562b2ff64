from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from bidding.campaigns import Campaign, load_campaigns
from bidding.rules import RuleContext, parse_ip
from bidding.selection import (
    NO_ALLOWED_CREATIVE,
    NO_CAMPAIGNS,
    NO_FITTING_CREATIVE,
    RULE_NO_BID,
    CampaignState,
    Impression,
    Slot,
    decide,
    prepare,
    select,
    to_score,
)
from bidding.strategies import BELOW_FLOOR, BUDGET_SPENT, INVALID_VALUE, bid_one
from bidding.targeting import CHANNEL_NOT_TARGETED, FREQUENCY_CAP_REACHED
from bidding.winrate import WinCurve

WHEN = datetime(2025, 6, 2, 23, 30, tzinfo=UTC)  # Monday; 19:30 in New York
REQUEST: dict[str, Any] = {
    "event_time": WHEN,
    "channel": "web",
    "country": "FR",
    "device_type": "mobile",
    "publisher": "news.example",
    "ip": "198.51.100.0",
    "user_segments": ["sports"],
    "floor_price": 0.5,
    "auction_type": "second",
}
# goal cpc with target 1.0 and the value strategy: price (CPM) = pCTR x 1000
BASE: dict[str, Any] = dict(goal="cpc", target=1.0, max_bid=10.0, daily_budget=100.0)


def _campaign(cid: str = "c1", creatives: Any = ("a", "b"), **extra: Any) -> Campaign:
    return Campaign(**{**BASE, "id": cid, "creatives": creatives, **extra})


def _scores(**pctr: float) -> dict[tuple[str, str], tuple[float, float]]:
    """{"c1_a": 0.004} -> {("c1", "a"): (0.004, 0.1)}"""
    return {tuple(k.split("_")): (v, 0.1) for k, v in pctr.items()}  # type: ignore[misc]


def test_best_creative_and_highest_campaign_win() -> None:
    c1, c2 = _campaign("c1"), _campaign("c2")
    d = select([c1, c2], REQUEST, _scores(c1_a=0.003, c1_b=0.006, c2_a=0.007, c2_b=0.001))
    assert d.bid and d.reason == ""
    assert (d.campaign_id, d.creative_id, d.price) == ("c2", "a", pytest.approx(7.0))
    w = d.winner
    assert w is not None
    assert (w.pctr, w.pcvr, w.expected_value, w.propensity, w.rule) == (
        0.007,
        0.1,
        pytest.approx(7.0),
        1.0,
        None,
    )
    assert [(r.campaign_id, r.creative_id) for r in d.results] == [("c1", "b"), ("c2", "a")]
    assert d.results[0].price == pytest.approx(6.0)


def test_ties_go_to_the_campaign_listed_first() -> None:
    c1, c2 = _campaign("c1"), _campaign("c2")
    scores = _scores(c1_a=0.005, c1_b=0.001, c2_a=0.005, c2_b=0.001)
    assert select([c1, c2], REQUEST, scores).campaign_id == "c1"
    assert select([c2, c1], REQUEST, scores).campaign_id == "c2"


def test_price_is_the_one_bid_function() -> None:
    c = _campaign(strategy="lagrangian", strategy_params={"lam": 0.25}, max_bid=4.0)
    state = CampaignState(multiplier=0.8, budget_left=50.0)
    for pctr in (0.0001, 0.002, 0.004, 0.02):
        d = select([c], REQUEST, _scores(c1_a=pctr, c1_b=0.0), states={"c1": state})
        expect = bid_one(
            c.bid_strategy,
            c.goal_value.value(pctr),
            floor=0.5,
            max_bid=4.0,
            budget_left=50.0,
            multiplier=0.8,
        )
        assert (d.results[0].price, d.results[0].reason) == expect


RULED = """
[[campaigns]]
id = "c1"
goal = "cpc"
target = 1.0
max_bid = 10.0
daily_budget = 100.0
timezone = "America/New_York"
creatives = ["a", "b", "c"]

[[campaigns.rules]]
name = "evening"
when = { hour = "19..20", segment = "sports", pctr = { min = 0.005 } }
then = { creatives = ["b", "c"], multiply = 2.0 }

[[campaigns.rules]]
name = "blocked net"
when = { ip = "203.0.113.0/24" }
then = { no_bid = true }

[[campaigns.rules]]
name = "fixed"
when = { country = "DE" }
then = { set = 4.0 }

[[campaigns.rules]]
name = "capped"
when = { country = "ES" }
then = { cap = 0.3 }

[[campaigns.rules]]
name = "only z"
when = { country = "IT" }
then = { creatives = ["a"], multiply = 100.0 }
"""


def _ruled() -> Campaign:
    return load_campaigns(RULED)["c1"]


def test_rules_restrict_creatives_before_selection_and_read_the_best_pctr() -> None:
    c = _ruled()
    # a is the best creative (and its pCTR is what the rule reads); the rule keeps b and c only
    d = select([c], REQUEST, _scores(c1_a=0.006, c1_b=0.003, c1_c=0.002))
    assert (d.creative_id, d.winner.rule) == ("b", "evening")  # type: ignore[union-attr]
    assert d.price == pytest.approx(6.0)  # 3.0 x 2
    # if the best creative's pCTR is under the rule's threshold, no rule fires: a wins
    d = select([c], REQUEST, _scores(c1_a=0.004, c1_b=0.003, c1_c=0.002))
    assert (d.creative_id, d.winner.rule, d.price) == ("a", None, pytest.approx(4.0))  # type: ignore[union-attr]


def test_rule_hours_are_in_the_campaigns_timezone() -> None:
    c = _ruled()
    later = {**REQUEST, "event_time": datetime(2025, 6, 3, 1, 30, tzinfo=UTC)}  # 21:30 NY
    d = select([c], later, _scores(c1_a=0.006, c1_b=0.003, c1_c=0.002))
    assert d.winner is not None and d.winner.rule is None


def test_price_actions_apply_before_max_bid_and_floor() -> None:
    c = _ruled()
    s = _scores(c1_a=0.008, c1_b=0.001, c1_c=0.001)
    # multiply 2 on 8.0 -> 16, then the max bid caps it at 10
    s_evening = _scores(c1_a=0.001, c1_b=0.008, c1_c=0.001)
    assert select([c], REQUEST, s_evening).price == pytest.approx(10.0)
    # set replaces the (paced) price: not multiplied by pacing, still capped and floored
    de = {**REQUEST, "country": "DE", "user_segments": []}  # "evening" needs sports
    paced = {"c1": CampaignState(multiplier=0.5)}
    assert select([c], de, s, states=paced).price == pytest.approx(4.0)
    assert select([c], {**de, "floor_price": 4.5}, s).results[0].reason == BELOW_FLOOR
    # cap applies before the floor check
    es = {**de, "country": "ES"}
    assert select([c], es, s).results[0].reason == BELOW_FLOOR
    assert select([c], {**es, "floor_price": 0.1}, s).price == pytest.approx(0.3)
    # a spent budget is a no-bid whatever the rule says
    spent = {"c1": CampaignState(budget_left=0.0)}
    assert select([c], de, s, states=spent).results[0].reason == BUDGET_SPENT
    # a broken score never bids, even at a fixed price
    r = select([c], de, {k: (float("nan"), 0.1) for k in s}).results[0]
    assert r.reason == INVALID_VALUE


def test_multiply_composes_with_pacing() -> None:
    c = _ruled()
    s = _scores(c1_a=0.001, c1_b=0.006, c1_c=0.001)
    d = select([c], REQUEST, s, states={"c1": CampaignState(multiplier=0.5)})
    assert d.winner is not None and d.winner.rule == "evening"
    assert d.price == pytest.approx(6.0 * 0.5 * 2.0)


def test_no_bid_rule_and_empty_restriction() -> None:
    c = _ruled()
    s = _scores(c1_a=0.004, c1_b=0.003, c1_c=0.002)
    d = select([c], {**REQUEST, "ip": "203.0.113.0"}, s)
    assert not d.bid and d.reason == RULE_NO_BID and d.price == 0.0
    assert d.results[0].rule == "blocked net" and d.results[0].creative_id == "a"
    # a rule restricting to creatives that do not fit this slot: nothing left
    fits_bc = Campaign(
        **BASE,
        id="c2",
        creatives=({"id": "a", "channels": ["app"]}, "b"),
        rules=[{"when": {"channel": "web"}, "then": {"creatives": ["a"]}}],
    )
    d = select([fits_bc], REQUEST, _scores(c2_b=0.004))
    assert d.reason == NO_ALLOWED_CREATIVE and d.results[0].rule == "rule 1"


def test_targeting_and_fit_reasons_per_campaign() -> None:
    web_only = _campaign("w", targeting={"channels": ["app"]})
    capped = _campaign("f", frequency_cap={"impressions": 2})
    video = _campaign("v", creatives=[{"id": "x", "format": "video", "duration_s": 30}])
    banner = {"format": "banner", "width": 300, "height": 250}
    ok = _campaign("ok", creatives=[{"id": "a", **banner}, {"id": "b", **banner}])
    shorthand = _campaign("s")  # nothing declared: fine for /v1/bid, never for an exchange slot
    slot = Slot(format="banner", sizes=((300, 250),))
    d = select(
        [web_only, capped, video, shorthand, ok],
        REQUEST,
        _scores(ok_a=0.002, ok_b=0.001),
        campaign_imps={"f": (2, 5)},
        slot=slot,
    )
    assert d.campaign_id == "ok"
    assert d.reasons() == {
        "w": CHANNEL_NOT_TARGETED,
        "f": FREQUENCY_CAP_REACHED,
        "v": NO_FITTING_CREATIVE,
        "s": NO_FITTING_CREATIVE,
    }
    assert select([shorthand], REQUEST, _scores(s_a=0.009, s_b=0.001)).campaign_id == "s"
    d = select([web_only, video], REQUEST, {}, slot=slot)
    assert not d.bid and d.reason == CHANNEL_NOT_TARGETED  # nothing scored: the first reason
    assert select([], REQUEST, {}).reason == NO_CAMPAIGNS


def test_reason_comes_from_the_campaign_that_got_furthest() -> None:
    far = _campaign("far", max_bid=10.0)
    near = _campaign("near", targeting={"countries": ["US"]})
    d = select([near, far], {**REQUEST, "floor_price": 9.0}, _scores(far_a=0.002, far_b=0.001))
    assert d.reason == BELOW_FLOOR


def test_two_phases_equal_one_call() -> None:
    camps = [*load_campaigns(RULED).values(), _campaign("c2")]
    imp = Impression.from_request(REQUEST)
    plans = prepare(camps, imp)
    pairs = to_score(plans)
    assert pairs == [("c1", "a"), ("c1", "b"), ("c1", "c"), ("c2", "a"), ("c2", "b")]
    rng = random.Random(0)
    scores = {p: (rng.random() / 100, 0.1) for p in pairs}
    assert decide(plans, imp, scores) == select(camps, REQUEST, lambda a, b: scores[(a, b)])
    with pytest.raises(ValueError, match="no pCTR/pCVR for campaign 'c2' creative 'b'"):
        decide(plans, imp, {p: v for p, v in scores.items() if p != ("c2", "b")})


def test_event_time_is_required() -> None:
    with pytest.raises(ValueError, match="event_time"):
        select([_campaign()], {**REQUEST, "event_time": None}, {})


def test_first_price_shades_only_in_first_price_auctions() -> None:
    c = _campaign()
    curve = WinCurve(xs=(0.0, 10.0), ys=(0.0, 1.0))
    s = _scores(c1_a=0.008, c1_b=0.0)
    state = {"c1": CampaignState(curve=curve)}
    assert select([c], REQUEST, s, states=state).price == pytest.approx(8.0)
    first = {**REQUEST, "auction_type": "first"}
    assert select([c], first, s, states=state).price == pytest.approx(4.0)  # argmax (8-b)b/10
    assert select([c], first, s).price == pytest.approx(8.0)  # no curve: bid as is


def test_exploration_returns_the_propensity() -> None:
    c = _campaign(exploration="epsilon", epsilon=0.3, creatives=("a", "b", "c"))
    s = _scores(c1_a=0.001, c1_b=0.005, c1_c=0.002)
    rng = random.Random(3)
    picks = [select([c], REQUEST, s, rng=rng).winner for _ in range(6000)]
    freq = Counter(p.creative_id for p in picks if p is not None)
    for p in picks[:20]:
        assert p is not None
        assert p.propensity == pytest.approx(0.1 + (0.7 if p.creative_id == "b" else 0.0))
        assert freq[p.creative_id] / len(picks) == pytest.approx(p.propensity, abs=0.03)


def test_rule_context_matches_what_rules_see() -> None:
    """The context selection builds is the documented one (hour in the campaign's zone)."""
    c = _ruled()
    ctx = RuleContext(REQUEST, 19, 0, frozenset({"sports"}), parse_ip("198.51.100.0"), 0.006, 0.1)
    assert c.compiled_rules.evaluate(ctx).rule == "evening"


def test_time_targeting_reads_the_campaigns_local_time() -> None:
    """prepare() converts the auction time only for campaigns whose targeting reads it: hours,
    weekdays and flight dates in the campaign's timezone; the others bid at any time."""
    ny = dict(timezone="America/New_York")
    evening = _campaign("ev", targeting={"hours": "19..20", "weekdays": [0]}, **ny)
    morning = _campaign("mo", targeting={"hours": "7..9"}, **ny)
    tuesday = _campaign("tu", flight={"start": "2025-06-03"}, **ny)
    anytime = _campaign("any")
    scores = _scores(**{f"{c}_{cr}": 0.004 for c in ("ev", "mo", "tu", "any") for cr in "ab"})
    d = select([evening, morning, tuesday, anytime], REQUEST, scores)  # Mon 19:30 in NY
    assert [r.reason for r in d.results] == [
        "",
        "hour_not_targeted",
        "outside_flight_dates",
        "",
    ]
    later = {**REQUEST, "event_time": datetime(2025, 6, 3, 13, 0, tzinfo=UTC)}  # Tue 9:00 NY
    d = select([evening, morning, tuesday, anytime], later, scores)
    assert [r.reason for r in d.results] == ["hour_not_targeted", "", "", ""]
