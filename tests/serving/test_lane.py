"""The fast lane (lane.Lane) and FastAPI's own router answer byte for byte alike.

Two apps from the same settings and the same loaded models: one as the service runs it (the JSON
POSTs go from the Lane middleware straight to their handler), one whose Lane hands nothing over
(every request through FastAPI's router and exception handlers). The same requests must get the
same status, headers and body from both, for answers that score (200), refuse (400, 404, 413,
422) and wait for models (503).
"""

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

IMP = {"event_time": "2025-06-01T14:05:00Z", "channel": "web", "publisher": "news.example.com"}
BID_IMP = {**IMP, "impression_id": "i1", "floor_price": 0.0, "auction_type": "first"}
INLINE = {"campaign_id": "c1", "goal": "cpm", "target": 2.5, "max_bid": 10.0, "creative_ids": ["a"]}
RTB = {
    "id": "r1",
    "imp": [{"id": "1", "bidfloor": 0.01, "banner": {"w": 320, "h": 50}}],
    "site": {"domain": "news.example.com"},
    "device": {"devicetype": 2, "geo": {"country": "FR"}},
}
JSON = "application/json"

CASES: list[tuple[str, str, Any, str]] = [
    # (name, path, body, content type)
    ("predict", "/v1/predict", {"impressions": [IMP]}, JSON),
    ("bid inline", "/v1/bid", {"impressions": [BID_IMP], "campaigns": [INLINE]}, JSON),
    ("bid from file", "/v1/bid", {"impressions": [BID_IMP], "campaign_ids": ["web-cpm"]}, JSON),
    ("unknown campaign 404", "/v1/bid", {"impressions": [BID_IMP], "campaign_ids": ["x"]}, JSON),
    ("too many 413", "/v1/predict", {"impressions": [IMP] * 4}, JSON),
    ("wrong type 422", "/v1/predict", {"impressions": [{**IMP, "channel": 5}]}, JSON),
    ("bad json 422", "/v1/bid", '{"impressions": [', JSON),
    ("not json 422", "/v1/predict", {"impressions": [IMP]}, "text/plain"),
    (
        "event ghost 404",
        "/v1/events",
        {"events": [{"event_id": "e", "type": "click", "impression_id": "i", "campaign_id": "x"}]},
        JSON,
    ),
    ("event bad 422", "/v1/events", {"events": []}, JSON),
    ("openrtb 204", "/openrtb2/bid", {**RTB, "cur": ["EUR"]}, JSON),
    ("openrtb bad 400", "/openrtb2/bid", {**RTB, "imp": [{"id": "1", "bidfloor": "x"}]}, JSON),
    ("openrtb 413", "/openrtb2/bid", {**RTB, "imp": RTB["imp"] * 4}, JSON),
]


def make_app(tmp_path: Path, *, lane: bool, otel: bool = False) -> FastAPI:
    campaigns = tmp_path / "campaigns.toml"
    campaigns.write_text(CAMPAIGNS)
    settings = BidoptSettings(
        tracking_uri=f"sqlite:///{tmp_path / 'absent.db'}",
        ledger_dir=tmp_path / "ledger",
        campaigns_file=campaigns,
        max_impressions=3,
        win_secret="lane-parity-secret-0123456789",
        otel=otel,
    )
    app = create_app(settings)
    if not lane:
        app.state.lane_handlers.clear()  # every POST through FastAPI's router
    return app


def answers(app: FastAPI, predictor: Predictor | None) -> dict[str, tuple[int, list, bytes]]:
    app.state.holder.current = predictor
    out = {}

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c,
        ):
            for name, path, body, ctype in CASES:
                raw = body if isinstance(body, str) else json.dumps(body)
                r = await c.post(path, content=raw, headers={"content-type": ctype})
                out[name] = (r.status_code, sorted(r.headers.multi_items()), r.content)

    asyncio.run(run())
    return out


@pytest.mark.parametrize("otel", [False, True], ids=["outside-fastapi", "inside-fastapi"])
def test_lane_and_router_answer_alike(tmp_path: Path, predictor: Predictor, otel: bool) -> None:
    """The service's layers outside FastAPI's stack (the default) or inside it (OpenTelemetry
    on): the same answers either way."""
    direct = answers(make_app(tmp_path, lane=True, otel=otel), predictor)
    routed = answers(make_app(tmp_path, lane=False, otel=otel), predictor)
    statuses = {name: a[0] for name, a in direct.items()}
    assert statuses == {
        "predict": 200,
        "bid inline": 200,
        "bid from file": 200,
        "unknown campaign 404": 404,
        "too many 413": 413,
        "wrong type 422": 422,
        "bad json 422": 422,
        "not json 422": 422,
        "event ghost 404": 404,
        "event bad 422": 422,
        "openrtb 204": 204,
        "openrtb bad 400": 400,
        "openrtb 413": 413,
    }
    for name, answer in direct.items():
        # bid ids are random per response: compare the rest
        assert _stable(answer) == _stable(routed[name]), name


def test_lane_and_router_answer_503_alike_without_models(tmp_path: Path) -> None:
    direct = answers(make_app(tmp_path, lane=True), None)
    routed = answers(make_app(tmp_path, lane=False), None)
    assert direct["predict"][0] == 503 and direct["bid inline"][0] == 503
    assert direct["openrtb 204"][0] == 204  # OpenRTB answers a no-bid, not an error
    assert direct == routed


def _stable(answer: tuple[int, list, bytes]) -> tuple[int, list, Any]:
    status, headers, body = answer
    if not body.startswith(b"{") or b'"seatbid"' not in body:
        return status, headers, body
    data = json.loads(body)
    for seat in data["seatbid"]:
        for bid in seat["bid"]:
            bid.pop("id")
    return status, [h for h in headers if h[0] != "content-length"], data
