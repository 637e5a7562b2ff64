"""GET /v1/win: the win notice (`nurl`) each OpenRTB bid carries, signed so only bids this
service made can book spend, and only what they could have cost.

The URL names the auction (request, imp, campaign, creative, user), the bid time, the bid
price and its currency (`bc`), all under one HMAC; the exchange substitutes the clearing price
for `${AUCTION_PRICE}`, in the bid's currency (OpenRTB: the same units as the bid). A notice is
refused when its signature does not match (403, field `sig`) or when the clearing price is
above the signed bid (422, field `price`), both in the bid currency: a second-price auction
pays at most the bid, a first-price auction the bid itself, so a replayed URL with a forged
price cannot book more than we bid. The win is then applied through /v1/events' rules (checked
whole, counted once: an exchange repeating the notice books it once), which convert the price
into the account currency at the rate of the event's date before it touches spend. A URL
without `bc` (issued before currencies) is signed without it and priced in the account
currency.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Annotated, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from bidding.fx import CURRENCY_PATTERN
from serving.api.events import record_events
from serving.api.schemas import Event, EventsRequest, EventsResult
from serving.errors import InvalidSignature, UnknownCampaign, field_error, responses_for
from serving.service import json_response, service_of

router = APIRouter()

AUCTION_PRICE: Final = "${AUCTION_PRICE}"


def sign(secret: bytes, *parts: str) -> str:
    return hmac.new(secret, "\n".join(parts).encode(), hashlib.sha256).hexdigest()[:32]


def price_text(price: float) -> str:
    """The bid price as signed and as sent: the same text on both sides of the signature."""
    return repr(round(float(price), 6))


def win_url(
    base: str,
    secret: bytes,
    *,
    request_id: str,
    impression_id: str,
    campaign_id: str,
    creative_id: str,
    user_id: str,
    bid_time: datetime,
    bid_price: float,
    bid_currency: str,
) -> str:
    t = str(int(bid_time.timestamp()))
    bp = price_text(bid_price)
    parts = (request_id, impression_id, campaign_id, creative_id, user_id, t, bp, bid_currency)
    query = urlencode(
        {
            "rid": request_id,
            "imp": impression_id,
            "cid": campaign_id,
            "crid": creative_id,
            "uid": user_id,
            "t": t,
            "bp": bp,
            "bc": bid_currency,
            "sig": sign(secret, *parts),
        }
    )
    return f"{base}/v1/win?{query}&price={AUCTION_PRICE}"


@router.get(
    "/v1/win",
    response_model=EventsResult,
    responses=responses_for(InvalidSignature, UnknownCampaign),
    summary="Win notice (an OpenRTB bid's nurl): records the win as a /v1/events win event",
    tags=["openrtb"],
)
async def win_notice(
    request: Request,
    rid: Annotated[str, Query(min_length=1, max_length=100, description="BidRequest id")],
    imp: Annotated[str, Query(min_length=1, max_length=100, description="imp id")],
    cid: Annotated[str, Query(min_length=1, max_length=128, description="campaign id")],
    crid: Annotated[str, Query(min_length=1, max_length=128, description="creative id")],
    t: Annotated[int, Query(ge=0, le=10**11, description="bid time, epoch seconds")],
    bp: Annotated[str, Query(max_length=32, description="our bid price (CPM), as signed")],
    sig: Annotated[str, Query(max_length=64, description="signature issued with the bid")],
    price: Annotated[
        float, Query(ge=0, le=1_000_000, allow_inf_nan=False, description="clearing CPM")
    ],
    uid: Annotated[str, Query(max_length=256)] = "",
    bc: Annotated[
        str | None,
        Query(pattern=CURRENCY_PATTERN, description="currency of bp and price, as signed"),
    ] = None,
) -> Response:
    service = service_of(request)
    parts = (rid, imp, cid, crid, uid, str(t), bp) + ((bc,) if bc is not None else ())
    expected = sign(service.win_secret, *parts)
    if not hmac.compare_digest(
        sig.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    ):
        raise InvalidSignature()
    bid_price = float(bp)  # signed by us: a number we wrote
    if price > bid_price:
        raise field_error(
            ("query", "price"),
            f"clearing price {price:g} is above our bid {bid_price:g}"
            f"{' ' + bc if bc else ''}: no auction pays more than the bid",
            price,
        )
    event = Event(  # dated at the auction (signed): its day's budget, and its day's FX rate
        event_id=f"win:{rid}:{imp}",
        type="win",
        time=datetime.fromtimestamp(t, UTC),
        impression_id=imp,
        campaign_id=cid,
        user_id=uid or None,
        price=price,
        currency=bc,
    )
    return json_response(await record_events(service, EventsRequest(events=[event])))
