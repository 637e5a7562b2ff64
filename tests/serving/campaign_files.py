"""Campaigns files for the service tests: every campaign is always on (no hours, no flight)."""

from __future__ import annotations

CAMPAIGNS = """
[[campaigns]]
id = "web-cpm"
goal = "cpm"
target = 2.0
max_bid = 10.0
daily_budget = 1000.0
[campaigns.targeting]
channels = ["web"]
[[campaigns.creatives]]
id = "blocked-cr"
format = "banner"
width = 300
height = 250
adomain = "blocked-brand.example"
categories = ["IAB25-2"]
[[campaigns.creatives]]
id = "web-cr"
format = "banner"
width = 320
height = 50
adomain = "shop.example"
[[campaigns.rules]]
name = "cart abandoners"
when = { segment = "cart_abandoners" }
then = { multiply = 1.5 }

[[campaigns]]
id = "video-cpm"
goal = "cpm"
target = 6.0
max_bid = 12.0
daily_budget = 10.0
[campaigns.targeting]
channels = ["video", "ctv"]
[[campaigns.creatives]]
id = "spot-60"
format = "video"
duration_s = 60
adomain = "video.example"
[[campaigns.creatives]]
id = "spot-15"
format = "video"
duration_s = 15
adomain = "video.example"

[[campaigns]]
id = "native-cpc"
goal = "cpm"
target = 1.5
max_bid = 5.0
daily_budget = 1000.0
[campaigns.targeting]
channels = ["app"]
[[campaigns.creatives]]
id = "native-cr"
format = "native"
adomain = "app.example"

[[campaigns]]
id = "small-budget"
goal = "cpm"
target = 3.0
max_bid = 10.0
daily_budget = 0.02
creatives = ["sb-cr"]
targeting = { publisher_allow = ["test.example"] }

[[campaigns]]
id = "capped"
goal = "cpm"
target = 3.0
max_bid = 10.0
daily_budget = 1000.0
frequency_cap = { impressions = 2, period = "24h" }
creatives = ["cap-cr"]
targeting = { publisher_allow = ["test.example"] }
"""

ONLY_ONE = """
[[campaigns]]
id = "solo"
goal = "cpm"
target = 1.0
max_bid = 5.0
daily_budget = 10.0
creatives = ["solo-cr"]
"""

INVALID = """
[[campaigns]]
id = "bad"
goal = "cpz"
target = -1
max_bid = 5.0
daily_budget = 10.0
creatives = ["x"]
"""
