"""Win notices, clicks and conversions: checked as a whole batch, then counted once each.

A batch is validated whole, times and prices included, before any event id is claimed or any
spend booked: a malformed event is a 422, an event for a campaign that is not in the campaigns
file a 404, a win priced above what the campaign can bid or an event dated outside
[flight start, now + skew] a 422 naming `events[i].price` or `events[i].time`; in every case
nothing changed, so the sender can fix the one event and resend the batch. (Checking only part
of a batch first would leave it half applied, and the retry would count the applied half as
duplicates.)

Prices are booked in the account currency: a win priced in another `currency` is converted at
the rate of the event's date (UTC, `bidding.fx`) during the check, so the max-bid comparison
(with `FX_TOLERANCE` for the rate's move since the bid) and the spend both see the converted
amount; a currency the FX table does not know, or a date
it has no rate for, is a 422 naming `events[i].currency`.

Then each event id is claimed (`Store.claim_event`; a repeat is counted as a duplicate and
ignored) and applied: a win adds its paying price / 1000 to the campaign's spend for the
campaign-local day the event happened on (and to its flight total), and records an impression in
the user's profile; a click records a click. Conversions are counted.

Why the time window: an event id is remembered for `EVENT_TTL_S` (8 days), so an event dated
earlier could be replayed and counted twice; an event dated in the future, or in a year the
campaign does not run, would book spend to a day whose budget nobody checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from datetime import time as clock
from typing import Any, Final, NamedTuple

from bidding.campaigns import Campaign
from bidding.fx import FxTable, FxUnavailable, factor
from serving.api.schemas import Event
from serving.errors import UnknownCampaign, field_error
from serving.state.budgets import TOTAL, day_key
from serving.state.store import EVENT_TTL_S, Store

MAX_SKEW_S: Final = 300.0  # clocks of exchanges and this service may disagree by minutes
# A converted price may sit this far above the max bid: the bid was converted at the rate in
# force then, and the table can gain the day's new rate before the win is reported (the ECB's
# daily moves stay well under 2%). The OpenRTB win notice checks exactly, in the bid currency.
FX_TOLERANCE: Final = 0.02


def flight_start_s(campaign: Campaign) -> float | None:
    """Epoch seconds of the first moment of the campaign's flight (its local midnight)."""
    if campaign.flight is None or campaign.flight.start is None:
        return None
    return datetime.combine(campaign.flight.start, clock(0), campaign.tz).timestamp()


class Checked(NamedTuple):
    """An event found bookable: when (epoch seconds) and, for a win, its price in the account
    currency."""

    time: float
    price: float | None


def check_batch(
    events: Sequence[Event],
    campaigns: Mapping[str, Campaign],
    now: float,
    *,
    account_currency: str = "USD",
    fx: FxTable | None = None,
    skew_s: float = MAX_SKEW_S,
    max_age_s: float = EVENT_TTL_S,
) -> list[Checked]:
    """Each event's time (`now` when it gave none) and account-currency price once the whole
    batch is known to be bookable; else the first problem, raised before anything is applied."""
    checked = []
    for i, ev in enumerate(events):
        c = campaigns.get(ev.campaign_id)
        if c is None:
            raise UnknownCampaign(ev.campaign_id, f"events[{i}].campaign_id")
        t = now if ev.time is None else ev.time.timestamp()
        if t > now + skew_s:
            raise field_error(
                ("body", "events", i, "time"),
                f"event time is {t - now:.0f} s in the future (allowed skew {skew_s:g} s)",
                ev.time.isoformat() if ev.time else None,
            )
        start = flight_start_s(c)
        if start is not None and t < start:
            raise field_error(
                ("body", "events", i, "time"),
                f"event time is before campaign {c.id!r}'s flight start ({c.flight.start})",  # type: ignore[union-attr]
                ev.time.isoformat() if ev.time else None,
            )
        if t < now - max_age_s:
            raise field_error(
                ("body", "events", i, "time"),
                f"event time is more than {max_age_s / 86400:g} days ago, older than the window "
                "in which event ids are remembered (it could be counted twice)",
                ev.time.isoformat() if ev.time else None,
            )
        price = ev.price
        currency = ev.currency or account_currency
        if price is not None and currency != account_currency:
            day = datetime.fromtimestamp(t, UTC).toordinal()
            try:
                price = price * factor(fx, currency, account_currency, day)
            except FxUnavailable as exc:
                loc = ("body", "events", i, "currency")
                raise field_error(loc, exc.detail, ev.currency) from None
        limit = c.max_bid if currency == account_currency else c.max_bid * (1 + FX_TOLERANCE)
        if ev.type == "win" and price is not None and price > limit:
            said = f"{ev.price:g} {currency} = " if currency != account_currency else ""
            raise field_error(
                ("body", "events", i, "price"),
                f"paying price {said}{price:g} {account_currency} is above campaign {c.id!r}'s "
                f"max bid {c.max_bid:g}: no auction pays more than the bid",
                ev.price,
            )
        checked.append(Checked(t, price))
    return checked


def apply_events(
    events: Sequence[Event],
    checked: Sequence[Checked],
    campaigns: Mapping[str, Campaign],
    store: Store,
) -> dict[str, Any]:
    """Claim and apply each checked event (blocking store calls: run it off the event loop).

    Returns the counts, the ids of campaigns whose spend changed, and the count per type."""
    accepted = duplicates = 0
    touched: set[str] = set()
    by_type: dict[str, int] = {}
    for ev, (t, price) in zip(events, checked, strict=True):
        if not store.claim_event(ev.event_id):
            duplicates += 1
            continue
        accepted += 1
        by_type[ev.type] = by_type.get(ev.type, 0) + 1
        c = campaigns[ev.campaign_id]
        t_us = int(t * 1_000_000)
        if ev.type == "win":
            amount = (price or 0.0) / 1000.0
            store.add_spend(c.id, day_key(c, t), amount)
            if c.total_budget is not None:
                store.add_spend(c.id, TOTAL, amount)
            touched.add(c.id)
            if ev.user_id is not None:
                store.record_impression(ev.user_id, c.id, t_us, ev.event_id)
        elif ev.type == "click" and ev.user_id is not None:
            store.record_click(ev.user_id, c.id, t_us, ev.event_id)
    return {
        "accepted": accepted,
        "duplicates": duplicates,
        "touched": sorted(touched),
        "by_type": by_type,
    }
