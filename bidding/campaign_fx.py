"""Campaigns in their own currency (an advertiser billed in euros on a dollar account): their
money converted once, at load, into the account currency.

Why once and at load: budgets, targets and the max bid meet account-currency prices and spend
on every impression; converting them per impression would move a daily budget with the rate
during the day, which pacing cannot plan for, and would cost a lookup per campaign per
impression. The rate is the FX table's latest (its last date) when the campaigns file is
loaded; a later FX file applies from the next load of the campaigns file (touch it to
re-convert). `Campaign.fx` keeps the rate, its date and the amounts as the file gave them, for
`/v1/campaigns`.

What is money: `MONEY_FIELDS`, the target unless the goal is ROAS (a ratio), the rules' `set`
and `cap` prices, and the strategy parameters in `STRATEGY_MONEY_PARAMS` (a price scale such as
ORTB's c; lambdas are ratios). Scaling all of them by the rate scales every bid by the rate,
which is what tests/bidding/test_campaign_fx.py holds for every strategy.

The conversion is done on the TOML tables and the result validated again, so the converted
campaign is built (goal value, strategy, rules) exactly as one written in the account currency.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from bidding.campaigns import Campaign, CampaignError, parse_toml, validate_campaigns
from bidding.fx import FxTable, FxUnavailable, factor
from bidding.strategies import strategy_name

MONEY_FIELDS: Final = ("max_bid", "daily_budget", "total_budget", "value_per_conversion")
STRATEGY_MONEY_PARAMS: Final[dict[str, tuple[str, ...]]] = {
    "constant": ("bid",),
    "random": ("low", "high"),
    "linear": ("base_bid", "avg_value"),
    "value": (),
    "ortb1": ("c",),
    "ortb2": ("c",),
    "lagrangian": (),
}
DIGITS: Final = 6


@dataclass(frozen=True, slots=True)
class Converted:
    """How a campaign's money was converted: 1 `currency` = `rate` `account_currency`."""

    currency: str
    account_currency: str
    rate: float
    rate_date: date
    original: Mapping[str, float]  # the file's amounts, in `currency`


def _num(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def scale_money(raw: Mapping[str, Any], k: float) -> tuple[dict[str, Any], dict[str, float]]:
    """A campaign table with every amount times `k`, and the amounts as they were."""
    out = copy.deepcopy(dict(raw))
    original: dict[str, float] = {}
    names = list(MONEY_FIELDS) + ([] if raw.get("goal") == "roas" else ["target"])
    for name in names:
        if _num(out.get(name)):
            original[name] = out[name]
            out[name] = round(out[name] * k, DIGITS)
    params = out.get("strategy_params")
    if isinstance(params, dict):
        for p in STRATEGY_MONEY_PARAMS.get(strategy_name(str(out.get("strategy", "value"))), ()):
            if _num(params.get(p)):
                params[p] = round(params[p] * k, DIGITS)
    for rule in out.get("rules") or ():
        then = rule.get("then") if isinstance(rule, dict) else None
        if isinstance(then, dict):
            for p in ("set", "cap"):
                if _num(then.get(p)):
                    then[p] = round(then[p] * k, DIGITS)
    return out, original


def load_in_account_currency(
    text: str, source: str, account_currency: str, fx: FxTable | None
) -> dict[str, Campaign]:
    """`bidding.campaigns.load_campaigns`, with campaigns in another currency converted into
    `account_currency` at `fx`'s latest rate; CampaignError when a currency has no rate."""
    data = parse_toml(text, source)
    campaigns = validate_campaigns(data, source)  # every problem in the file's own terms first
    if all(c.currency in (None, account_currency) for c in campaigns.values()):
        return campaigns
    converted = dict(data)
    tables = list(data["campaigns"])
    notes: dict[str, Converted] = {}
    errors = []
    for i, raw in enumerate(tables):
        c = campaigns[raw["id"]]
        if c.currency in (None, account_currency):
            continue
        day = fx.last.toordinal() if fx is not None else 0
        try:
            k = factor(fx, c.currency, account_currency, day)
        except FxUnavailable as exc:
            errors.append(f"{source}: campaign {c.id!r}: currency: {exc.detail}")
            continue
        tables[i], original = scale_money(raw, k)
        assert fx is not None
        notes[c.id] = Converted(c.currency, account_currency, k, fx.last, original)
    if errors:
        raise CampaignError(errors)
    converted["campaigns"] = tables
    out = validate_campaigns(converted, source)
    for cid, note in notes.items():
        out[cid]._fx = note
    return out
