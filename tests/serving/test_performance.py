"""Real performance per campaign from the ledger, and state rebuilt from it after a restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from serving.app import create_app
from serving.models.predictor import Predictor
from serving.settings import BidoptSettings
from tests.serving.campaign_files import CAMPAIGNS

IMP = {"event_time": "2025-06-01T14:05:00Z", "channel": "web", "floor_price": 0.0,
       "auction_type": "second", "slot_width": 320, "slot_height": 50}  # fmt: skip


def make_app(tmp_path: Path, predictor: Predictor) -> FastAPI:
    campaigns = tmp_path / "campaigns.toml"
    campaigns.write_text(CAMPAIGNS)
    app = create_app(
        BidoptSettings(
            tracking_uri=f"sqlite:///{tmp_path / 'absent.db'}",
            ledger_dir=tmp_path / "ledger",
            campaigns_file=campaigns,
            nobid_sample_rate=0.0,
        )
    )
    app.state.holder.current = predictor
    return app


def session(app: FastAPI, calls: list[tuple[str, str, Any]]) -> list[httpx.Response]:
    """Start the app (lifespan: ledger replay, writer), make the calls, stop it."""

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c,
        ):
            out = []
            for method, path, body in calls:
                if method == "GET":
                    out.append(await c.get(path))
                else:
                    headers = {"content-type": "application/json"}
                    out.append(await c.post(path, content=json.dumps(body), headers=headers))
            return out

    return asyncio.run(run())


def web_perf(response: httpx.Response) -> dict[str, Any]:
    return next(c for c in response.json()["campaigns"] if c["id"] == "web-cpm")


def test_performance_and_spend_come_back_after_a_restart(
    tmp_path: Path, predictor: Predictor
) -> None:
    bids = [
        (
            "POST",
            "/v1/bid",
            {"impressions": [{**IMP, "impression_id": f"p{k}"}], "campaign_ids": ["web-cpm"]},
        )
        for k in range(3)
    ]
    answers = session(make_app(tmp_path, predictor), bids)
    results = [r.json()["bids"][0] for r in answers]
    assert all(b["bid"] and b["campaign_id"] == "web-cpm" for b in results)
    pctr = {b["impression_id"]: b["pctr"] for b in results}
    events = [
        {"event_id": "w0", "type": "win", "impression_id": "p0", "campaign_id": "web-cpm",
         "price": 2.0},
        {"event_id": "w1", "type": "win", "impression_id": "p1", "campaign_id": "web-cpm",
         "price": 4.0},
        {"event_id": "c0", "type": "click", "impression_id": "p0", "campaign_id": "web-cpm"},
        {"event_id": "v0", "type": "conversion", "impression_id": "p0",
         "campaign_id": "web-cpm", "value": 30.0},
    ]  # fmt: skip
    after = session(
        make_app(tmp_path, predictor),  # a restart: decisions come back from the ledger
        [("POST", "/v1/events", {"events": events}), ("GET", "/v1/campaigns", None)],
    )
    assert after[0].json() == {"accepted": 4, "duplicates": 0}
    status = web_perf(after[1])
    perf = status["performance"]
    assert (perf["wins"], perf["clicks"], perf["conversions"]) == (2, 1, 1)
    assert perf["spend"] == pytest.approx(0.006) and status["spend_today"] == pytest.approx(0.006)
    assert perf["ecpc"] == pytest.approx(0.006) and perf["ecpa"] == pytest.approx(0.006)
    assert perf["ctr_over_pctr"] == pytest.approx(1 / (pctr["p0"] + pctr["p1"]))
    again = session(make_app(tmp_path, predictor), [("GET", "/v1/campaigns", None),
                                                    ("GET", "/metrics", None)])  # fmt: skip
    assert web_perf(again[0])["performance"] == perf  # rebuilt from the ledger alone
    assert web_perf(again[0])["spend_today"] == pytest.approx(0.006)
    metrics = again[1].text
    assert 'bidopt_campaign_wins{campaign="web-cpm"} 2.0' in metrics
    assert "bidopt_ledger_available 1.0" in metrics
