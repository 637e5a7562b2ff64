"""bidding.campaign_fx: a campaign in its own currency, converted once at load into the account
currency; every strategy's money parameters covered, and a bid scaling with the rate."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import bidding.cli
from bidding.campaign_fx import STRATEGY_MONEY_PARAMS, load_in_account_currency
from bidding.campaigns import CampaignError, load_campaigns
from bidding.fx import parse_fx
from bidding.strategies import FITTED_ONLY, STRATEGIES

FX = parse_fx(
    "date,base,currency,rate\n"
    "2025-06-05,EUR,USD,1.10\n2025-06-05,EUR,GBP,0.80\n"
    "2025-06-06,EUR,USD,1.25\n2025-06-06,EUR,GBP,0.85\n"
)
EURO = """
[[campaigns]]
id = "fr-shop"
currency = "EUR"
goal = "cpa"
target = 20.0
max_bid = 8.0
daily_budget = 400.0
total_budget = 4000.0
strategy = "ortb1"
strategy_params = { c = 2.0, lam = 0.5 }
creatives = ["cr1"]
[[campaigns.rules]]
when = { channel = "ctv" }
then = { set = 4.0 }
[[campaigns.rules]]
then = { cap = 6.0 }

[[campaigns]]
id = "us-shop"
goal = "roas"
target = 3.0
value_per_conversion = 50.0
max_bid = 5.0
daily_budget = 100.0
creatives = ["cr2"]

[[campaigns]]
id = "fr-roas"
currency = "EUR"
goal = "roas"
target = 3.0
value_per_conversion = 40.0
max_bid = 5.0
daily_budget = 100.0
creatives = ["cr3"]
"""


def test_euro_campaign_is_converted_at_the_latest_rate() -> None:
    camps = load_in_account_currency(EURO, "c.toml", "USD", FX)
    c = camps["fr-shop"]
    k = 1.25  # the table's last date, 2025-06-06
    assert (c.target, c.max_bid, c.daily_budget, c.total_budget) == (25.0, 10.0, 500.0, 5000.0)
    assert c.currency == "EUR"
    assert c.bid_strategy.c == 2.0 * k and c.bid_strategy.lam == 0.5  # type: ignore[attr-defined]
    assert [r.then.set for r in c.rules] == [4.0 * k, None]
    assert [r.then.cap for r in c.rules] == [None, 6.0 * k]
    assert c.goal_value.value(0.01, 0.1) == pytest.approx(0.01 * 0.1 * 25.0 * 1000)
    assert c.fx is not None and (c.fx.currency, c.fx.rate, str(c.fx.rate_date)) == (
        "EUR",
        k,
        "2025-06-06",
    )
    assert c.fx.original == {
        "max_bid": 8.0,
        "daily_budget": 400.0,
        "total_budget": 4000.0,
        "target": 20.0,
    }


def test_account_currency_campaigns_and_ratios_are_untouched() -> None:
    camps = load_in_account_currency(EURO, "c.toml", "USD", FX)
    plain = load_campaigns(EURO)
    assert camps["us-shop"] == plain["us-shop"] and camps["us-shop"].fx is None
    roas = camps["fr-roas"]
    assert roas.target == 3.0  # a ratio: the same in any currency
    assert roas.value_per_conversion == 50.0 and roas.max_bid == 6.25
    # on a euro account, the euro campaigns are as written and nothing needs a table
    euros = load_in_account_currency(EURO.replace('currency = "EUR"', ""), "c.toml", "EUR", None)
    assert euros["fr-shop"].max_bid == 8.0 and euros["fr-shop"].fx is None


def test_cross_rate_through_the_base() -> None:
    text = EURO.replace('currency = "EUR"', 'currency = "GBP"', 1)
    c = load_in_account_currency(text, "c.toml", "USD", FX)["fr-shop"]
    assert c.max_bid == pytest.approx(8.0 * 1.25 / 0.85, abs=1e-6)


def test_no_table_or_unknown_currency_refuses_the_file_naming_the_campaign() -> None:
    with pytest.raises(CampaignError) as info:
        load_in_account_currency(EURO, "c.toml", "USD", None)
    assert info.value.errors[0].startswith("c.toml: campaign 'fr-shop': currency: converting EUR")
    assert "BIDOPT_FX_FILE" in info.value.errors[0]
    with pytest.raises(CampaignError) as info:
        load_in_account_currency(EURO.replace('"EUR"', '"CHF"'), "c.toml", "USD", FX)
    assert [e.split(": currency:")[0] for e in info.value.errors] == [
        "c.toml: campaign 'fr-shop'",
        "c.toml: campaign 'fr-roas'",
    ]
    assert "'CHF' is not in the FX table" in info.value.errors[0]


def test_bad_currency_code_is_a_field_error() -> None:
    with pytest.raises(CampaignError) as info:
        load_in_account_currency(EURO.replace('"EUR"', '"euro"', 1), "c.toml", "USD", FX)
    assert info.value.errors[0].startswith("c.toml: campaign 'fr-shop': currency: must match")


SAMPLE_PARAMS: dict[str, dict[str, float]] = {
    "constant": {"bid": 3.0},
    "random": {"low": 1.0, "high": 4.0},
    "linear": {"base_bid": 2.0, "avg_value": 5.0},
    "value": {},
    "ortb1": {"c": 2.0, "lam": 0.3},
    "ortb2": {"c": 2.0, "lam": 0.3},
    "lagrangian": {"lam": 0.4},
}


# rlb takes no strategy_params (its [campaigns.rlb] table; conversion: test_rlb_campaign.py)
CONFIGURABLE = sorted(set(STRATEGIES) - FITTED_ONLY)


def test_every_strategy_is_covered() -> None:
    assert set(STRATEGY_MONEY_PARAMS) == set(CONFIGURABLE) == set(SAMPLE_PARAMS)


@pytest.mark.parametrize("name", CONFIGURABLE)
def test_converted_strategy_bids_scale_with_the_rate(name: str) -> None:
    """Converting the money parameters by k scales the bid for a k-times value by k: the
    campaign bids the same in either currency. A ratio wrongly converted, or a price scale
    forgotten, breaks this."""
    params = ", ".join(f"{p} = {v}" for p, v in SAMPLE_PARAMS[name].items())
    text = f"""
[[campaigns]]
id = "c"
currency = "EUR"
goal = "cpm"
target = 2.0
max_bid = 50.0
daily_budget = 100.0
strategy = "{name}"
strategy_params = {{ {params} }}
creatives = ["cr"]
"""
    own = load_campaigns(text)["c"].bid_strategy
    converted = load_in_account_currency(text, "c.toml", "USD", FX)["c"].bid_strategy
    k = 1.25
    for value in (0.5, 2.0, 7.0):
        assert converted.price(value * k) == pytest.approx(own.price(value) * k, rel=1e-9)


def test_campaigns_check_converts_with_an_fx_file(tmp_path: Path) -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    bidding.cli.register(app)

    @app.callback()
    def main() -> None:
        """bidopt"""

    (tmp_path / "c.toml").write_text(EURO)
    (tmp_path / "fx.csv").write_text(
        "date,base,currency,rate\n2025-06-06,EUR,USD,1.25\n2025-06-06,EUR,GBP,0.85\n"
    )
    check = ["campaigns", "check", str(tmp_path / "c.toml")]
    result = CliRunner().invoke(app, check)
    assert result.exit_code == 1 and "currency: converting EUR to USD" in result.stderr
    result = CliRunner().invoke(app, [*check, "--fx", str(tmp_path / "fx.csv")])
    assert result.exit_code == 0, result.output
    assert "500/day, 5000 total" in result.stdout and "EUR @ 1.25" in result.stdout
