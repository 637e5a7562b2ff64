"""POST /v1/events: win notices, clicks and conversions (the rules are in state/events.py).

Events move money, so with an API key configured (BIDOPT_API_KEY) the sender must present it in
`X-API-Key`; without one the service only listens on loopback and says at start that event
ingestion is open.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from serving.api.auth import KEY_PARAMETER, require_key
from serving.api.schemas import EventsRequest, EventsResult
from serving.errors import (
    BodyTimeout,
    LedgerDown,
    PayloadTooLarge,
    Unauthorized,
    UnknownCampaign,
    responses_for,
)
from serving.lane import JsonBodyRoute
from serving.service import Service, json_response, service_of
from serving.state.events import (
    apply_records,
    check_batch,
    claim_events,
    ledger_records,
    release_events,
)
from serving.state.ledger import LedgerUnavailable

router = APIRouter(route_class=JsonBodyRoute)


@router.post(
    "/v1/events",
    response_model=EventsResult,
    responses=responses_for(
        Unauthorized, UnknownCampaign, BodyTimeout, PayloadTooLarge, LedgerDown
    ),
    summary="Win notices (paying price), clicks and conversions; a repeated event_id counts once",
    description="The whole batch is checked first, times and prices included: an event for a "
    "campaign that is not in the campaigns file is a 404, a win priced above the campaign's max "
    "bid or an event dated outside [flight start, now + 5 min] or older than 8 days a 422 naming "
    "`events[i].price` or `events[i].time`, a currency without a rate for the event's date a "
    "422 naming `events[i].currency`; in every case nothing is applied. A win's price in "
    "another currency is converted into the account currency at the event date's rate. With "
    "BIDOPT_API_KEY set, the X-API-Key header must carry it.",
    tags=["state"],
    openapi_extra={"parameters": [KEY_PARAMETER]},
)
async def events(body: EventsRequest, request: Request) -> Response:
    service = service_of(request)
    require_key(service.settings, request, writes="events")
    return json_response(await record_events(service, body))


async def record_events(service: Service, body: EventsRequest) -> dict[str, int]:
    """Check the batch whole, claim its ids, make the accepted events durable in the ledger,
    then book them; LedgerDown (503, claims released) if the ledger cannot take them."""
    campaigns = service.book.campaigns
    events = body.events
    checked = check_batch(
        events,
        campaigns,
        time.time(),
        account_currency=service.settings.account_currency,
        fx=service.fx.table,
    )
    keeper, ledger = service.keeper, service.ledger
    if not ledger.available:
        raise LedgerDown(ledger.reason or "unavailable")
    claimed = await asyncio.to_thread(claim_events, events, keeper.store)
    records = ledger_records(events, checked, claimed, campaigns, service.settings.account_currency)
    if records:
        try:
            await ledger.log_events(records)
        except LedgerUnavailable as e:
            await asyncio.to_thread(release_events, events, claimed, keeper.store)
            raise LedgerDown(str(e)) from None
    outcome = await asyncio.to_thread(apply_records, records, keeper.store)
    service.performance.on_events(records)
    outcome["accepted"] = len(records)
    outcome["duplicates"] = len(events) - len(records)
    if outcome["touched"]:
        await asyncio.to_thread(keeper.refresh, outcome["touched"])
    for kind, count in outcome["by_type"].items():
        service.metrics.events.labels(kind, "accepted").inc(count)
    if outcome["duplicates"]:
        service.metrics.events.labels("any", "duplicate").inc(outcome["duplicates"])
    service.sync_state_metrics()
    return {"accepted": outcome["accepted"], "duplicates": outcome["duplicates"]}
