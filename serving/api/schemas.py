"""Request and response bodies of the /v1 API, one model per direction.

Request models are strict: unknown fields are refused (a typo such as `floorprice` would
otherwise be dropped and the impression scored without its floor), prices must be finite and
non-negative, and the enums of the canonical log schema are `Literal`s. Field names are those of
`features.schema.REQUEST_FIELDS`, so a validated impression's `__dict__` is what the online
encoder reads. Response models describe the JSON the handlers write (with orjson) and feed the
OpenAPI document; they are not re-validated per request.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bidding.fx import CURRENCY_PATTERN
from features.ipanon import IPV4_PREFIX, IPV6_PREFIX
from features.schema import AUCTION_TYPES, CHANNELS, DEVICE_TYPES

Channel = Literal[CHANNELS]  # type: ignore[valid-type]
AuctionType = Literal[AUCTION_TYPES]  # type: ignore[valid-type]
DeviceType = Literal[DEVICE_TYPES]  # type: ignore[valid-type]
Goal = Literal["cpc", "cpa", "roas", "cpm"]
# "not_eligible" is the service's own (an inline campaign for another channel); the others are
# bidding's: strategies (price), targeting (who), selection (creatives, rules).
NoBidReason = Literal[
    "below_floor", "not_eligible", "zero_bid", "invalid_value", "no_surplus", "budget_spent",
    "outside_flight_dates", "channel_not_targeted", "country_not_targeted",
    "region_not_targeted", "device_type_not_targeted", "os_not_targeted", "hour_not_targeted",
    "weekday_not_targeted", "publisher_blocked", "publisher_not_allowed", "segment_excluded",
    "segment_not_targeted", "ip_blocked", "frequency_cap_reached", "no_campaigns",
    "no_fitting_creative", "rule_no_bid", "no_allowed_creative", "currency_not_supported",
    "fx_rate_unavailable", "ledger_unavailable",
]  # fmt: skip

Text = Annotated[str, Field(max_length=256)]
Id = Annotated[str, Field(min_length=1, max_length=256)]
Price = Annotated[float, Field(ge=0, allow_inf_nan=False, description="CPM, account currency")]
Currency = Annotated[
    str, Field(pattern=CURRENCY_PATTERN, description="ISO 4217 code such as EUR", examples=["EUR"])
]
PositivePrice = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=1_000_000_000)]
Pixels = Annotated[int, Field(ge=0, le=100_000)]
Probability = Annotated[float, Field(ge=0, le=1)]

_STRICT = ConfigDict(extra="forbid")

EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)


def _utc_in_range(value: datetime) -> datetime:
    """Aware UTC, between 1970 and 2200: a date at either end of the calendar in a non-UTC
    offset cannot even be converted to UTC, and nothing bidopt sees happens outside that range."""
    try:
        t = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        t = None
    if t is None or not EARLIEST <= t < LATEST:
        raise ValueError(f"time {value.isoformat()} is out of range: 1970 to 2200 (UTC)")
    return t


Timestamp = Annotated[datetime, AfterValidator(_utc_in_range)]

IMPRESSION_EXAMPLE: dict[str, Any] = {
    "event_time": "2025-06-01T14:05:00Z",
    "channel": "web",
    "exchange": "adx",
    "publisher": "news.example.com",
    "placement_id": "p-123",
    "slot_width": 300,
    "slot_height": 250,
    "device_type": "mobile",
    "os": "android",
    "country": "FR",
    "user_segments": ["s12", "s40"],
    "advertiser_id": "adv-1",
    "floor_price": 0.5,
    "auction_type": "second",
    "user_imps_24h": 3,
    "user_clicks_24h": 0,
}


class Impression(BaseModel):
    """One impression opportunity: the request fields of the canonical log schema.

    Every field but `event_time` and `channel` may be omitted: the model then sees it as
    missing, exactly as a null column in the training logs. An unknown category value (a new
    publisher) is not an error: it falls into the model's unseen bucket.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [IMPRESSION_EXAMPLE]})

    event_time: Timestamp = Field(description="Auction time; naive values are taken as UTC.")
    channel: Channel
    exchange: Text | None = None
    publisher: Text | None = None
    placement_id: Text | None = None
    slot_width: Pixels | None = None
    slot_height: Pixels | None = None
    slot_visibility: Text | None = None
    slot_format: Text | None = None
    device_type: DeviceType | None = None
    os: Text | None = None
    browser: Text | None = None
    ip: Text | None = Field(
        default=None,
        description=f"Already anonymised (IPv4 /{IPV4_PREFIX}, IPv6 /{IPV6_PREFIX}).",
    )
    country: Text | None = None
    region: Text | None = None
    city: Text | None = None
    user_segments: list[Text] | None = Field(default=None, max_length=1000)
    advertiser_id: Text | None = None
    campaign_id: Text | None = None
    creative_id: Text | None = None
    floor_price: Price | None = None
    auction_type: AuctionType | None = None
    user_id: Text | None = Field(
        default=None,
        description="Fills the user counters (and segments) that are absent from the profile "
        "store, and applies frequency caps.",
    )
    user_imps_24h: Count | None = None
    user_clicks_24h: Count | None = None
    user_imps_7d: Count | None = None
    user_clicks_7d: Count | None = None
    user_secs_since_last_imp: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"impressions": [IMPRESSION_EXAMPLE]}]}
    )

    impressions: list[Impression] = Field(
        min_length=1, description="1..max_impressions impressions (default limit 1000)."
    )


class ModelTag(BaseModel):
    name: str
    version: str


class ModelVersions(BaseModel):
    ctr: ModelTag
    cvr: ModelTag


_MODELS_EXAMPLE = {
    "ctr": {"name": "bidopt-ctr", "version": "3"},
    "cvr": {"name": "bidopt-cvr", "version": "2"},
}


class Prediction(BaseModel):
    pctr: Probability = Field(description="Calibrated P(click | impression).")
    pcvr: Probability = Field(description="Calibrated P(conversion | click).")


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"predictions": [{"pctr": 0.0123, "pcvr": 0.041}], "models": _MODELS_EXAMPLE}
            ]
        }
    )

    predictions: list[Prediction]
    models: ModelVersions


class BidImpression(Impression):
    """An impression to bid on: its id, floor and auction type (OpenRTB `at`) are required."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"impression_id": "imp-1", **IMPRESSION_EXAMPLE, "auction_type": "first"}]
        },
    )

    impression_id: Id
    floor_price: Price = Field(
        description="Floor CPM (in `currency`); 0 when the exchange sets none."
    )
    auction_type: AuctionType = Field(description="OpenRTB `at`: 1 = first, 2 = second price.")
    currency: Currency | None = Field(
        default=None,
        description="Currency of the floor and of the answer's prices; default the account "
        "currency. Another one is converted at the rate of event_time's date (BIDOPT_FX_FILE); "
        "one without a rate is a no-bid (currency_not_supported, fx_rate_unavailable).",
    )


CAMPAIGN_EXAMPLE: dict[str, Any] = {
    "campaign_id": "c-42",
    "advertiser_id": "adv-1",
    "goal": "cpa",
    "target": 25.0,
    "max_bid": 8.0,
    "creative_ids": ["cr-1", "cr-2"],
}


class Campaign(BaseModel):
    """A candidate campaign, sent inline with the bid request."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CAMPAIGN_EXAMPLE]})

    campaign_id: Id
    advertiser_id: Text | None = Field(
        default=None, description="Replaces the impression's advertiser_id when scoring."
    )
    goal: Goal
    target: PositivePrice = Field(
        description="Target CPC (cpc), CPA (cpa), ROAS as a ratio (roas) or CPM (cpm)."
    )
    value_per_conversion: PositivePrice | None = Field(
        default=None, description="Conversion value; required for the roas goal."
    )
    max_bid: PositivePrice = Field(description="Highest CPM this campaign may bid.")
    creative_ids: list[Id] = Field(min_length=1, max_length=100)
    channels: list[Channel] | None = Field(
        default=None, description="Channels the campaign may bid on; omitted = all."
    )

    @model_validator(mode="after")
    def _roas_needs_value(self) -> Campaign:
        if self.goal == "roas" and self.value_per_conversion is None:
            raise ValueError("value_per_conversion is required for the roas goal")
        return self


class V1BidRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "impressions": [
                        {"impression_id": "imp-1", **IMPRESSION_EXAMPLE, "auction_type": "first"}
                    ],
                    "campaigns": [CAMPAIGN_EXAMPLE],
                }
            ]
        },
    )

    impressions: list[BidImpression] = Field(min_length=1)
    campaigns: list[Campaign] | None = Field(
        default=None, min_length=1, description="Inline candidate campaigns."
    )
    campaign_ids: list[Id] | None = Field(
        default=None,
        min_length=1,
        max_length=10_000,
        description="Candidates from the campaigns file by id. Neither this nor `campaigns`: "
        "every campaign of the file is a candidate.",
    )

    @model_validator(mode="after")
    def _unique_campaigns(self) -> V1BidRequest:
        if self.campaigns is not None and self.campaign_ids is not None:
            raise ValueError("send either inline campaigns or campaign_ids, not both")
        seen: set[str] = set()
        for c in self.campaigns or ():
            if c.campaign_id in seen:
                raise ValueError(f"campaign_id {c.campaign_id!r} appears more than once")
            seen.add(c.campaign_id)
        return self


class BidResult(BaseModel):
    impression_id: str
    bid: bool
    price: float | None = Field(description="Bid CPM, in `currency`; null on a no-bid.")
    currency: str = Field(description="Currency of price and expected_value.")
    campaign_id: str | None
    creative_id: str | None
    pctr: Probability | None
    pcvr: Probability | None
    expected_value: float | None = Field(
        description="Value of the impression to the chosen campaign, CPM in `currency` (before "
        "the max-bid cap)."
    )
    reason: NoBidReason | None = Field(description="Why there is no bid; null on a bid.")
    rule: str | None = Field(default=None, description="The campaign's bid rule that fired.")
    propensity: Probability | None = Field(
        default=None,
        description="P(this creative | impression, campaign) under the campaign's exploration, "
        "for off-policy evaluation.",
    )


class V1BidResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "bids": [
                        {
                            "impression_id": "imp-1",
                            "bid": True,
                            "price": 2.1,
                            "currency": "USD",
                            "campaign_id": "c-42",
                            "creative_id": "cr-2",
                            "pctr": 0.0123,
                            "pcvr": 0.0068,
                            "expected_value": 2.1,
                            "reason": None,
                        }
                    ],
                    "models": _MODELS_EXAMPLE,
                }
            ]
        }
    )

    bids: list[BidResult]
    models: ModelVersions


class ErrorBody(BaseModel):
    """Every client error that is not a validation error: what went wrong and where."""

    detail: str
    field: str | None


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"]


class LoadedModelInfo(BaseModel):
    name: str
    alias: str
    version: str
    run_id: str | None
    loaded_at: str
    trained_at: str | None


class RefusedVersion(BaseModel):
    name: str
    version: str
    reason: str
    at: str


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"ready": True, "reason": None},
                {"ready": False, "reason": "registry unreachable: no MLflow store at ..."},
            ]
        }
    )

    ready: bool
    reason: str | None = Field(description="Why the service is not ready; null when it is.")


class ModelsStatus(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ready": True,
                    "models": {
                        "ctr": {
                            "name": "bidopt-ctr",
                            "alias": "champion",
                            "version": "3",
                            "run_id": "9f0c...",
                            "loaded_at": "2025-06-01T14:00:00+00:00",
                            "trained_at": "2025-06-01T13:40:00+00:00",
                        }
                    },
                    "last_reload_at": "2025-06-01T14:00:00+00:00",
                    "last_reload_error": None,
                    "refused": [],
                    "reloads_succeeded": 1,
                    "reloads_failed": 0,
                }
            ]
        }
    )

    ready: bool
    models: dict[str, LoadedModelInfo]
    last_reload_at: str | None
    last_reload_error: str | None
    refused: list[RefusedVersion]
    reloads_succeeded: int
    reloads_failed: int


class ReloadResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "changed": True,
                    "models": {
                        "ctr": {
                            "name": "bidopt-ctr",
                            "alias": "champion",
                            "version": "4",
                            "run_id": "9f0c...",
                            "loaded_at": "2025-06-01T15:00:00+00:00",
                            "trained_at": "2025-06-01T14:40:00+00:00",
                        }
                    },
                    "error": None,
                }
            ]
        }
    )

    changed: bool = Field(description="A new version was swapped in.")
    models: dict[str, LoadedModelInfo]
    error: str | None = Field(description="Why a new version was refused or not reachable.")
    campaigns_reloaded: bool | None = Field(
        default=None,
        description="The campaigns file changed and was loaded (true) or refused (false); null "
        "when unchanged or not configured.",
    )
    fx_reloaded: bool | None = Field(
        default=None,
        description="The FX file changed and was loaded (true) or refused (false); null when "
        "unchanged or not configured.",
    )


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
    time: Timestamp | None = Field(
        default=None,
        description="When it happened; default now; naive values are UTC. Refused outside "
        "[the campaign's flight start, now + 5 minutes] and older than 8 days.",
    )
    price: Annotated[Price, Field(le=1_000_000)] | None = Field(
        default=None, description="Paying price, CPM in `currency`; required for a win."
    )
    currency: Currency | None = Field(
        default=None,
        description="Currency of price; default the account currency. Another one is converted "
        "at the rate of the event's date before it is booked (BIDOPT_FX_FILE).",
    )
    value: Annotated[Price, Field(le=1e12)] | None = Field(
        default=None, description="Conversion value (account currency)."
    )

    @model_validator(mode="after")
    def _win_has_price(self) -> Event:
        if self.type == "win" and self.price is None:
            raise ValueError("price is required for a win event (the paying price, CPM)")
        return self


class EventsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"events": [EVENT_EXAMPLE]}]}
    )

    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"accepted": 1, "duplicates": 0}]})

    accepted: int = Field(description="Events applied now.")
    duplicates: int = Field(description="Events whose id was already seen: ignored.")


class CampaignPerformance(BaseModel):
    """From the ledger, over the rolling window: what the campaign really bought."""

    window_hours: float
    spend: float
    wins: int
    clicks: int
    conversions: int
    conversion_value: float
    ecpc: float | None = Field(description="Spend per click; null without clicks.")
    ecpa: float | None = Field(description="Spend per conversion; null without conversions.")
    target: float = Field(description="The campaign's target (CPC, CPA, ROAS or CPM).")
    goal: str
    ctr: float | None
    ctr_over_pctr: float | None = Field(
        description="Observed clicks / the predicted pCTR of the won impressions: 1 when pCTR "
        "is calibrated on this traffic; drift shows as a ratio away from 1."
    )
    cvr_over_pcvr: float | None


class CampaignMoney(BaseModel):
    currency: str = Field(description="The campaign's currency (the file's amounts).")
    rate: float = Field(description="1 unit of `currency` in the account currency.")
    rate_date: str = Field(description="The FX table's date the rate is from (its last, at load).")
    original: dict[str, float] = Field(
        description="Target, max bid and budgets as the file gave them, in `currency`."
    )


class CampaignStatus(BaseModel):
    id: str
    advertiser: str | None
    goal: str
    strategy: str
    currency: str = Field(description="The campaign's currency; amounts here are the account's.")
    fx: CampaignMoney | None = Field(
        description="How the file's amounts were converted; null when in the account currency."
    )
    target: float
    max_bid: float
    daily_budget: float
    total_budget: float | None
    timezone: str
    day: str = Field(description="The campaign-local date spend is counted for now.")
    spend_today: float
    spend_total: float | None
    budget_left: float
    pacing_multiplier: float
    creatives: list[str]
    performance: CampaignPerformance


class FxStatus(BaseModel):
    file: str | None = Field(description="BIDOPT_FX_FILE; null: the account currency only.")
    base: str | None
    first_date: str | None
    last_date: str | None = Field(description="Rates are used up to 5 days after it.")
    currencies: list[str]
    loaded_at: str | None
    last_error: list[str] | None = Field(
        description="Why the last change of the file was refused; the previous table is in use."
    )
    reloads_succeeded: int
    reloads_failed: int


class CampaignsStatus(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "file": "campaigns.toml",
                    "loaded_at": "2025-06-01T14:00:00+00:00",
                    "last_error": None,
                    "reloads_succeeded": 0,
                    "reloads_failed": 0,
                    "backend": "redis",
                    "degraded": False,
                    "account_currency": "USD",
                    "fx": {
                        "file": "fx.csv",
                        "base": "EUR",
                        "first_date": "2025-05-26",
                        "last_date": "2025-06-13",
                        "currencies": ["EUR", "GBP", "USD"],
                        "loaded_at": "2025-06-13T16:30:00+00:00",
                        "last_error": None,
                        "reloads_succeeded": 0,
                        "reloads_failed": 0,
                    },
                    "campaigns": [
                        {
                            "id": "cmp-004",
                            "advertiser": None,
                            "goal": "cpa",
                            "strategy": "value",
                            "currency": "EUR",
                            "fx": {
                                "currency": "EUR",
                                "rate": 1.136,
                                "rate_date": "2025-06-13",
                                "original": {"target": 22.0, "max_bid": 8.8, "daily_budget": 88.0},
                            },
                            "target": 24.992,
                            "max_bid": 9.9968,
                            "daily_budget": 99.968,
                            "total_budget": None,
                            "timezone": "UTC",
                            "day": "2025-06-01",
                            "spend_today": 41.2,
                            "spend_total": None,
                            "budget_left": 58.8,
                            "pacing_multiplier": 0.93,
                            "creatives": ["cmp-004-cr0", "cmp-004-cr4"],
                            "performance": {
                                "window_hours": 24.0,
                                "spend": 41.2,
                                "wins": 20133,
                                "clicks": 18,
                                "conversions": 2,
                                "conversion_value": 80.0,
                                "ecpc": 2.29,
                                "ecpa": 20.6,
                                "target": 25.0,
                                "goal": "cpa",
                                "ctr": 0.00089,
                                "ctr_over_pctr": 0.97,
                                "cvr_over_pcvr": 1.1,
                            },
                        }
                    ],
                }
            ]
        }
    )

    file: str | None
    loaded_at: str | None
    last_error: list[str] | None = Field(
        description="Why the last change of the file was refused (one line per problem); the "
        "previous campaigns keep bidding."
    )
    reloads_succeeded: int
    reloads_failed: int
    backend: str = Field(description="memory, redis, or 'memory (redis unreachable)'.")
    degraded: bool
    account_currency: str = Field(description="Currency of budgets, spend and pacing.")
    fx: FxStatus
    campaigns: list[CampaignStatus]
