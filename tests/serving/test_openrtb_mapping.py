"""OpenRTB 2.6 BidRequests map onto the canonical request fields the models were trained on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.openrtb.schemas import BidRequest, to_impressions

FIXTURES = Path(
    os.environ.get(
        "BIDOPT_SHARED_OPENRTB", Path(__file__).resolve().parents[2] / ".." / "shared" / "openrtb"
    )
)


def _load(name: str) -> BidRequest:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"OpenRTB fixtures not found at {FIXTURES}")
    return BidRequest.model_validate(json.loads(path.read_text()))


@pytest.mark.parametrize(
    ("name", "channel", "fmt", "device", "auction", "size"),
    [
        ("banner-site.json", "web", "banner", "desktop", "first", (300, 250)),
        ("video-site-second-price.json", "video", "video", "desktop", "second", (640, 480)),
        ("native-app.json", "app", "native", "mobile", "first", (None, None)),
        ("ctv-app-video-short-tmax.json", "ctv", "video", "ctv", "first", (1920, 1080)),
    ],
)
def test_fixture_maps_to_canonical_fields(
    name: str, channel: str, fmt: str, device: str, auction: str, size: tuple
) -> None:
    req = _load(name)
    (imp,) = to_impressions(req)
    assert imp["channel"] == channel
    assert imp["slot_format"] == fmt
    assert imp["device_type"] == device
    assert imp["auction_type"] == auction
    assert (imp["slot_width"], imp["slot_height"]) == size
    assert imp["ip"].endswith(".0")  # anonymised to /24 before any use
    assert imp["floor_price"] == req.imp[0].bidfloor


def test_segments_and_publisher_reach_the_features() -> None:
    (imp,) = to_impressions(_load("video-site-second-price.json"))
    assert imp["user_segments"] == ["sports_fans", "cart_abandoners"]
    assert imp["publisher"] == "siteabcd.example"
    (app_imp,) = to_impressions(_load("native-app.json"))
    assert app_imp["publisher"] == "com.example.dicegame"
    assert app_imp["ip"] == "192.0.2.0"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"imp": [{"id": "1", "banner": {}}]}, "id"),
        ({"id": "x", "imp": []}, "imp"),
        ({"id": "x", "imp": [{"id": "1"}]}, "no banner, video or native"),
        ({"id": "x", "imp": [{"id": "1", "banner": {}, "bidfloor": -1}]}, "bidfloor"),
        ({"id": "x", "at": 3, "imp": [{"id": "1", "banner": {}}]}, "at"),
        ({"id": "x", "imp": [{"id": "1", "banner": {}}], "site": {}, "app": {}}, "site or app"),
    ],
)
def test_malformed_requests_name_the_field(body: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        BidRequest.model_validate(body)
