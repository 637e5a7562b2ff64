"""Who a campaign may bid on: the targeting, flight and frequency-cap tables, compiled.

The TOML tables (`targeting`, `flight`, `frequency_cap`) are validated here and compiled once per
campaign into frozensets and tuples (`CompiledTargeting`), so an impression costs one membership
test per targeted dimension. Only dimensions a campaign lists are checked: an absent list means
"any", and an unknown request value (None) fails an allow-list but never a block-list.

Matching is exact after normalisation: countries and regions upper-case, OS and publishers
lower-case (exchanges disagree on case, the meaning does not). Hours and weekdays (0 = Monday) are
in the campaign's timezone, and so are flight dates, both ends inclusive. IP ranges narrower than
the anonymised prefix (features.ipanon: IPV4_PREFIX, IPV6_PREFIX) are refused at load
(bidding.rules.check_network): they could never match an anonymised IP.

Every no-bid reason is a snake_case constant (like bidding.strategies' reasons), so that serving
can use it as a metrics label and an `X-Bidopt-Nobid-Reason` header as is.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from bidding.rules import IpNetwork, check_network
from features.schema import CHANNELS, DEVICE_TYPES

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

OUTSIDE_FLIGHT: Final = "outside_flight_dates"
CHANNEL_NOT_TARGETED: Final = "channel_not_targeted"
COUNTRY_NOT_TARGETED: Final = "country_not_targeted"
REGION_NOT_TARGETED: Final = "region_not_targeted"
DEVICE_NOT_TARGETED: Final = "device_type_not_targeted"
OS_NOT_TARGETED: Final = "os_not_targeted"
HOUR_NOT_TARGETED: Final = "hour_not_targeted"
WEEKDAY_NOT_TARGETED: Final = "weekday_not_targeted"
PUBLISHER_BLOCKED: Final = "publisher_blocked"
PUBLISHER_NOT_ALLOWED: Final = "publisher_not_allowed"
SEGMENT_EXCLUDED: Final = "segment_excluded"
SEGMENT_NOT_TARGETED: Final = "segment_not_targeted"
IP_BLOCKED: Final = "ip_blocked"
FREQUENCY_CAP_REACHED: Final = "frequency_cap_reached"

CreativeFormat = Literal["banner", "video", "native"]
Period = Literal["24h", "7d"]


def _listify(v: object) -> object:
    return [v] if isinstance(v, str | int) and not isinstance(v, bool) else v


def _one_of(known: tuple[str, ...], what: str) -> AfterValidator:
    def check(v: str) -> str:
        if v not in known:
            raise ValueError(f"unknown {what} {v!r} (known: {', '.join(known)})")
        return v

    return AfterValidator(check)


def _int_set(lo: int, hi: int, what: str) -> BeforeValidator:
    """Accept 18, "18..23", or a list of both; wrap-around ranges must be split in two."""

    def parse(v: object) -> frozenset[int]:
        out: set[int] = set()
        bad = "{!r} is not a " + what + f" or a range such as '{lo}..{hi}'"
        for item in v if isinstance(v, list | tuple) else [v]:
            text = str(item).strip()
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise ValueError(bad.format(item))
            a_txt, _, b_txt = text.partition("..")
            try:
                a, b = int(a_txt), int(b_txt or a_txt)
            except ValueError:
                raise ValueError(bad.format(item)) from None
            if not (lo <= a <= hi and lo <= b <= hi):
                raise ValueError(f"{item!r}: {what}s are {lo}..{hi}")
            if a > b:
                raise ValueError(
                    f"{item!r}: start above end; split a range over midnight or the weekend "
                    f"in two, e.g. ['22..23', '0..2']"
                )
            out.update(range(a, b + 1))
        if not out:
            raise ValueError("must not be empty (omit it to target every " + what + ")")
        return frozenset(out)

    return BeforeValidator(parse)


Listed = BeforeValidator(_listify)
Channel = Annotated[str, _one_of(CHANNELS, "channel")]
DeviceType = Annotated[str, _one_of(DEVICE_TYPES, "device type")]
Upper = Annotated[str, AfterValidator(lambda s: s.strip().upper())]
Lower = Annotated[str, AfterValidator(lambda s: s.strip().lower())]
IpRange = Annotated[str, AfterValidator(check_network)]


def _allow() -> Any:
    """An optional allow-list: absent means any; empty would mean none, so it is refused."""
    return Field(None, min_length=1)


class Targeting(BaseModel):
    """Allow-lists (None = any) and block-lists (empty = none) over request fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channels: Annotated[tuple[Channel, ...] | None, Listed] = _allow()
    countries: Annotated[tuple[Upper, ...] | None, Listed] = _allow()
    regions: Annotated[tuple[Upper, ...] | None, Listed] = _allow()
    device_types: Annotated[tuple[DeviceType, ...] | None, Listed] = _allow()
    os: Annotated[tuple[Lower, ...] | None, Listed] = _allow()
    hours: Annotated[frozenset[int] | None, _int_set(0, 23, "hour")] = None
    weekdays: Annotated[frozenset[int] | None, _int_set(0, 6, "weekday")] = None
    publisher_allow: Annotated[tuple[Lower, ...] | None, Listed] = _allow()
    publisher_block: Annotated[tuple[Lower, ...], Listed] = ()
    segments_include: Annotated[tuple[str, ...] | None, Listed] = _allow()
    segments_exclude: Annotated[tuple[str, ...], Listed] = ()
    ip_block: Annotated[tuple[IpRange, ...], Listed] = ()


class Flight(BaseModel):
    """Inclusive dates in the campaign's timezone; either end may be open."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: date | None = None
    end: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Flight:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class FrequencyCap(BaseModel):
    """At most `impressions` per user per period: the profile store counts exactly 24h and 7d."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    impressions: int = Field(ge=1)
    period: Period = "24h"


def _opt(values: Collection[Any] | None) -> frozenset[Any] | None:
    return frozenset(values) if values is not None else None


@dataclass(frozen=True, slots=True)
class CompiledTargeting:
    """A campaign's eligibility checks, cheapest and most selective first."""

    start: date | None
    end: date | None
    channels: frozenset[str] | None
    countries: frozenset[str] | None
    regions: frozenset[str] | None
    device_types: frozenset[str] | None
    os: frozenset[str] | None
    hours: frozenset[int] | None
    weekdays: frozenset[int] | None
    publisher_allow: frozenset[str] | None
    publisher_block: frozenset[str]
    segments_include: frozenset[str] | None
    segments_exclude: frozenset[str]
    ip_block: tuple[IpNetwork, ...]
    cap: int  # 0 = no frequency cap
    cap_window: int  # index into (imps_24h, imps_7d)
    # whether `check` reads the hour, weekday or date: converting the auction time to the
    # campaign's timezone costs as much as the rest of the check (set from the fields above)
    uses_local_time: bool = field(init=False)

    def __post_init__(self) -> None:
        timed = (self.start, self.end, self.hours, self.weekdays) != (None, None, None, None)
        object.__setattr__(self, "uses_local_time", timed)

    def check(
        self,
        request: Mapping[str, Any],
        hour: int | None,
        weekday: int | None,
        segments: frozenset[str],
        ip: IpAddress | None,
        today: date | None,
        campaign_imps: tuple[int, int] | None,
    ) -> str | None:
        """None when eligible, else the first failing dimension's reason."""
        if self.start is not None and (today is None or today < self.start):
            return OUTSIDE_FLIGHT
        if self.end is not None and (today is None or today > self.end):
            return OUTSIDE_FLIGHT
        if self.channels is not None and request.get("channel") not in self.channels:
            return CHANNEL_NOT_TARGETED
        if self.countries is not None and _upper(request.get("country")) not in self.countries:
            return COUNTRY_NOT_TARGETED
        if self.regions is not None and _upper(request.get("region")) not in self.regions:
            return REGION_NOT_TARGETED
        if self.device_types is not None and request.get("device_type") not in self.device_types:
            return DEVICE_NOT_TARGETED
        if self.os is not None and _lower(request.get("os")) not in self.os:
            return OS_NOT_TARGETED
        if self.hours is not None and hour not in self.hours:
            return HOUR_NOT_TARGETED
        if self.weekdays is not None and weekday not in self.weekdays:
            return WEEKDAY_NOT_TARGETED
        if self.publisher_block or self.publisher_allow is not None:
            pub = _lower(request.get("publisher"))
            if pub in self.publisher_block:
                return PUBLISHER_BLOCKED
            if self.publisher_allow is not None and pub not in self.publisher_allow:
                return PUBLISHER_NOT_ALLOWED
        if self.segments_exclude and not self.segments_exclude.isdisjoint(segments):
            return SEGMENT_EXCLUDED
        if self.segments_include is not None and self.segments_include.isdisjoint(segments):
            return SEGMENT_NOT_TARGETED
        if ip is not None and self.ip_block:
            for net in self.ip_block:
                if ip in net:
                    return IP_BLOCKED
        if self.cap and campaign_imps is not None and campaign_imps[self.cap_window] >= self.cap:
            return FREQUENCY_CAP_REACHED
        return None


def _upper(v: object) -> object:
    return v.upper() if isinstance(v, str) else v


def _lower(v: object) -> object:
    return v.lower() if isinstance(v, str) else v


def compile_targeting(
    targeting: Targeting, flight: Flight | None, cap: FrequencyCap | None
) -> CompiledTargeting:
    t = targeting
    return CompiledTargeting(
        start=flight.start if flight else None,
        end=flight.end if flight else None,
        channels=_opt(t.channels),
        countries=_opt(t.countries),
        regions=_opt(t.regions),
        device_types=_opt(t.device_types),
        os=_opt(t.os),
        hours=t.hours,
        weekdays=t.weekdays,
        publisher_allow=_opt(t.publisher_allow),
        publisher_block=frozenset(t.publisher_block),
        segments_include=_opt(t.segments_include),
        segments_exclude=frozenset(t.segments_exclude),
        ip_block=tuple(ipaddress.ip_network(n, strict=False) for n in t.ip_block),
        cap=cap.impressions if cap else 0,
        cap_window=0 if cap is None or cap.period == "24h" else 1,
    )


def local_time(tz: ZoneInfo, when: datetime) -> tuple[int, int, date]:
    """(hour, weekday with 0 = Monday, date) of `when` in `tz`; a naive `when` is taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo("UTC"))
    local = when.astimezone(tz)
    return local.hour, local.weekday(), local.date()
