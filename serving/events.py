"""POST /v1/events: win notices, clicks and conversions, counted once each.

A batch is validated whole before anything is applied: a malformed event is a 422 and an event
for a campaign that is not in the campaigns file a 404, and in both cases nothing changed. Then
each event id is claimed (`StateStore.claim_event`; a repeat is counted as a duplicate and
ignored) and applied: a win adds its paying price / 1000 to the campaign's spend for the
campaign-local day of the event (and to its flight total), and records an impression in the
user's profile; a click records a click. Conversions are counted (their value is for reporting;
no budget depends on it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bidding.campaigns import Campaign
from serving.budgets import TOTAL, Store, day_key
from serving.errors import UnknownCampaign
from serving.schemas import Id, Price

MAX_EVENTS = 10_000

EVENT_EXAMPLE: dict[str, Any] = {
    "event_id": "win-req-1-imp-1",
    "type": "win",
    "impression_id": "imp-1",
    "campaign_id": "cmp-001",
    "user_id": "u-123",
    "time": "2025-06-01T14:05:01Z",
    "price": 1.85,
}


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EVENT_EXAMPLE]})

    event_id: Id = Field(description="Unique per event: a repeated id is counted once.")
    type: Literal["win", "click", "conversion"]
    impression_id: Id
    campaign_id: Id = Field(description="A campaign of the campaigns file.")
    user_id: Id | None = None
    time: datetime | None = Field(
        default=None, description="When it happened; default now; naive values are UTC."
    )
    price: Annotated[Price, Field(le=1_000_000)] | None = Field(
        default=None, description="Paying price, CPM in the account currency; required for a win."
    )
    value: Annotated[Price, Field(le=1e12)] | None = Field(
        default=None, description="Conversion value (account currency)."
    )

    @model_validator(mode="after")
    def _win_has_price(self) -> Event:
        if self.type == "win" and self.price is None:
            raise ValueError("price is required for a win event (the paying price, CPM)")
        return self

    def epoch_s(self) -> float:
        if self.time is None:
            return time.time()
        t = self.time if self.time.tzinfo is not None else self.time.replace(tzinfo=UTC)
        return t.timestamp()


class EventsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"events": [EVENT_EXAMPLE]}]}
    )

    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"accepted": 1, "duplicates": 0}]})

    accepted: int = Field(description="Events applied now.")
    duplicates: int = Field(description="Events whose id was already seen: ignored.")


def check_campaigns(events: Sequence[Event], campaigns: Mapping[str, Campaign]) -> None:
    """Every event names a loaded campaign; else UnknownCampaign (404) before anything applies."""
    for i, ev in enumerate(events):
        if ev.campaign_id not in campaigns:
            raise UnknownCampaign(ev.campaign_id, f"events[{i}].campaign_id")


def apply_events(
    events: Sequence[Event], campaigns: Mapping[str, Campaign], store: Store
) -> dict[str, Any]:
    """Claim and apply each event (blocking store calls: run it off the event loop).

    Returns the counts, the ids of campaigns whose spend changed, and the count per type."""
    accepted = duplicates = 0
    touched: set[str] = set()
    by_type: dict[str, int] = {}
    for ev in events:
        if not store.claim_event(ev.event_id):
            duplicates += 1
            continue
        accepted += 1
        by_type[ev.type] = by_type.get(ev.type, 0) + 1
        c = campaigns[ev.campaign_id]
        t = ev.epoch_s()
        t_us = int(t * 1_000_000)
        if ev.type == "win":
            amount = (ev.price or 0.0) / 1000.0
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
