from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from bidding.campaigns import Campaign, CampaignError, Creative, load_campaigns
from bidding.strategies import Lagrangian, Value, bid_one
from bidding.targeting import Targeting

GOOD = """
[[campaigns]]
id = "c1"
goal = "cpc"
target = 0.8
max_bid = 20.0
daily_budget = 500.0
timezone = "Europe/Paris"
strategy = "lagrangian"
strategy_params = { lam = 0.25 }
creatives = ["cr1", { id = "cr2" }]

[[campaigns]]
id = "c2"
goal = "roas"
target = 4.0
value_per_conversion = 60.0
max_bid = 15.0
daily_budget = 100.0
creatives = ["cr9"]
"""


def test_load_good_file():
    camps = load_campaigns(GOOD, "campaigns.toml")
    assert list(camps) == ["c1", "c2"]
    c1, c2 = camps["c1"], camps["c2"]
    assert c1.creative_ids == ("cr1", "cr2")
    assert c1.bid_strategy == Lagrangian(0.25)
    assert c1.tz.key == "Europe/Paris"
    assert c2.timezone == "UTC" and c2.strategy == "value" and c2.bid_strategy == Value()
    # the serving path: value from the goal, price from the strategy, capped by max bid
    value = c1.goal_value.value(0.01)
    assert value == pytest.approx(0.01 * 0.8 * 1000)
    assert bid_one(c1.bid_strategy, value, max_bid=c1.max_bid) == (pytest.approx(6.4), "")
    assert c2.goal_value.value(0.02, 0.1) == pytest.approx(0.02 * 0.1 * 60.0 / 4.0 * 1000)


def test_campaign_is_frozen():
    c = load_campaigns(GOOD)["c1"]
    with pytest.raises(ValueError):
        c.target = 3.0  # type: ignore[misc]


def test_alias_is_canonicalised():
    text = GOOD.replace('strategy = "lagrangian"\nstrategy_params = { lam = 0.25 }', "")
    text = text.replace(
        'id = "c1"',
        'id = "c1"\nstrategy = "lin"\nstrategy_params = { base_bid = 10.0, avg_value = 2.0 }',
    )
    assert load_campaigns(text)["c1"].strategy == "linear"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("target = 0.8", "target = -1.0", "campaigns.toml: campaign 'c1': target: must be > 0"),
        ("target = 0.8", "", "campaigns.toml: campaign 'c1': target: required"),
        (
            'goal = "cpc"',
            'goal = "cpx"',
            "campaign 'c1': goal: must be 'cpc', 'cpa', 'roas' or 'cpm'",
        ),
        (
            "value_per_conversion = 60.0\n",
            "",
            "campaign 'c2': value_per_conversion: required for goal 'roas'",
        ),
        (
            'timezone = "Europe/Paris"',
            'timezone = "Mars/Olympus"',
            "campaign 'c1': timezone: unknown timezone 'Mars/Olympus'",
        ),
        (
            'strategy = "lagrangian"',
            'strategy = "magic"',
            "campaign 'c1': strategy: unknown strategy 'magic'",
        ),
        (
            "{ lam = 0.25 }",
            "{ lam = -1.0 }",
            "campaign 'c1': strategy_params: lagrangian: lam must be",
        ),
        (
            "{ lam = 0.25 }",
            "{ c = 1.0 }",
            "campaign 'c1': strategy_params: lagrangian: unknown parameter(s) c",
        ),
        ('creatives = ["cr9"]', "creatives = []", "campaign 'c2': creatives: must not be empty"),
        (
            'creatives = ["cr9"]',
            'creatives = ["a", "a"]',
            "campaign 'c2': creatives: duplicate id(s) a",
        ),
        ("max_bid = 15.0", "max_bid = 15.0\nbid_cap = 3", "campaign 'c2': bid_cap: unknown field"),
        (
            "daily_budget = 500.0",
            "daily_budget = nan",
            "campaign 'c1': daily_budget: must be a finite number",
        ),
        ('id = "c2"', 'id = "c1"', "campaigns.toml: campaign 'c1': id: duplicate"),
        ('id = "c2"', 'id = "has space"', "campaign 'has space': id: must match"),
    ],
)
def test_errors_name_file_campaign_and_field(old, new, message):
    assert old in GOOD
    with pytest.raises(CampaignError) as err:
        load_campaigns(GOOD.replace(old, new, 1), "campaigns.toml")
    assert isinstance(err.value, ValueError)
    assert any(message in line for line in err.value.errors), err.value.errors


def test_every_problem_is_reported_one_line_each():
    text = GOOD.replace("target = 0.8", "target = 0").replace("max_bid = 15.0", "max_bid = -2")
    with pytest.raises(CampaignError) as err:
        load_campaigns(text, "x.toml")
    assert err.value.errors == [
        "x.toml: campaign 'c1': target: must be > 0",
        "x.toml: campaign 'c2': max_bid: must be > 0",
    ]


def test_invalid_toml_and_wrong_shape():
    with pytest.raises(CampaignError, match=r"^x.toml: invalid TOML: .*line 1"):
        load_campaigns("[[campaigns]\n", "x.toml")
    with pytest.raises(CampaignError, match=r"^x.toml: campaigns: must be a list"):
        load_campaigns("[campaigns.c1]\ngoal = 'cpc'\n", "x.toml")
    with pytest.raises(CampaignError, match=r"^x.toml: budgets: unknown field"):
        load_campaigns("budgets = 3\n", "x.toml")
    with pytest.raises(CampaignError, match=r"campaign #1: id: required"):
        load_campaigns("[[campaigns]]\ngoal = 'cpc'\n", "x.toml")


def test_empty_file_has_no_campaigns():
    assert load_campaigns("", "x.toml") == {}


def test_model_can_be_built_directly():
    c = Campaign(id="x", goal="cpm", target=2.0, max_bid=3.0, daily_budget=10.0, creatives=("a",))
    assert c.goal_value.value(0.5) == 2.0


# --- the full campaign description (campaigns issue) ---

EXAMPLE = Path(__file__).resolve().parents[2] / "campaigns.example.toml"

FULL = """
[[campaigns]]
id = "c1"
advertiser = "acme"
goal = "cpc"
target = 0.8
max_bid = 20.0
daily_budget = 500.0
total_budget = 9000.0
timezone = "America/New_York"
exploration = "epsilon"
epsilon = 0.2
flight = { start = 2025-03-01, end = 2025-05-31 }
frequency_cap = { impressions = 3, period = "7d" }

[campaigns.targeting]
channels = ["web", "ctv"]
countries = ["us"]
hours = "18..23"
weekdays = [0, 1, 2, 3, 4]
publisher_block = ["Bad.example"]
segments_include = ["cart_abandoners"]
ip_block = ["203.0.113.0/24"]

[[campaigns.creatives]]
id = "cr1"
format = "banner"
width = 300
height = 250
adomain = "Shop.Acme.example"
categories = ["iab3-1", "IAB19"]

[[campaigns.creatives]]
id = "cr2"
format = "video"
duration_s = 15
channels = ["ctv"]

[[campaigns.rules]]
when = { channel = "ctv", hour = "18..23" }
then = { multiply = 1.3, creatives = ["cr2"] }

[[campaigns.rules]]
then = { cap = 5.0 }
"""


def test_full_campaign_loads_with_defaults_for_old_files():
    c = load_campaigns(FULL, "campaigns.toml")["c1"]
    assert (c.advertiser, c.total_budget, c.exploration, c.epsilon) == (
        "acme",
        9000.0,
        "epsilon",
        0.2,
    )
    assert (c.flight.start, c.flight.end) == (date(2025, 3, 1), date(2025, 5, 31))
    assert (c.frequency_cap.impressions, c.frequency_cap.period) == (3, "7d")
    assert c.targeting.countries == ("US",) and c.targeting.publisher_block == ("bad.example",)
    assert c.targeting.hours == frozenset(range(18, 24))
    assert c.creatives[0].adomain == "shop.acme.example"
    assert c.creatives[0].categories == ("IAB3-1", "IAB19")
    assert c.creatives[1].channel_set == frozenset({"ctv"})
    # rules are compiled once, at load: the same object on every access
    assert c.has_rules and c.compiled_rules is c.compiled_rules
    assert len(c.compiled_rules.branches) == 2
    old = load_campaigns(GOOD)["c1"]
    assert old.flight is None and old.frequency_cap is None and not old.has_rules
    assert old.targeting.channels is None and old.exploration == "greedy"
    assert old.creatives[0].format is None


def test_example_file_is_valid_and_uses_every_feature():
    camps = load_campaigns(EXAMPLE.read_text(encoding="utf-8"), EXAMPLE.name)
    assert len(camps) >= 3
    cs = list(camps.values())
    used = lambda f: any(f(c) for c in cs)  # noqa: E731
    assert used(lambda c: c.advertiser) and used(lambda c: c.total_budget)
    assert used(lambda c: c.flight) and used(lambda c: c.frequency_cap)
    assert {c.exploration for c in cs} == {"greedy", "epsilon", "thompson"}
    assert {c.goal for c in cs} == {"cpc", "cpa", "roas", "cpm"}
    for field in Targeting.model_fields:
        assert used(lambda c, f=field: getattr(c.targeting, f)), f"targeting.{field} unused"
    creatives = [cr for c in cs for cr in c.creatives]
    assert {cr.format for cr in creatives} == {"banner", "video", "native", None}
    assert all(any(getattr(cr, f) for cr in creatives) for f in Creative.model_fields)
    actions = {k for c in cs for r in c.rules for k, v in r.then if v not in (None, False)}
    assert actions == {"multiply", "set", "cap", "no_bid", "creatives"}
    assert used(lambda c: c.rules and c.rules[-1].when is None)  # an else branch
    assert any(cr.id == "cmp-001-cr4" for cr in camps["cmp-001"].creatives)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"203.0.113.0/24"]',
            '"203.0.113.7/32"]',
            "campaigns.toml: campaign 'c1': targeting.ip_block[0]: 203.0.113.7/32 is narrower "
            "than /24",
        ),
        ('ip_block = ["203.0.113.0/24"]', 'ip_block = ["2001:db8::/64"]', "narrower than /48"),
        ('ip_block = ["203.0.113.0/24"]', 'ip_block = "nope"', "ip_block[0]: not an IP range"),
        (
            "end = 2025-05-31",
            "end = 2025-02-01",
            "campaign 'c1': flight: end 2025-02-01 is before start 2025-03-01",
        ),
        ("start = 2025-03-01", 'start = "March"', "flight.start: must be a date"),
        (
            'timezone = "America/New_York"',
            'timezone = "America/Gotham"',
            "campaign 'c1': timezone: unknown timezone 'America/Gotham'",
        ),
        (
            'creatives = ["cr2"]',
            'creatives = ["cr9"]',
            "campaign 'c1': rules[0].then.creatives: unknown creative(s) cr9 "
            "(this campaign has: cr1, cr2)",
        ),
        ('id = "cr2"', 'id = "cr1"', "campaign 'c1': creatives: duplicate id(s) cr1"),
        (
            "[[campaigns.rules]]\nthen = { cap = 5.0 }",
            "[[campaigns.rules]]\nthen = { cap = 5.0 }\n[[campaigns.rules]]\nthen = { cap = 1.0 }",
            "campaign 'c1': rules[1]: an else rule (no `when`) must be the last rule",
        ),
        ('hour = "18..23" }', 'hour = "18..25" }', "rules[0].when.hour: hours are 0..23"),
        ('hours = "18..23"', 'hours = "22..2"', "targeting.hours: '22..2': start above end"),
        ('hours = "18..23"', 'hours = "18..24"', "targeting.hours: '18..24': hours are 0..23"),
        (
            "weekdays = [0, 1, 2, 3, 4]",
            "weekdays = [7]",
            "targeting.weekdays: 7: weekdays are 0..6",
        ),
        (
            'channels = ["web", "ctv"]',
            'channels = ["tv"]',
            "targeting.channels[0]: unknown channel",
        ),
        ('channels = ["web", "ctv"]', "channels = []", "targeting.channels: must not be empty"),
        ('countries = ["us"]', 'cuntries = ["us"]', "targeting.cuntries: unknown field"),
        ('period = "7d"', 'period = "30d"', "frequency_cap.period: must be '24h' or '7d'"),
        ("impressions = 3", "impressions = 0", "frequency_cap.impressions: must be >= 1"),
        ("total_budget = 9000.0", "total_budget = 0", "total_budget: must be > 0"),
        ('exploration = "epsilon"', 'exploration = "ucb"', "exploration: must be 'greedy'"),
        ("epsilon = 0.2", "epsilon = 1.5", "epsilon: must be <= 1"),
        ('advertiser = "acme"', 'advertiser = "a cme"', "advertiser: must match"),
        ("duration_s = 15\n", "", "creatives[1]: duration_s: required for format 'video'"),
        ('format = "banner"', 'format = "native"', "creatives[0]: width, height: only for"),
        ("height = 250\n", "", "creatives[0]: width, height: give both or neither"),
        ('format = "banner"', 'format = "gif"', "creatives[0].format: must be 'banner'"),
        ('adomain = "Shop.Acme.example"', 'adomain = "not a domain"', "creatives[0].adomain: "),
        ('channels = ["ctv"]', 'channels = ["radio"]', "creatives[1].channels[0]: unknown channel"),
        ('"IAB19"]', '"IAB 19"]', "creatives[0].categories[1]: 'IAB 19' is not an IAB content"),
        ('categories = ["iab3-1", "IAB19"]', "categories = []", "creatives[0].categories: must"),
    ],
)
def test_full_schema_errors_name_file_campaign_and_field(old, new, message):
    assert old in FULL
    with pytest.raises(CampaignError) as err:
        load_campaigns(FULL.replace(old, new, 1), "campaigns.toml")
    assert any(message in line for line in err.value.errors), err.value.errors
    assert all(line.startswith("campaigns.toml: ") for line in err.value.errors)


def test_all_problems_listed_one_line_each_including_duplicates():
    text = FULL.replace('"203.0.113.0/24"', '"203.0.113.7/32"').replace(
        "epsilon = 0.2", "epsilon = 2"
    )
    text = text + GOOD.replace('id = "c2"', 'id = "c1"', 1).replace('id = "c1"', 'id = "c3"', 1)
    with pytest.raises(CampaignError) as err:
        load_campaigns(text, "f.toml")
    lines = err.value.errors
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert lines[0].startswith("f.toml: campaign 'c1': epsilon: ")
    assert lines[1].startswith("f.toml: campaign 'c1': targeting.ip_block[0]: ")
    assert lines[2] == "f.toml: campaign 'c1': id: duplicate (campaign #3)"


def test_several_cross_field_problems_are_separate_lines():
    text = FULL.replace('creatives = ["cr2"]', 'creatives = ["x"]').replace(
        'id = "cr2"', 'id = "cr1"'
    )
    with pytest.raises(CampaignError) as err:
        load_campaigns(text, "f.toml")
    assert err.value.errors == [
        "f.toml: campaign 'c1': creatives: duplicate id(s) cr1",
        "f.toml: campaign 'c1': rules[0].then.creatives: unknown creative(s) x "
        "(this campaign has: cr1, cr1)",
    ]
