"""Which creatives fit an OpenRTB slot (format, size, duration, channel, badv, bcat)."""

from __future__ import annotations

import pytest

from bidding.campaigns import Creative
from bidding.creative_fit import creative_fits

BANNER = Creative(
    id="b",
    format="banner",
    width=300,
    height=250,
    adomain="Shop.Acme.example",
    categories="iab25-3",
)
VIDEO = Creative(id="v", format="video", duration_s=15, channels=("video", "ctv"))
NATIVE = Creative(id="n", format="native", channels="app")
ANY = Creative(id="x")


@pytest.mark.parametrize(
    ("creative", "args", "kwargs", "fits"),
    [
        (BANNER, ("banner", [(300, 250), (728, 90)], "web"), {}, True),
        (BANNER, ("banner", [(728, 90)], "web"), {}, False),  # size not offered
        (BANNER, ("banner", None, "web"), {}, True),  # no sizes known
        (BANNER, ("banner", [], "web"), {}, True),
        (BANNER, ("video", None, "web"), {}, False),  # wrong format
        (BANNER, ("banner", None, "web"), {"blocked_adomains": ["acme.example"]}, False),
        (BANNER, ("banner", None, "web"), {"blocked_adomains": {"shop.acme.example"}}, False),
        (BANNER, ("banner", None, "web"), {"blocked_adomains": ["me.example"]}, True),
        (BANNER, ("banner", None, "web"), {"blocked_categories": ["IAB25"]}, False),  # parent
        (BANNER, ("banner", None, "web"), {"blocked_categories": {"IAB25-3"}}, False),
        (BANNER, ("banner", None, "web"), {"blocked_categories": ["IAB2", "IAB25-30"]}, True),
        (ANY, (None, None, "web"), {"blocked_categories": ["IAB25"]}, True),  # undeclared
        (VIDEO, ("video", [(640, 480)], "video"), {"min_duration": 5, "max_duration": 30}, True),
        (VIDEO, ("video", None, "ctv"), {"min_duration": 15, "max_duration": 15}, True),
        (VIDEO, ("video", None, "video"), {"max_duration": 10}, False),
        (VIDEO, ("video", None, "video"), {"min_duration": 20}, False),
        (VIDEO, ("video", None, "web"), {}, False),  # channel not listed by the creative
        (NATIVE, ("native", None, "app"), {}, True),
        (NATIVE, ("native", None, "web"), {}, False),
        (NATIVE, ("banner", [(300, 250)], "app"), {}, False),
        # an exchange slot needs a declared format, a banner slot with sizes a declared size
        (ANY, ("native", [(1, 1)], "email"), {}, False),
        (ANY, ("banner", None, "web"), {}, False),
        (Creative(id="n", format="banner"), ("banner", [(300, 250)], "web"), {}, False),
        (Creative(id="n", format="banner"), ("banner", None, "web"), {}, True),
        (ANY, (None, None, None), {"blocked_adomains": ["a.com"]}, True),  # no slot: /v1/bid
    ],
)
def test_creative_fits(creative: Creative, args: tuple, kwargs: dict, fits: bool) -> None:
    assert creative_fits(creative, *args, **kwargs) is fits
