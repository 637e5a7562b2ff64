"""POST /openrtb2/bid (OpenRTB 2.6): a BidRequest in, a BidResponse or a 204 out.

An exchange sends a BidRequest; every imp is decided by the same function as /v1/bid
(`bidder.decide_requests` over `bidding.selection`) against the campaigns file, with the imp's
format, sizes, video durations and the request's `badv` and `bcat` as creative constraints
(`Slot`). The answer is a BidResponse, or HTTP 204 with the reason in `X-Bidopt-Nobid-Reason`.
A malformed BidRequest is a 400 `{"detail", "field"}` (OpenRTB practice: the route is a
`lane.BadRequestRoute`), never a 500; more imps than BIDOPT_MAX_IMPRESSIONS is a 413, as on /v1.

Currencies: every imp's floor (`bidfloorcur`, OpenRTB's default USD) is converted into the
account currency (BIDOPT_ACCOUNT_CURRENCY) for the decision, at the rate of the auction's date
(UTC, `bidding.fx`); the bid goes back in a currency the request allows (`cur`): the account's
when it is listed (or nothing is), else the first listed one the FX table (BIDOPT_FX_FILE)
converts, and the BidResponse's `cur` says which. A currency without a rate is a no-bid with
its reason (`currency_not_supported`, or `fx_rate_unavailable` when the table has the currency
but no rate for the date). The bid currency is signed into the win notice with the bid price.

Deadlines: when `tmax` minus the network margin is below the recent p99 handling time of this
endpoint (`HandlingTimes`, fed by the metrics middleware), the answer is an immediate 204
(`insufficient_time`) rather than a late bid the exchange would drop. Each bid carries a signed
win-notice URL (`openrtb.win`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from bidding.fx import FxUnavailable, Pricing, pricing
from bidding.selection import Slot
from serving import bidder
from serving.api.schemas import ErrorBody
from serving.errors import (
    BodyTimeout,
    MalformedRequest,
    PayloadTooLarge,
    TooManyItems,
    responses_for,
)
from serving.lane import BadRequestRoute
from serving.openrtb import schemas as openrtb
from serving.openrtb.win import win_url
from serving.service import Service, json_response, service_of
from serving.state.profiles import fill_from_profile

router = APIRouter(route_class=BadRequestRoute)

NOBID_HEADER: Final = "X-Bidopt-Nobid-Reason"
MAX_EXCHANGE_CHARS: Final = 256
EXCHANGE_PARAMETER: Final[dict[str, Any]] = {
    "name": "exchange",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "maxLength": MAX_EXCHANGE_CHARS},
    "description": "Exchange name, a model feature",
}


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
        **responses_for(BodyTimeout, PayloadTooLarge),
    },
    summary="OpenRTB 2.6 BidRequest -> BidResponse, or 204 with the no-bid reason",
    tags=["openrtb"],
    openapi_extra={"parameters": [EXCHANGE_PARAMETER]},
)
async def openrtb_bid(body: openrtb.BidRequest, request: Request) -> Response:
    service = service_of(request)
    settings = service.settings
    exchange = request.query_params.get("exchange")
    if exchange is not None and len(exchange) > MAX_EXCHANGE_CHARS:
        raise MalformedRequest(f"at most {MAX_EXCHANGE_CHARS} characters", "exchange")
    if len(body.imp) > settings.max_impressions:
        raise TooManyItems("imp", len(body.imp), settings.max_impressions)
    if body.tmax is not None and (
        body.tmax - settings.openrtb_network_margin_ms < service.rtb_times.p99_ms
        or body.tmax <= settings.openrtb_network_margin_ms
    ):
        return no_bid(service, "insufficient_time")
    account = settings.account_currency
    fx = service.fx.table
    now = datetime.now(UTC)
    day = now.toordinal()
    try:
        money = pricing(body.cur, account, fx, day)
    except FxUnavailable as exc:
        return no_bid(service, exc.reason)
    predictor = service.holder.current
    if predictor is None:
        return no_bid(service, "models_not_ready")
    if not service.ledger.available:
        return no_bid(service, "ledger_unavailable")
    campaigns = service.book.campaigns
    if not campaigns:
        return no_bid(service, "no_campaigns")
    blocked = frozenset(d.strip().lower() for d in body.badv if d.strip())
    bcat = frozenset(c.strip().upper() for c in body.bcat if c.strip())
    requests, slots, caps, reasons, imps = [], [], [], [], []
    for imp, req in zip(body.imp, openrtb.to_impressions(body, now), strict=True):
        try:
            req["floor_price"] = money.floor(imp.bidfloor, imp.bidfloorcur)
        except FxUnavailable as exc:
            reasons.append(exc.reason)
            continue
        imps.append(imp)
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
        made = zip(requests, (r for r, _ in decided), strict=True)
        service.log_decisions("openrtb", made, predictor.versions)
        for req, imp, (result, decision) in zip(requests, imps, decided, strict=True):
            service.metrics.count_bid("bid" if result["bid"] else result["reason"])
            if not decision.bid:
                reasons.append(decision.reason)
                continue
            price = money.bid(decision.winner.price, imp.bidfloor, imp.bidfloorcur)
            bids.append(_bid(service, body, req, decision.winner, campaigns, now, price, money))
    if not bids:
        return no_bid(service, reasons[0] if reasons else "no_bid")
    return json_response(
        {"id": body.id, "seatbid": [{"bid": bids, "seat": "bidopt"}], "cur": money.currency}
    )


def _bid(
    service: Service,
    body: openrtb.BidRequest,
    req: dict[str, Any],
    winner: Any,
    campaigns: Any,
    now: datetime,
    price: float,
    money: Pricing,
) -> dict[str, Any]:
    """One bid, `price` in the response's currency."""
    campaign = campaigns[winner.campaign_id]
    creative = next(c for c in campaign.creatives if c.id == winner.creative_id)
    bid: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "impid": str(req["impression_id"]),
        "price": price,
        "crid": creative.id,
        "cid": campaign.id,
        "adomain": [creative.adomain] if creative.adomain else [],
        "nurl": win_url(
            service.settings.win_base_url(),
            service.win_secret,
            request_id=body.id,
            impression_id=str(req["impression_id"]),
            campaign_id=campaign.id,
            creative_id=creative.id,
            user_id=str(req.get("user_id") or ""),
            bid_time=now,
            bid_price=price,
            bid_currency=money.currency,
        ),
    }
    if creative.width is not None:
        bid["w"], bid["h"] = creative.width, creative.height
    if creative.categories:
        bid["cat"] = list(creative.categories)
    return bid
