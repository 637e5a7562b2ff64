"""The campaigns file in the live service: load, refusal, hot reload, events, budgets, caps."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.serving import API_KEY, ROOT, Server, free_port, run_server
from tests.serving.campaign_files import CAMPAIGNS, INVALID, ONLY_ONE

pytestmark = pytest.mark.integration

FAST_STATE = {"BIDOPT_STATE_REFRESH_S": "0.2", "BIDOPT_PACING_INTERVAL_S": "0.5"}


def now_iso(delta_s: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_s)).isoformat()


def imp(**kw: Any) -> dict[str, Any]:
    base = {
        "impression_id": "i1",
        "event_time": now_iso(),
        "channel": "web",
        "publisher": "test.example",
        "floor_price": 0.0,
        "auction_type": "second",
    }
    return {**base, **kw}


def win(event_id: str, campaign: str, price: float, user: str | None = None) -> dict[str, Any]:
    ev = {
        "event_id": event_id,
        "type": "win",
        "impression_id": f"imp-{event_id}",
        "campaign_id": campaign,
        "price": price,
        "time": now_iso(-60),
    }
    if user is not None:
        ev["user_id"] = user
    return ev


@pytest.fixture(scope="module")
def campaigns_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("campaigns") / "campaigns.toml"
    path.write_text(CAMPAIGNS)
    return path


@pytest.fixture(scope="module")
def server(
    serving_store: tuple[str, Path],
    campaigns_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    uri, _ = serving_store
    with run_server(
        uri,
        tmp_path_factory.mktemp("campaign-server"),
        env=FAST_STATE,
        args=("--campaigns", str(campaigns_file)),
    ) as s:
        yield s


def bids(server: Server, body: dict[str, Any]) -> list[dict[str, Any]]:
    r = server.client.post("/v1/bid", json=body)
    assert r.status_code == 200, r.text
    return r.json()["bids"]


def campaign_status(server: Server) -> dict[str, Any]:
    r = server.client.get("/v1/campaigns")
    assert r.status_code == 200, r.text
    return r.json()


def test_file_campaigns_are_loaded_and_listed(server: Server) -> None:
    status = campaign_status(server)
    assert [c["id"] for c in status["campaigns"]] == [
        "web-cpm",
        "video-cpm",
        "native-cpc",
        "small-budget",
        "capped",
    ]
    assert status["backend"] == "memory" and status["last_error"] is None
    assert status["campaigns"][0]["pacing_multiplier"] > 0
    assert "bidopt_campaigns_loaded 5.0" in server.client.get("/metrics").text


def test_bid_with_only_impressions_uses_every_file_campaign(server: Server) -> None:
    [b] = bids(server, {"impressions": [imp(user_segments=["cart_abandoners"])]})
    assert b["bid"] is True and b["campaign_id"] in {"web-cpm", "small-budget", "capped"}
    assert b["propensity"] == 1.0 and 0 <= b["pctr"] <= 1
    [b] = bids(
        server,
        {"impressions": [imp(user_segments=["cart_abandoners"])], "campaign_ids": ["web-cpm"]},
    )
    assert (b["campaign_id"], b["rule"]) == ("web-cpm", "cart abandoners")
    # 2.0 CPM x 1.5 (the rule) x the pacing multiplier (<= 1: pacing only throttles)
    assert 0.0 < b["price"] <= 3.0 and b["expected_value"] == 2.0
    [b] = bids(server, {"impressions": [imp()], "campaign_ids": ["video-cpm"]})
    assert (b["bid"], b["reason"]) == (False, "channel_not_targeted")


def test_unknown_campaign_id_is_404_naming_the_field(server: Server) -> None:
    r = server.client.post("/v1/bid", json={"impressions": [imp()], "campaign_ids": ["nope"]})
    assert r.status_code == 404
    assert r.json() == {
        "detail": "unknown campaign 'nope': not in the campaigns file",
        "field": "campaign_ids",
    }


def test_inline_campaigns_still_work(server: Server) -> None:
    inline = {
        "campaign_id": "c1",
        "goal": "cpm",
        "target": 2.5,
        "max_bid": 10.0,
        "creative_ids": ["a"],
    }
    [b] = bids(server, {"impressions": [imp()], "campaigns": [inline]})
    assert (b["bid"], b["price"], b["campaign_id"]) == (True, 2.5, "c1")


def test_events_are_deduplicated_and_unknown_campaigns_change_nothing(server: Server) -> None:
    r = server.client.post(
        "/v1/events", json={"events": [win("d1", "web-cpm", 1.0), win("d1", "web-cpm", 1.0)]}
    )
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 1}
    before = campaign_status(server)["campaigns"][0]["spend_today"]
    body = {"events": [win("d2", "web-cpm", 5.0), win("d3", "ghost", 1.0)]}
    r = server.client.post("/v1/events", json=body)
    assert r.status_code == 404 and r.json()["field"] == "events[1].campaign_id"
    assert campaign_status(server)["campaigns"][0]["spend_today"] == before
    r = server.client.post("/v1/events", json={"events": [win("d2", "web-cpm", 5.0)]})
    assert r.json() == {"accepted": 1, "duplicates": 0}  # d2 was not claimed by the 404 batch
    bad = {"events": [{**win("d4", "web-cpm", 1.0), "price": None}]}
    assert server.client.post("/v1/events", json=bad).status_code == 422


def test_spend_accumulates_until_the_budget_is_spent(server: Server) -> None:
    body = {"impressions": [imp()], "campaign_ids": ["small-budget"]}
    assert bids(server, body)[0]["bid"] is True
    for k in range(3):  # 3 x 8 CPM = 0.024 > the daily budget of 0.02
        r = server.client.post("/v1/events", json={"events": [win(f"sb{k}", "small-budget", 8.0)]})
        assert r.json()["accepted"] == 1
    status = {c["id"]: c for c in campaign_status(server)["campaigns"]}["small-budget"]
    assert status["spend_today"] == pytest.approx(0.024)
    assert status["budget_left"] == pytest.approx(-0.004)
    [b] = bids(server, body)
    assert (b["bid"], b["reason"], b["campaign_id"]) == (False, "budget_spent", "small-budget")


def test_frequency_cap_from_win_events(server: Server) -> None:
    body = {"impressions": [imp(user_id="u-cap")], "campaign_ids": ["capped"]}
    assert bids(server, body)[0]["bid"] is True
    events = [win(f"cap{k}", "capped", 1.0, user="u-cap") for k in range(2)]
    assert server.client.post("/v1/events", json={"events": events}).json()["accepted"] == 2
    [b] = bids(server, body)
    assert (b["bid"], b["reason"]) == (False, "frequency_cap_reached")
    other = {"impressions": [imp(user_id="u-other")], "campaign_ids": ["capped"]}
    assert bids(server, other)[0]["bid"] is True


def test_pacing_throttles_a_campaign_ahead_of_plan(server: Server) -> None:
    """Spend 99% of video-cpm's daily budget at once (825 wins at its max bid of 12 CPM: 9.9 of
    10): far ahead of any plan, so the controller must bid it down. Behind plan it never bids
    above the strategy's price (multiplier <= 1)."""
    wins = [win(f"pace{k}", "video-cpm", 12.0) for k in range(825)]
    r = server.client.post("/v1/events", json={"events": wins})
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = {c["id"]: c for c in campaign_status(server)["campaigns"]}
        if status["video-cpm"]["pacing_multiplier"] < 1.0:
            break
        time.sleep(0.2)
    assert status["video-cpm"]["pacing_multiplier"] < 1.0, status["video-cpm"]
    assert all(c["pacing_multiplier"] <= 1.0 for c in status.values())


def test_invalid_file_refuses_to_start(tmp_path: Path, serving_store: tuple[str, Path]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(INVALID)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIDOPT_")}
    env.update({"BIDOPT_TRACKING_URI": serving_store[0], "PYTHONPATH": str(ROOT)})
    cmd = [sys.executable, "-m", "serving.cli", "serve", "--port", str(free_port())]
    proc = subprocess.run(
        [*cmd, "--campaigns", str(bad)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert f"{bad}: campaign 'bad': goal: must be 'cpc', 'cpa', 'roas' or 'cpm'" in lines
    assert f"{bad}: campaign 'bad': target: must be > 0" in lines


def test_workers_without_redis_refuse_to_start() -> None:
    from typer.testing import CliRunner

    from tests.serving.test_cli import app

    result = CliRunner().invoke(app(), ["serve", "--workers", "2"])
    assert result.exit_code == 2
    assert "needs --redis-url" in result.output and "whole budget" in result.output


def test_hot_reload_of_an_invalid_file_keeps_the_old_campaigns(
    serving_store: tuple[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "campaigns.toml"
    path.write_text(ONLY_ONE)
    uri, _ = serving_store
    slow = {"BIDOPT_STATE_REFRESH_S": "60"}  # only /admin/reload polls the file here
    with run_server(uri, tmp_path, env=slow, args=("--campaigns", str(path))) as s:
        path.write_text(INVALID)
        os.utime(path, (time.time() + 5, time.time() + 5))
        r = s.client.post("/admin/reload", headers={"X-API-Key": API_KEY})
        assert r.status_code == 200 and r.json()["campaigns_reloaded"] is False
        status = campaign_status(s)
        assert [c["id"] for c in status["campaigns"]] == ["solo"]
        assert any("goal" in line for line in status["last_error"])
        assert bids(s, {"impressions": [imp()]})[0]["campaign_id"] == "solo"
        assert (
            'bidopt_campaign_reloads_total{outcome="failure"} 1.0' in s.client.get("/metrics").text
        )
        assert "campaigns file" in s.log() and "refused" in s.log()
        path.write_text(ONLY_ONE.replace('"solo"', '"solo2"'))
        os.utime(path, (time.time() + 10, time.time() + 10))
        assert s.client.post("/admin/reload", headers={"X-API-Key": API_KEY}).json()[
            "campaigns_reloaded"
        ]
        assert [c["id"] for c in campaign_status(s)["campaigns"]] == ["solo2"]
