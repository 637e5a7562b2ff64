"""An rlb campaign bidding through the real service (uvicorn on a loopback port): its bid is
`bid_with_state` on the service's own state (the day's budget, spend from the budgets, the
clock), the function the episode replay is held to (tests/bidding/test_stateful.py), before and
after a win, and after a restart that rebuilds the spend from the ledger (in process: the
app's own lifespan, to keep to one server start).

The campaign's timezone is one where it is around noon now, so the day is never about to end
(in its last minutes every state bids the market's top, and the checks that the spend matters
could not tell)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bidding.goals import goal_value
from bidding.pacing import PacingState, local_day
from bidding.rlb import Rlb
from bidding.rlb_campaign import RlbConfig, market_from_json, solve_campaign
from bidding.stateful import bid_with_state
from serving.app import create_app
from serving.models.predictor import Predictor
from serving.settings import BidoptSettings
from tests.helpers.serving import run_server
from tests.serving.test_campaign_service import FAST_STATE, imp, win
from tests.serving.test_fx_service import Client

# market prices around 3 CPM, in quarters, none above 6.75
COUNTS = [round(100 * math.exp(-((i - 12) ** 2) / 40)) for i in range(27)]
MARKET: dict[str, Any] = {"market_price_counts": COUNTS, "step": 0.25}
T = 100  # auctions per day: auctions left moves every 864 s, so a request sees one value
SETTINGS: dict[str, Any] = dict(
    market="market.json", avg_ctr=0.004, auctions_per_day=T, horizon=60, grid=128
)
DAILY, MAX_BID = 0.02, 9.0  # 20 CPM-units a day: one win at 8 CPM spends 40% of it
GOALS = {"cpc": 0.5, "cpm": 4.0}  # cpm: the value is the target, whatever the model says


def _midday_zone() -> str:
    """A fixed-offset zone where the local hour is 11-12 now (Etc/GMT+N is UTC-N)."""
    n = datetime.now(UTC).hour - 12
    return f"Etc/GMT{'+' if n >= 0 else '-'}{abs(n)}"


def _campaigns(goal: str, zone: str) -> str:
    settings = "\n".join(f"{k} = {json.dumps(v)}" for k, v in SETTINGS.items())
    return f"""
[[campaigns]]
id = "rlb-web"
goal = "{goal}"
target = {GOALS[goal]}
max_bid = {MAX_BID}
daily_budget = {DAILY}
timezone = "{zone}"
strategy = "rlb"
creatives = ["rlb-cr"]
[campaigns.rlb]
{settings}

[[campaigns]]
id = "lin-web"
goal = "cpc"
target = 0.5
max_bid = {MAX_BID}
daily_budget = 100.0
strategy = "linear"
strategy_params = {{ base_bid = 2.0, avg_value = 2.0 }}
creatives = ["lin-cr"]
"""


def _files(tmp_path: Path, goal: str, zone: str) -> Path:
    (tmp_path / "market.json").write_text(json.dumps(MARKET))
    campaigns = tmp_path / "campaigns.toml"
    campaigns.write_text(_campaigns(goal, zone))
    return campaigns


def _table(goal: str) -> Rlb:
    """The same table, solved here from the same inputs without the service's cache."""
    cfg = RlbConfig(**SETTINGS)
    return solve_campaign(cfg, goal_value(goal, GOALS[goal]), DAILY, market_from_json(MARKET))


def _bid_and_state(
    post: Callable[..., Any], get: Callable[..., Any]
) -> tuple[dict[str, Any], dict[str, Any], float, float]:
    """One bid for rlb-web, the service's state after it, and when it was asked."""
    t0 = time.time()
    r = post("/v1/bid", json={"impressions": [imp()], "campaign_ids": ["rlb-web"]})
    t1 = time.time()
    assert r.status_code == 200, r.text
    status = get("/v1/campaigns").json()
    [entry] = [c for c in status["campaigns"] if c["id"] == "rlb-web"]
    return r.json()["bids"][0], entry, t0, t1


def _replayed(
    table: Rlb, zone: str, value: float, spent: float, t0: float, t1: float
) -> set[float]:
    """bid_with_state at the request's first and last possible moment (auctions left is a
    whole number: the two differ only when the request straddled a change of it)."""
    out = set()
    for now in (t0, t1):
        start, length = local_day(now, ZoneInfo(zone))
        state = PacingState(DAILY * 1000.0, start, length, spent * 1000.0)
        price, reason = bid_with_state(table, value, state, now, T, max_bid=MAX_BID)
        assert reason == ""
        out.add(price)
    return out


@pytest.mark.integration
def test_rlb_campaign_bids_bid_with_state_through_http(
    serving_store: tuple[str, Path], tmp_path: Path
) -> None:
    zone = _midday_zone()
    campaigns = _files(tmp_path, "cpc", zone)
    table = _table("cpc")
    args = ("--campaigns", str(campaigns))
    with run_server(serving_store[0], tmp_path, env=FAST_STATE, args=args) as server:
        status = server.client.get("/v1/campaigns").json()
        assert status["rlb_tables"]["rlb-web"]["horizon"] == 60
        fresh, entry, t0, t1 = _bid_and_state(server.client.post, server.client.get)
        assert fresh["bid"] is True and entry["spend_today"] == 0.0
        value = fresh["expected_value"]  # the model's pCTR x 0.5 x 1000
        assert fresh["price"] in _replayed(table, zone, value, 0.0, t0, t1)
        assert fresh["price"] <= 6.75  # the DP's bid: at most the market's top, whatever the value

        r = server.client.post("/v1/events", json={"events": [win("rlb-w1", "rlb-web", 8.0)]})
        assert r.json()["accepted"] == 1
        after, entry, t0, t1 = _bid_and_state(server.client.post, server.client.get)
        assert entry["spend_today"] == pytest.approx(0.008)
        want = _replayed(table, zone, after["expected_value"], DAILY - entry["budget_left"], t0, t1)
        assert after["price"] in want
        # the spend is in the state: bid_with_state without it would say otherwise
        assert want.isdisjoint(_replayed(table, zone, after["expected_value"], 0.0, t0, t1))


def test_after_a_restart_rlb_bids_on_the_spend_rebuilt_from_the_ledger(
    tmp_path: Path, predictor: Predictor
) -> None:
    """In process (the app's own lifespan, which replays the ledger at start): a win, a new
    app on the same ledger, and the bid goes on from the spend the ledger holds."""
    zone = _midday_zone()
    settings = BidoptSettings(
        tracking_uri=f"sqlite:///{tmp_path / 'absent.db'}",
        campaigns_file=_files(tmp_path, "cpm", zone),
        ledger_dir=tmp_path / "ledger",
    )
    table = _table("cpm")
    first = _client(settings, predictor)
    try:
        fresh, _, t0, t1 = _bid_and_state(*_verbs(first))
        assert fresh["price"] in _replayed(table, zone, 4.0, 0.0, t0, t1)
        r = first("POST", "/v1/events", json={"events": [win("rlb-r1", "rlb-web", 8.0)]})
        assert r.status_code == 200 and r.json()["accepted"] == 1
    finally:
        first.close()
    again = _client(settings, predictor)
    try:
        bid, entry, t0, t1 = _bid_and_state(*_verbs(again))
        assert entry["spend_today"] == pytest.approx(0.008)
        want = _replayed(table, zone, 4.0, DAILY - entry["budget_left"], t0, t1)
        assert bid["price"] in want
        assert want.isdisjoint(_replayed(table, zone, 4.0, 0.0, t0, t1))
    finally:
        again.close()


def _verbs(client: Client) -> tuple[Callable[..., Any], Callable[..., Any]]:
    return partial(client, "POST"), partial(client, "GET")


def _client(settings: BidoptSettings, predictor: Predictor) -> Client:
    app = create_app(settings)
    app.state.holder.current = predictor
    return Client(app)
