from __future__ import annotations

import pytest

from bidding.campaigns import Campaign, CampaignError, load_campaigns
from bidding.strategies import Lagrangian, Value, bid_one

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
