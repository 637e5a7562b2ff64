"""POST /openrtb2/bid (OpenRTB 2.6) and GET /v1/win, the win notice its bids carry.

An exchange sends a BidRequest; every imp is decided by the same function as /v1/bid
(`bidder.decide_requests` over `bidding.selection`) against the campaigns file, with the imp's
format, sizes, video durations and the request's `badv` and `bcat` as creative constraints
(`Slot`). The answer is a BidResponse, or HTTP 204 with the reason in `X-Bidopt-Nobid-Reason`.
A malformed BidRequest is a 400 `{"detail", "field"}` (OpenRTB practice; errors.py maps this
route's validation errors), never a 500.

Deadlines: when `tmax` minus the network margin is below the recent p99 handling time of this
endpoint (`HandlingTimes`, fed by the app middleware), the answer is an immediate 204
(`insufficient_time`) rather than a late bid the exchange would drop.

Win notices: each bid's `nurl` points at GET /v1/win with the auction's ids, signed with an HMAC
so that only notices for bids this service made can add spend; the exchange substitutes the
clearing price for `${AUCTION_PRICE}`. /v1/win turns it into a win event and applies it through
/v1/events' logic (a notice repeated by the exchange is counted once).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from starlette.responses import Response

from bidding.selection import Slot
from serving import bidder, openrtb
from serving.dmp import fill_from_profile
from serving.errors import InvalidSignature, PayloadTooLarge, UnknownCampaign, responses_for
from serving.events import Event, EventsRequest, EventsResult
from serving.routes import Service, ServiceDep, json_response, record_events
from serving.schemas import ErrorBody

router = APIRouter()

NOBID_HEADER: Final = "X-Bidopt-Nobid-Reason"
AUCTION_PRICE: Final = "${AUCTION_PRICE}"


def sign(secret: bytes, *parts: str) -> str:
    return hmac.new(secret, "\n".join(parts).encode(), hashlib.sha256).hexdigest()[:32]


def no_bid(service: Service, reason: str) -> Response:
    service.metrics.openrtb_nobids.labels(reason).inc()
    return Response(status_code=204, headers={NOBID_HEADER: reason})


def _slot(imp: openrtb.Imp, blocked: frozenset[str], bcat: frozenset[str]) -> Slot:
    sizes = tuple(imp.banner.sizes()) if imp.banner is not None else ()
    video = imp.video
    return Slot(
        format=imp.format,
        sizes=sizes or None,
        min_duration=video.minduration if video is not None else None,
        max_duration=video.maxduration if video is not None else None,
        blocked_adomains=blocked,
        blocked_categories=bcat,
    )


@router.post(
    "/openrtb2/bid",
    response_model=openrtb.BidResponse,
    responses={
        204: {"description": f"No bid; the reason is in the {NOBID_HEADER} header"},
        400: {"model": ErrorBody, "description": "Malformed BidRequest: reason and field"},
        **responses_for(PayloadTooLarge),
    },
    summary="OpenRTB 2.6 BidRequest -> BidResponse, or 204 with the no-bid reason",
    tags=["openrtb"],
)
async def openrtb_bid(
    body: openrtb.BidRequest,
    service: ServiceDep,
    exchange: Annotated[
        str | None, Query(max_length=256, description="Exchange name, a model feature")
    ] = None,
) -> Response:
    settings = service.settings
    if body.tmax is not None and (
        body.tmax - settings.openrtb_network_margin_ms < service.rtb_times.p99_ms
        or body.tmax <= settings.openrtb_network_margin_ms
    ):
        return no_bid(service, "insufficient_time")
    account = settings.account_currency
    if body.cur and account not in body.cur:
        return no_bid(service, "currency_not_supported")
    predictor = service.holder.current
    if predictor is None:
        return no_bid(service, "models_not_ready")
    campaigns = service.book.campaigns
    if not campaigns:
        return no_bid(service, "no_campaigns")
    now = datetime.now(UTC)
    blocked = frozenset(d.strip().lower() for d in body.badv if d.strip())
    bcat = frozenset(c.strip().upper() for c in body.bcat if c.strip())
    requests, slots, caps, reasons = [], [], [], []
    for imp, req in zip(body.imp, openrtb.to_impressions(body, now), strict=True):
        if imp.bidfloorcur != account:
            reasons.append("currency_not_supported")
            continue
        req["exchange"] = exchange
        caps.append(fill_from_profile(req, service.keeper.store))
        slots.append(_slot(imp, blocked, bcat))
        requests.append(req)
    bids: list[dict[str, Any]] = []
    if requests:
        decided = bidder.decide_requests(
            predictor,
            requests,
            list(campaigns.values()),
            states=service.keeper.states,
            campaign_imps=caps,
            slots=slots,
            winrate=service.winrate(predictor),
            rng=service.rng,
        )
        for req, (result, decision) in zip(requests, decided, strict=True):
            service.metrics.count_bid("bid" if result["bid"] else result["reason"])
            if not decision.bid:
                reasons.append(decision.reason)
                continue
            bids.append(_bid(service, body, req, decision.winner, campaigns, now))
    if not bids:
        return no_bid(service, reasons[0] if reasons else "no_bid")
    return json_response(
        {"id": body.id, "seatbid": [{"bid": bids, "seat": "bidopt"}], "cur": account}
    )


def _bid(
    service: Service,
    body: openrtb.BidRequest,
    req: dict[str, Any],
    winner: Any,
    campaigns: Any,
    now: datetime,
) -> dict[str, Any]:
    campaign = campaigns[winner.campaign_id]
    creative = next(c for c in campaign.creatives if c.id == winner.creative_id)
    uid = str(req.get("user_id") or "")
    t = str(int(now.timestamp()))
    parts = (body.id, str(req["impression_id"]), campaign.id, creative.id, uid, t)
    query = urlencode(
        {
            "rid": parts[0],
            "imp": parts[1],
            "cid": parts[2],
            "crid": parts[3],
            "uid": uid,
            "t": t,
            "sig": sign(service.win_secret, *parts),
        }
    )
    bid: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "impid": parts[1],
        "price": round(winner.price, 6),
        "crid": creative.id,
        "cid": campaign.id,
        "adomain": [creative.adomain] if creative.adomain else [],
        "nurl": f"{service.settings.win_base_url()}/v1/win?{query}&price={AUCTION_PRICE}",
    }
    if creative.width is not None:
        bid["w"], bid["h"] = creative.width, creative.height
    if creative.categories:
        bid["cat"] = list(creative.categories)
    return bid


@router.get(
    "/v1/win",
    response_model=EventsResult,
    responses=responses_for(InvalidSignature, UnknownCampaign),
    summary="Win notice (an OpenRTB bid's nurl): records the win as a /v1/events win event",
    tags=["openrtb"],
)
async def win_notice(
    service: ServiceDep,
    rid: Annotated[str, Query(min_length=1, max_length=100, description="BidRequest id")],
    imp: Annotated[str, Query(min_length=1, max_length=100, description="imp id")],
    cid: Annotated[str, Query(min_length=1, max_length=128, description="campaign id")],
    crid: Annotated[str, Query(min_length=1, max_length=128, description="creative id")],
    t: Annotated[int, Query(ge=0, le=10**11, description="bid time, epoch seconds")],
    sig: Annotated[str, Query(max_length=64, description="signature issued with the bid")],
    price: Annotated[
        float, Query(ge=0, le=1_000_000, allow_inf_nan=False, description="clearing CPM")
    ],
    uid: Annotated[str, Query(max_length=256)] = "",
) -> Response:
    expected = sign(service.win_secret, rid, imp, cid, crid, uid, str(t))
    if not hmac.compare_digest(sig.encode(), expected.encode()):
        raise InvalidSignature()
    event = Event(
        event_id=f"win:{rid}:{imp}",
        type="win",
        impression_id=imp,
        campaign_id=cid,
        user_id=uid or None,
        price=price,
    )
    return json_response(await record_events(service, EventsRequest(events=[event])))
