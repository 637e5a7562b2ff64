"""If / else-if / else bid rules over request variables, compiled once at load.

A campaign's rules are an ordered list; the first rule whose `when` holds fires, and a rule
without `when` is the `else`. Conditions are data (TOML tables), compiled into small closures:
no `eval`, nothing a request carries can change them, and a rule costs well under a microsecond
per condition. Ranges are inclusive. Hours and weekdays are in the campaign's timezone, which the
caller resolves once per impression (`RuleContext`).

    [[campaigns.rules]]                       # if
    when = { channel = "ctv", hour = "18..23" }
    then = { multiply = 1.3 }
    [[campaigns.rules]]                       # else if
    when = { segment = "cart_abandoners" }
    then = { multiply = 2.0 }
    [[campaigns.rules]]                       # else if
    when = { ip = "203.0.113.0/24" }
    then = { no_bid = true }
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from features.ipanon import IPV4_PREFIX, IPV6_PREFIX

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Predicate = Callable[["RuleContext"], bool]


def _listify(v: object) -> object:
    return [v] if isinstance(v, str | int | float) else v


def _range(v: object) -> object:
    """Accept "18..23", [18, 23], {min = 18, max = 23} or a single number."""
    if isinstance(v, str) and ".." in v:
        lo, hi = v.split("..", 1)
        return {"min": float(lo) if lo.strip() else None, "max": float(hi) if hi.strip() else None}
    if isinstance(v, list | tuple):
        if len(v) != 2:
            raise ValueError("a range is [low, high]")
        return {"min": v[0], "max": v[1]}
    if isinstance(v, int | float):
        return {"min": v, "max": v}
    return v


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("a range needs min or max")
        for bound in (self.min, self.max):
            if bound is not None and not math.isfinite(bound):
                raise ValueError("range bounds must be finite")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range min {self.min} is above max {self.max}")
        return self


Strs = Annotated[list[str], BeforeValidator(_listify)]
Ints = Annotated[list[int], BeforeValidator(_listify)]
RangeIn = Annotated[Range, BeforeValidator(_range)]


class When(BaseModel):
    """All listed conditions must hold (AND); a list of values means any of them (OR)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    channel: Strs | None = None
    country: Strs | None = None
    region: Strs | None = None
    city: Strs | None = None
    device_type: Strs | None = None
    os: Strs | None = None
    publisher: Strs | None = None
    exchange: Strs | None = None
    segment: Strs | None = Field(None, description="user is in any of these segments")
    not_segment: Strs | None = Field(None, description="user is in none of these segments")
    hour: RangeIn | None = Field(None, description="hour of day in the campaign's timezone")
    weekday: Ints | None = Field(None, description="0 = Monday, campaign's timezone")
    user_frequency: RangeIn | None = Field(None, description="user impressions in 24 h")
    floor: RangeIn | None = None
    pctr: RangeIn | None = None
    pcvr: RangeIn | None = None
    ip: Strs | None = Field(
        None, description=f"CIDR ranges, at most /{IPV4_PREFIX} (IPv4) or /{IPV6_PREFIX} (IPv6)"
    )

    @field_validator("hour")
    @classmethod
    def _hours(cls, v: Range | None) -> Range | None:
        if v is not None and not ((v.min or 0) >= 0 and (v.max if v.max is not None else 23) <= 23):
            raise ValueError("hours are 0..23")
        return v

    @field_validator("weekday")
    @classmethod
    def _weekdays(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(d < 0 or d > 6 for d in v):
            raise ValueError("weekdays are 0 (Monday) .. 6")
        return v

    @field_validator("ip")
    @classmethod
    def _networks(cls, v: list[str] | None) -> list[str] | None:
        for cidr in v or []:
            check_network(cidr)
        return v


class Then(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    multiply: float | None = Field(None, gt=0, allow_inf_nan=False)
    set: float | None = Field(None, ge=0, allow_inf_nan=False, description="bid this CPM")
    cap: float | None = Field(None, ge=0, allow_inf_nan=False, description="bid at most this CPM")
    no_bid: bool = False
    creatives: Strs | None = Field(None, description="restrict the creative set")

    @model_validator(mode="after")
    def _some_action(self) -> Then:
        if not (self.no_bid or self.creatives) and all(
            x is None for x in (self.multiply, self.set, self.cap)
        ):
            raise ValueError("a rule needs an action: multiply, set, cap, no_bid or creatives")
        return self


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = None
    when: When | None = Field(None, description="absent: the else branch")
    then: Then


class RuleContext(NamedTuple):
    """What rules read, resolved once per impression (hour/weekday per campaign timezone).

    A NamedTuple, not a frozen dataclass: it is built per campaign per impression, and tuple
    construction is several times cheaper."""

    request: Mapping[str, Any]
    hour: int | None
    weekday: int | None
    segments: frozenset[str]
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    pctr: float
    pcvr: float


@dataclass(frozen=True, slots=True)
class Outcome:
    rule: str | None  # the name (or "rule N") of the rule that fired; None when none did
    multiply: float = 1.0
    set: float | None = None
    cap: float | None = None
    no_bid: bool = False
    creatives: frozenset[str] | None = None

    def apply(self, bid: float) -> float:
        """The bid after this rule's price action (floor and max bid are the strategy's)."""
        if self.no_bid:
            return 0.0
        price = self.set if self.set is not None else bid * self.multiply
        return min(price, self.cap) if self.cap is not None else price


NO_RULE: Final = Outcome(rule=None)


def _parse_network(cidr: str) -> IpNetwork:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise ValueError(f"not an IP range: {cidr!r}") from None


def check_network(cidr: str) -> str:
    """`cidr` when it is a range at most as narrow as the anonymised prefix (features.ipanon),
    else ValueError naming it: IPs are anonymised on ingestion, so a narrower range could never
    match. Rules' `ip` and targeting's `ip_block` both refuse with this one check."""
    net = _parse_network(cidr)
    limit = IPV4_PREFIX if net.version == 4 else IPV6_PREFIX
    if net.prefixlen > limit:
        raise ValueError(
            f"{cidr} is narrower than /{limit}: IPs are anonymised to /{limit}, "
            "so it could never match"
        )
    return cidr


def _in_set(field: str, values: list[str]) -> Predicate:
    allowed = frozenset(values)
    return lambda c: c.request.get(field) in allowed


def _in_range(get: Callable[[RuleContext], Any], r: Range) -> Predicate:
    lo = -math.inf if r.min is None else r.min
    hi = math.inf if r.max is None else r.max

    def pred(c: RuleContext) -> bool:
        v = get(c)
        return v is not None and lo <= v <= hi

    return pred


def _compile_when(w: When) -> tuple[Predicate, ...]:
    preds: list[Predicate] = []
    for field in ("channel", "country", "region", "city", "device_type", "os", "publisher"):
        values = getattr(w, field)
        if values is not None:
            preds.append(_in_set(field, values))
    if w.exchange is not None:
        preds.append(_in_set("exchange", w.exchange))
    if w.segment is not None:
        want = frozenset(w.segment)
        preds.append(lambda c: not want.isdisjoint(c.segments))
    if w.not_segment is not None:
        avoid = frozenset(w.not_segment)
        preds.append(lambda c: avoid.isdisjoint(c.segments))
    if w.hour is not None:
        preds.append(_in_range(lambda c: c.hour, w.hour))
    if w.weekday is not None:
        days = frozenset(w.weekday)
        preds.append(lambda c: c.weekday in days)
    if w.user_frequency is not None:
        preds.append(_in_range(lambda c: c.request.get("user_imps_24h"), w.user_frequency))
    if w.floor is not None:
        preds.append(_in_range(lambda c: c.request.get("floor_price"), w.floor))
    if w.pctr is not None:
        preds.append(_in_range(lambda c: c.pctr, w.pctr))
    if w.pcvr is not None:
        preds.append(_in_range(lambda c: c.pcvr, w.pcvr))
    if w.ip is not None:
        nets = tuple(_parse_network(n) for n in w.ip)
        preds.append(lambda c: c.ip is not None and any(c.ip in n for n in nets))
    return tuple(preds)


@dataclass(frozen=True, slots=True)
class CompiledRules:
    branches: tuple[tuple[tuple[Predicate, ...], Outcome], ...]

    def evaluate(self, ctx: RuleContext) -> Outcome:
        for preds, outcome in self.branches:
            for p in preds:
                if not p(ctx):
                    break
            else:
                return outcome
        return NO_RULE


def compile_rules(rules: list[Rule]) -> CompiledRules:
    """Check the if / else-if / else shape and compile each rule to predicates + an outcome."""
    branches = []
    for i, rule in enumerate(rules):
        if rule.when is None and i != len(rules) - 1:
            raise ValueError(f"rule {i + 1}: an else rule (no `when`) must be the last rule")
        t = rule.then
        outcome = Outcome(
            rule=rule.name or f"rule {i + 1}",
            multiply=t.multiply if t.multiply is not None else 1.0,
            set=t.set,
            cap=t.cap,
            no_bid=t.no_bid,
            creatives=frozenset(t.creatives) if t.creatives is not None else None,
        )
        branches.append((_compile_when(rule.when) if rule.when else (), outcome))
    return CompiledRules(tuple(branches))


def parse_ip(ip: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The request's (already anonymised) IP for `RuleContext`; unparseable means unknown."""
    if not isinstance(ip, str):
        return None
    return _parse_ip(ip)


@functools.lru_cache(maxsize=65536)
def _parse_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Anonymised IPs repeat (one per network of features.ipanon's prefixes), and parsing one
    costs more than the rules that use it: a bounded cache of immutable address objects."""
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None
