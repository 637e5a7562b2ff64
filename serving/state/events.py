"""Win notices, clicks and conversions: checked as a whole batch, then counted once each.

A batch is validated whole, times and prices included, before any event id is claimed or any
spend booked: a malformed event is a 422, an event for a campaign that is not in the campaigns
file a 404, a win priced above what the campaign can bid or an event dated outside
[flight start, now + skew] a 422 naming `events[i].price` or `events[i].time`; in every case
nothing changed, so the sender can fix the one event and resend the batch. (Checking only part
of a batch first would leave it half applied, and the retry would count the applied half as
duplicates.)

Then each event id is claimed (`Store.claim_event`; a repeat is counted as a duplicate and
ignored), the accepted events are written to the ledger and made durable (state/ledger.py; if
that fails the claims are released and the answer is a 503, so the retry counts them), and only
then applied: a win adds its paying price / 1000 to the campaign's spend for the campaign-local
day the event happened on (and to its flight total), and records an impression in the user's
profile; a click records a click. Conversions are counted. At start the same `apply_records`
rebuilds in-process state from the ledger (`replay_ledger`).

Why the time window: an event id is remembered for `EVENT_TTL_S` (8 days), so an event dated
earlier could be replayed and counted twice; an event dated in the future, or in a year the
campaign does not run, would book spend to a day whose budget nobody checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from datetime import time as clock
from typing import Any, Final, NamedTuple

from bidding.campaigns import Campaign
from bidding.fx import FxTable, FxUnavailable, factor
from serving.api.schemas import Event
from serving.errors import UnknownCampaign, field_error
from serving.state.budgets import day_key
from serving.state.performance import Performance
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


def claim_events(events: Sequence[Event], store: Store) -> list[bool]:
    """Claim each event id (True the first time it is seen; a repeat is a duplicate). Blocking
    store calls: run it off the event loop."""
    return [store.claim_event(ev.event_id) for ev in events]


def release_events(events: Sequence[Event], claimed: Sequence[bool], store: Store) -> None:
    """Give back the claims of a batch that could not be made durable, so a retry counts it."""
    for ev, mine in zip(events, claimed, strict=True):
        if mine:
            store.release_event(ev.event_id)


def ledger_records(
    events: Sequence[Event],
    checked: Sequence[Checked],
    claimed: Sequence[bool],
    campaigns: Mapping[str, Campaign],
    account_currency: str = "USD",
) -> list[dict[str, Any]]:
    """The accepted events as ledger records, with the spend each win books and where: the
    price as reported (`price`, `currency`) and in the account currency (`amount`, /1000)."""
    out = []
    for ev, (t, price), mine in zip(events, checked, claimed, strict=True):
        if not mine:
            continue
        record: dict[str, Any] = {
            "t": int(t * 1_000_000),
            "id": ev.event_id,
            "type": ev.type,
            "imp": ev.impression_id,
            "cid": ev.campaign_id,
            "uid": ev.user_id,
        }
        if ev.type == "win":
            c = campaigns[ev.campaign_id]
            record.update(
                price=ev.price,
                currency=ev.currency or account_currency,
                amount=(price or 0.0) / 1000.0,
                day=day_key(c, t),
                total=c.total_budget is not None,
            )
        elif ev.type == "conversion":
            record["value"] = ev.value
        out.append(record)
    return out


def apply_records(records: Sequence[Mapping[str, Any]], store: Store) -> dict[str, Any]:
    """Book claimed events from their ledger records: what a request does after the ledger has
    them, and what start-up does to rebuild state from the ledger (blocking store calls)."""
    touched: set[str] = set()
    by_type: dict[str, int] = {}
    for r in records:
        kind, cid = r["type"], r["cid"]
        by_type[kind] = by_type.get(kind, 0) + 1
        store.book_event(r)
        if kind == "win":
            touched.add(cid)
    return {"touched": sorted(touched), "by_type": by_type}


def replay_ledger(
    records: Iterable[Mapping[str, Any]], store: Store | None, performance: Performance
) -> int:
    """Rebuild state from the ledger (start-up): with an in-process `store`, every event id
    claimed, every win's spend booked under the day it booked, user counters restored; in any
    case the performance window (decisions' predictions, events' outcomes). Returns the
    number of events replayed."""
    batch: list[Mapping[str, Any]] = []
    count = 0
    for r in records:
        kind = r.get("k")
        if kind == "d":
            out = r["out"]
            if out.get("bid"):
                performance.note_bid(out["impression_id"], out.get("pctr"), out.get("pcvr"))
            continue
        if kind != "e" or (store is not None and not store.claim_event(r["id"])):
            continue
        batch.append(r)
        if len(batch) >= 10_000:
            count += _replay_batch(batch, store, performance)
            batch = []
    return count + _replay_batch(batch, store, performance)


def _replay_batch(
    batch: list[Mapping[str, Any]], store: Store | None, performance: Performance
) -> int:
    if store is not None:
        apply_records(batch, store)
    performance.on_events(batch)
    return len(batch)
