"""OpenRTB 2.6: the subset of BidRequest/BidResponse bidopt reads and writes, and the mapping
from a BidRequest's impressions to the canonical request fields the models were trained on.

Exchanges send far more than this; unknown fields are ignored (OpenRTB's extension rule), while a
field bidopt reads with the wrong type is a 400 naming it. The device IP is anonymised here,
before anything else sees it, exactly as at ingestion.

Geography is the user's: `device.geo` (where the device is), else `user.geo` (the user's home),
never the publisher's. OpenRTB writes countries as ISO 3166-1 alpha-3 ("FRA"); the logs, the
models and campaign targeting use alpha-2 ("FR"), so the code is mapped here (pycountry's ISO
table, loaded once); an alpha-2 code, as some exchanges send, is kept.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import pycountry
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from bidding.fx import CURRENCY_PATTERN
from features.ipanon import anonymise_ip

# OpenRTB 2.6 list 5.21 (device type) -> canonical device_type
DEVICE_TYPES: Final = {
    1: "mobile",
    2: "desktop",
    3: "ctv",
    4: "mobile",
    5: "tablet",
    6: "other",
    7: "ctv",
}
CTV_DEVICES: Final = frozenset({3, 7})


def _upper(v: object) -> object:
    return v.strip().upper() if isinstance(v, str) else v


# ISO 4217 code; exchanges disagree on case, not on meaning (as for countries in targeting)
Currency = Annotated[str, BeforeValidator(_upper), Field(pattern=CURRENCY_PATTERN)]


class _Obj(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Format(_Obj):
    w: int = Field(ge=0)
    h: int = Field(ge=0)


class Banner(_Obj):
    w: int | None = Field(None, ge=0)
    h: int | None = Field(None, ge=0)
    format: list[Format] = []
    pos: int | None = None

    def sizes(self) -> list[tuple[int, int]]:
        out = [(f.w, f.h) for f in self.format]
        if self.w is not None and self.h is not None and (self.w, self.h) not in out:
            out.insert(0, (self.w, self.h))
        return out


class Video(_Obj):
    mimes: list[str] = []
    minduration: int | None = Field(None, ge=0)
    maxduration: int | None = Field(None, ge=0)
    w: int | None = Field(None, ge=0)
    h: int | None = Field(None, ge=0)
    placement: int | None = None


class Native(_Obj):
    request: str = ""
    ver: str | None = None


class Imp(_Obj):
    id: str = Field(min_length=1)
    banner: Banner | None = None
    video: Video | None = None
    native: Native | None = None
    bidfloor: float = Field(0.0, ge=0, allow_inf_nan=False)
    bidfloorcur: Currency = "USD"  # OpenRTB's default
    tagid: str | None = None

    @model_validator(mode="after")
    def _one_format(self) -> Imp:
        if self.banner is None and self.video is None and self.native is None:
            raise ValueError(f"imp {self.id!r} has no banner, video or native object")
        return self

    @property
    def format(self) -> Literal["banner", "video", "native"]:
        return "video" if self.video else "native" if self.native else "banner"

    def size(self) -> tuple[int | None, int | None]:
        if self.video is not None:
            return self.video.w, self.video.h
        if self.banner is not None:
            sizes = self.banner.sizes()
            return sizes[0] if sizes else (None, None)
        return None, None


class Publisher(_Obj):
    id: str | None = None
    name: str | None = None
    domain: str | None = None


class Site(_Obj):
    id: str | None = None
    domain: str | None = None
    page: str | None = None
    cat: list[str] = []
    publisher: Publisher | None = None


class App(_Obj):
    id: str | None = None
    bundle: str | None = None
    name: str | None = None
    cat: list[str] = []
    publisher: Publisher | None = None


class Geo(_Obj):
    country: str | None = None
    region: str | None = None
    city: str | None = None


class Device(_Obj):
    ua: str | None = None
    ip: str | None = None
    ipv6: str | None = None
    devicetype: int | None = None
    os: str | None = None
    geo: Geo | None = None


class Segment(_Obj):
    id: str | None = None
    name: str | None = None


class Data(_Obj):
    id: str | None = None
    name: str | None = None
    segment: list[Segment] = []


class User(_Obj):
    id: str | None = None
    buyeruid: str | None = None
    geo: Geo | None = None
    data: list[Data] = []


BID_REQUEST_EXAMPLE: Final[dict[str, Any]] = {
    "id": "80ce30c53c16e6ede735f123ef6e32361bfc7b22",
    "at": 1,
    "cur": ["USD"],
    "tmax": 120,
    "imp": [{"id": "1", "bidfloor": 0.03, "banner": {"w": 300, "h": 250}}],
    "site": {"domain": "www.foobar.com", "publisher": {"id": "8953"}},
    "device": {"ip": "123.145.167.10", "devicetype": 2, "os": "macOS", "geo": {"country": "USA"}},
    "user": {"id": "55816b39711f9b5acf3b90e3"},
    "badv": ["blocked-brand.example"],
}


class BidRequest(_Obj):
    model_config = ConfigDict(
        extra="ignore", frozen=True, json_schema_extra={"examples": [BID_REQUEST_EXAMPLE]}
    )

    id: str = Field(min_length=1)
    imp: list[Imp] = Field(min_length=1)
    site: Site | None = None
    app: App | None = None
    device: Device | None = None
    user: User | None = None
    at: Literal[1, 2] = 2
    tmax: int | None = Field(None, ge=0)
    cur: list[Currency] = []
    bcat: list[str] = []
    badv: list[str] = []

    @model_validator(mode="after")
    def _site_or_app(self) -> BidRequest:
        if self.site is not None and self.app is not None:
            raise ValueError("a BidRequest has site or app, not both")
        return self


class Bid(BaseModel):
    id: str
    impid: str
    price: float
    crid: str
    cid: str
    adomain: list[str] = []
    cat: list[str] = []
    nurl: str | None = None
    w: int | None = None
    h: int | None = None


class SeatBid(BaseModel):
    bid: list[Bid]
    seat: str = "bidopt"


class BidResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "80ce30c53c16e6ede735f123ef6e32361bfc7b22",
                    "seatbid": [
                        {
                            "bid": [
                                {
                                    "id": "3f1c0d9e",
                                    "impid": "1",
                                    "price": 2.1,
                                    "crid": "cmp-001-cr0",
                                    "cid": "cmp-001",
                                    "adomain": ["shop.adv-01.example"],
                                    "nurl": "http://127.0.0.1:8000/v1/win?rid=...&sig=..."
                                    "&price=${AUCTION_PRICE}",
                                    "w": 300,
                                    "h": 250,
                                }
                            ],
                            "seat": "bidopt",
                        }
                    ],
                    "cur": "USD",
                }
            ]
        }
    )

    id: str
    seatbid: list[SeatBid]
    bidid: str | None = None
    cur: str = "USD"


def _browser(ua: str | None) -> str | None:
    if not ua:
        return None
    low = ua.lower()
    for name in ("edg", "opr", "chrome", "firefox", "safari"):
        if name in low:
            return {"edg": "edge", "opr": "opera"}.get(name, name)
    return "other"


def channel_of(req: BidRequest, imp: Imp) -> str:
    """OpenRTB has no channel field: infer it from the inventory (site/app) and the device."""
    devicetype = req.device.devicetype if req.device else None
    if devicetype in CTV_DEVICES:
        return "ctv"
    if imp.video is not None:
        return "video"
    return "app" if req.app is not None else "web"


@functools.cache
def _alpha2() -> dict[str, str]:
    return {c.alpha_3: c.alpha_2 for c in pycountry.countries}


def country_code(value: str | None) -> str | None:
    """ISO 3166-1 alpha-2 for an OpenRTB country (alpha-3, or alpha-2 from lax exchanges)."""
    if not value:
        return None
    code = value.strip().upper()
    return _alpha2().get(code, code) if len(code) == 3 else code


def segments_of(user: User | None) -> list[str]:
    if user is None:
        return []
    return [s.id for d in user.data for s in d.segment if s.id]


def to_impressions(req: BidRequest, now: datetime | None = None) -> list[dict[str, Any]]:
    """One canonical request dict (features.schema.REQUEST_FIELDS) per imp of the BidRequest."""
    now = now or datetime.now(UTC)
    device = req.device or Device()
    geo = device.geo or (req.user.geo if req.user is not None else None) or Geo()
    country = country_code(geo.country)
    publisher = None
    if req.site is not None:
        publisher = req.site.domain or (req.site.publisher.domain if req.site.publisher else None)
    elif req.app is not None:
        publisher = req.app.bundle or req.app.id
    ip = anonymise_ip(device.ip or device.ipv6) if (device.ip or device.ipv6) else None
    segments = segments_of(req.user)
    out = []
    for imp in req.imp:
        w, h = imp.size()
        out.append(
            {
                "event_time": now,
                "request_id": req.id,
                "impression_id": imp.id,
                "user_id": req.user.id if req.user else None,
                "channel": channel_of(req, imp),
                "exchange": None,  # the sender is the exchange; the route fills it in
                "publisher": publisher,
                "placement_id": imp.tagid,
                "slot_width": w,
                "slot_height": h,
                "slot_visibility": None,
                "slot_format": imp.format,
                "device_type": DEVICE_TYPES.get(device.devicetype or 0),
                "os": device.os.lower() if device.os else None,
                "browser": _browser(device.ua),
                "ip": ip,
                "country": country,
                "region": geo.region,
                "city": geo.city,
                "user_segments": segments,
                "floor_price": imp.bidfloor,
                "auction_type": "first" if req.at == 1 else "second",
            }
        )
    return out
