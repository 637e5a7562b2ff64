from __future__ import annotations

import math

import numpy as np
import pytest

from bidding.pacing import (
    DAY,
    DEFAULT_TRAFFIC,
    PidGains,
    even_plan,
    local_day,
    new_state,
    step,
    traffic_plan,
)
from tests.helpers.pacing_day import simulate_day


@pytest.mark.parametrize("overspend", [4.0, 2.0, 1.2, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_day_spends_95_to_100_percent_and_lasts_past_90_percent_of_the_day(overspend, seed):
    day = simulate_day(overspend=overspend, seed=seed, auctions=100_000)
    assert 0.95 * day.budget <= day.spend <= day.budget + day.max_bid_seen
    assert day.exhausted_share is None or day.exhausted_share >= 0.90


def test_unpaced_day_would_fail_so_the_check_means_something():
    frozen = PidGains(kp=0.0, ki=0.0)  # multiplier stays 1: bid the value all day
    day = simulate_day(overspend=2.0, seed=0, auctions=100_000, gains=frozen)
    assert day.exhausted_share is not None and day.exhausted_share < 0.8


def test_step_moves_multiplier_toward_plan_and_respects_bounds():
    plan = even_plan()
    s0 = new_state(100.0, start=0.0)
    behind = step(s0, DAY / 2, 10.0, plan)  # planned 50, spent 10
    ahead = step(s0, DAY / 2, 90.0, plan)
    assert behind.multiplier > 1.0 > ahead.multiplier
    assert behind.spent == 10.0 and behind.last_update == DAY / 2
    assert s0.multiplier == 1.0 and math.isnan(s0.last_update)  # frozen: old state unchanged
    g = PidGains(kp=1e6, ki=1e6, min_multiplier=0.1, max_multiplier=3.0)
    assert step(s0, DAY / 2, 0.0, plan, g).multiplier == pytest.approx(3.0)
    assert step(s0, DAY / 2, 100.0, plan, g).multiplier == pytest.approx(0.1)
    assert ahead.lam == pytest.approx(1.0 / ahead.multiplier - 1.0)


def test_plans_even_and_shaped():
    even = even_plan()
    assert even.fraction(0.0) == 0.0 and even.fraction(1.0) == 1.0
    assert even.fraction(0.25) == pytest.approx(0.25)
    shaped = traffic_plan(DEFAULT_TRAFFIC)
    assert shaped.fraction(0.25) < 0.25 < shaped.fraction(0.9)  # quiet night, busy evening
    grid = np.linspace(0, 1, 500)
    assert np.all(np.diff([shaped.fraction(t) for t in grid]) >= 0)


@pytest.mark.parametrize("weights", [(), (1.0, -1.0), (0.0, 0.0), (1.0, math.nan)])
def test_bad_plan_is_refused(weights):
    with pytest.raises(ValueError, match=r"^plan:"):
        traffic_plan(weights)


def test_bad_state_is_refused():
    with pytest.raises(ValueError, match=r"^budget:"):
        new_state(0.0, 0.0)
    with pytest.raises(ValueError, match=r"^length:"):
        new_state(10.0, 0.0, length=-1.0)


def test_no_bids_after_the_budget_runs_out():
    day = simulate_day(overspend=3.0, seed=3, auctions=50_000, gains=PidGains(kp=0.0, ki=0.0))
    run = day.run
    assert run.exhausted_at is not None
    spent_by = np.cumsum(run.cost)
    last_paid = int(np.flatnonzero(run.cost > 0)[-1])
    assert spent_by[last_paid - 1] < day.budget <= spent_by[last_paid]
    assert np.all(run.bids[last_paid + 1 :] == 0.0)


def test_local_day_follows_the_campaign_timezone_and_dst():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    noon = datetime(2026, 3, 29, 12, 0, tzinfo=paris).timestamp()  # clocks go forward
    start, length = local_day(noon, paris)
    assert start == datetime(2026, 3, 29, tzinfo=paris).timestamp()
    assert length == 23 * 3600
    utc = ZoneInfo("UTC")
    assert local_day(noon, utc)[1] == DAY
