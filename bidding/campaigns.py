"""The campaigns file: one TOML schema, validated once at load, frozen afterwards.

    [[campaigns]]
    id = "c1"
    advertiser = "acme"          # optional
    goal = "cpc"                 # cpc | cpa | roas | cpm
    target = 0.8                 # CPC, CPA, ROAS (revenue / spend) or CPM, per goal
    max_bid = 20.0               # CPM
    daily_budget = 500.0         # the campaign's currency (below), else the account's
    currency = "EUR"             # optional: money above in EUR, converted at load (campaign_fx)
    total_budget = 9000.0        # optional, over the whole flight
    timezone = "Europe/Paris"    # the campaign's day (pacing, flight) and hours; default UTC
    strategy = "lagrangian"      # see bidding.strategies.STRATEGY_NAMES (aliases: lin, const, rand)
    strategy_params = { lam = 0.3 }
    # strategy = "rlb" instead takes a [campaigns.rlb] table (bidding.rlb_campaign.RlbConfig):
    # rlb = { market = "market.json", avg_ctr = 0.0008, auctions_per_day = 2_000_000 }
    exploration = "epsilon"      # creative choice: greedy (default) | epsilon | thompson
    epsilon = 0.1
    flight = { start = 2025-03-01, end = 2025-05-31 }      # optional, inclusive, either end open
    frequency_cap = { impressions = 3, period = "24h" }    # optional; period 24h | 7d
    creatives = ["cr1", "cr2"]   # ids, or tables (see `Creative`)
    [campaigns.targeting]        # optional; see bidding.targeting.Targeting
    channels = ["web", "app"]
    [[campaigns.rules]]          # optional if / else-if / else list; see bidding.rules
    when = { channel = "ctv", hour = "18..23" }
    then = { multiply = 1.3 }

campaigns.example.toml at the repository root uses every field.

Loading is pure (`load_campaigns` takes the text; the caller reads the file), so the service,
`bidopt campaigns check` and tests share it. Every problem is reported, one line each, naming
the file, the campaign and the field.

Growing the schema: add fields with defaults to `Campaign` (or to `Creative`, which accepts a
bare id as shorthand), so existing files stay valid; unknown fields stay errors, so typos never pass
silently. Keep one model per TOML table and put cross-field checks in validators that raise
`ValueError("<field>: <reason>")`, which `_describe` turns into the standard line (a
validator that finds several problems joins them with newlines: one line each).
An rlb campaign's table is solved by the service after validation (it reads the market-price
file and takes seconds); until `attach_rlb` gives it one, it bids with `rlb_campaign.PENDING`
(no bid, `rlb_not_ready`). `attach_rlb`, like `campaign_fx`'s `_fx`, is the one change made to
a validated campaign, by its loader, before the campaign is installed.
Derived objects (goal value, strategy, compiled targeting and rules) are built once, here, as
private attributes, and read through `cached_property`: pydantic serves private attributes
through a slow `__getattr__` (microseconds), a cached property from the instance dict (~0.1 µs),
and the per-impression path reads several per campaign.
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from bidding.creatives import Exploration
from bidding.fx import CURRENCY_PATTERN
from bidding.goals import Goal, GoalValue, goal_value
from bidding.rlb_campaign import PENDING, RlbBidder, RlbConfig
from bidding.rules import CompiledRules, Rule, compile_rules
from bidding.stateful import StateBidder
from bidding.strategies import BidStrategy, make_strategy, strategy_name
from bidding.targeting import (
    Channel,
    CompiledTargeting,
    CreativeFormat,
    Flight,
    FrequencyCap,
    Listed,
    Targeting,
    compile_targeting,
)

ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_DOMAIN: Final = re.compile(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
# IAB 1.0 ids (IAB25, IAB25-3) or Content Taxonomy 2.x/3.x ids (483): upper-cased at load
_CATEGORY: Final = re.compile(r"[A-Z0-9]{1,16}(-[A-Z0-9]{1,16})?")


class CampaignError(ValueError):
    """An invalid campaigns file; `errors` holds one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


def _domain(v: str) -> str:
    d = v.strip().lower()
    if len(d) > 253 or not _DOMAIN.fullmatch(d):
        raise ValueError(f"{v!r} is not a domain name such as 'shop.example.com'")
    return d


def _category(v: str) -> str:
    c = v.strip().upper()
    if not _CATEGORY.fullmatch(c):
        raise ValueError(f"{v!r} is not an IAB content category such as 'IAB3' or 'IAB25-3'")
    return c


def _creative_shorthand(v: object) -> object:
    return {"id": v} if isinstance(v, str) else v


class Creative(BaseModel):
    """An ad. Undeclared attributes fit any slot (bidding.creative_fit.creative_fits)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    format: CreativeFormat | None = None
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    duration_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    channels: Annotated[tuple[Channel, ...] | None, Listed] = Field(None, min_length=1)
    adomain: Annotated[str, AfterValidator(_domain)] | None = Field(
        None, description="landing domain (OpenRTB `adomain`)"
    )
    categories: Annotated[tuple[Annotated[str, AfterValidator(_category)], ...] | None, Listed] = (
        Field(None, min_length=1, description="IAB content categories (OpenRTB `cat`)")
    )

    _channel_set: frozenset[str] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _consistent(self) -> Creative:
        problems = []
        if (self.width is None) != (self.height is None):
            problems.append("width, height: give both or neither")
        if self.width is not None and self.format not in ("banner", "video"):
            problems.append("width, height: only for format 'banner' or 'video'")
        if self.format == "video" and self.duration_s is None:
            problems.append("duration_s: required for format 'video'")
        if self.duration_s is not None and self.format != "video":
            problems.append("duration_s: only for format 'video'")
        if problems:
            raise ValueError("\n".join(problems))
        self._channel_set = frozenset(self.channels) if self.channels is not None else None
        _ = self.channel_set
        return self

    @cached_property
    def channel_set(self) -> frozenset[str] | None:
        return self._channel_set


_HOT: Final = (
    "goal_value",
    "bid_strategy",
    "tz",
    "creative_ids",
    "compiled_targeting",
    "compiled_rules",
    "has_rules",
    "rlb_bidder",
)

CreativeIn = Annotated[Creative, BeforeValidator(_creative_shorthand)]
Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Campaign(BaseModel):
    """One campaign. Derived objects (goal value, strategy, timezone) are built once here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    advertiser: str | None = Field(None, pattern=ID_PATTERN)
    goal: Goal
    target: Price
    value_per_conversion: Price | None = None
    max_bid: Price
    daily_budget: Price
    total_budget: Price | None = None
    currency: str | None = Field(None, pattern=CURRENCY_PATTERN)
    timezone: str = "UTC"
    strategy: str = "value"
    strategy_params: dict[str, float] = Field(default_factory=dict)
    rlb: RlbConfig | None = None
    exploration: Exploration = "greedy"
    epsilon: float = Field(0.1, ge=0, le=1)
    flight: Flight | None = None
    frequency_cap: FrequencyCap | None = None
    targeting: Targeting = Field(default_factory=Targeting)
    creatives: tuple[CreativeIn, ...] = Field(min_length=1)
    rules: tuple[Rule, ...] = ()

    _goal_value: GoalValue = PrivateAttr()
    _strategy: BidStrategy = PrivateAttr()
    _tz: zoneinfo.ZoneInfo = PrivateAttr()
    _targeting: CompiledTargeting = PrivateAttr()
    _rules: CompiledRules = PrivateAttr()
    _has_rules: bool = PrivateAttr(False)
    _rlb_bidder: StateBidder | None = PrivateAttr(None)
    # set by bidding.campaign_fx when the money fields were converted into the account currency
    _fx: Any = PrivateAttr(None)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {v!r} (use an IANA name such as 'UTC')") from None
        return v

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        try:
            return strategy_name(v)
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix("strategy: ")) from None

    @model_validator(mode="after")
    def _consistent(self) -> Campaign:
        problems = []
        if self.goal == "roas" and self.value_per_conversion is None:
            problems.append("value_per_conversion: required for goal 'roas'")
        if self.strategy == "rlb":
            problems += self._rlb_problems()
            self._strategy = PENDING
            self._rlb_bidder = PENDING
        else:
            if self.rlb is not None:
                problems.append("rlb: only for strategy 'rlb'")
            try:
                self._strategy = make_strategy(self.strategy, **self.strategy_params)
            except ValueError as exc:
                problems.append(f"strategy_params: {exc}")
        ids = [c.id for c in self.creatives]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            problems.append(f"creatives: duplicate id(s) {', '.join(dupes)}")
        known = set(ids)
        for i, rule in enumerate(self.rules):
            if rule.when is None and i != len(self.rules) - 1:
                problems.append(f"rules[{i}]: an else rule (no `when`) must be the last rule")
            unknown = sorted(set(rule.then.creatives or ()) - known)
            if unknown:
                problems.append(
                    f"rules[{i}].then.creatives: unknown creative(s) {', '.join(unknown)} "
                    f"(this campaign has: {', '.join(ids)})"
                )
        if problems:
            raise ValueError("\n".join(problems))
        self._rules = compile_rules(list(self.rules))
        self._has_rules = bool(self.rules)
        self._goal_value = goal_value(self.goal, self.target, self.value_per_conversion)
        self._tz = zoneinfo.ZoneInfo(self.timezone)
        self._targeting = compile_targeting(self.targeting, self.flight, self.frequency_cap)
        for name in _HOT:  # fill the cached properties now, not on the first request
            getattr(self, name)
        return self

    def _rlb_problems(self) -> list[str]:
        out = []
        if self.strategy_params:
            out.append("strategy_params: rlb takes none (its settings are the rlb table)")
        if self.rlb is None:
            out.append(
                "rlb: required for strategy 'rlb', e.g. rlb = { market = \"market.json\", "
                "avg_ctr = 0.001, auctions_per_day = 1000000 }"
            )
        else:
            out += self.rlb.problems(self.goal)
        return out

    def attach_rlb(self, bidder: RlbBidder) -> None:
        """Give an rlb campaign its solved table (the service's loader, before installing)."""
        if self.strategy != "rlb":
            raise ValueError(f"campaign {self.id!r}: attach_rlb on strategy {self.strategy!r}")
        self._strategy = bidder.strategy
        self._rlb_bidder = bidder
        self.__dict__["bid_strategy"] = bidder.strategy  # the cached properties, refreshed
        self.__dict__["rlb_bidder"] = bidder

    @cached_property
    def rlb_bidder(self) -> StateBidder | None:
        """The state-aware bid (rlb: `RlbBidder`, or `PENDING` until solved); None: static."""
        return self._rlb_bidder

    @cached_property
    def goal_value(self) -> GoalValue:
        return self._goal_value

    @cached_property
    def bid_strategy(self) -> BidStrategy:
        return self._strategy

    @cached_property
    def tz(self) -> zoneinfo.ZoneInfo:
        return self._tz

    @cached_property
    def creative_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.creatives)

    @cached_property
    def compiled_targeting(self) -> CompiledTargeting:
        return self._targeting

    @cached_property
    def compiled_rules(self) -> CompiledRules:
        """Compiled once at load; `evaluate(RuleContext)` per impression."""
        return self._rules

    @cached_property
    def has_rules(self) -> bool:
        return self._has_rules

    @property
    def fx(self) -> Any:
        """`campaign_fx.Converted` when the file's amounts were in another currency, else None."""
        return self._fx


class CampaignsFile(BaseModel):
    """The whole file. New top-level sections get defaults here too."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    campaigns: list[Campaign] = Field(default_factory=list)


_MESSAGES: Final[dict[str, str]] = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "finite_number": "must be a finite number",
    "missing": "required",
    "extra_forbidden": "unknown field",
    "literal_error": "must be {expected}",
    "string_pattern_mismatch": "must match {pattern}",
    "too_short": "must not be empty",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "date_type": "must be a date such as 2025-03-01",
    "date_parsing": "must be a date such as 2025-03-01",
    "date_from_datetime_parsing": "must be a date such as 2025-03-01",
    "date_from_datetime_inexact": "must be a date without a time",
    "frozen_set_type": "must be a list",
    "set_type": "must be a list",
}


def _plain(x: object) -> object:
    """0.0 -> 0 in messages: the file said 0, or nothing at all."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(err: Mapping[str, Any], source: str, raw: list[Any]) -> list[str]:
    """One line per problem: "<file>: campaign '<id>': <field path>: <reason>"."""
    loc = tuple(err["loc"])
    etype = err["type"]
    if etype == "value_error":
        msg = str(err.get("ctx", {}).get("error", err["msg"]))
    elif etype in _MESSAGES:
        ctx = {k: _plain(v) for k, v in err.get("ctx", {}).items()}
        msg = _MESSAGES[etype].format(**ctx)
    else:
        msg = err["msg"]
    if len(loc) >= 2 and loc[0] == "campaigns" and isinstance(loc[1], int):
        i = loc[1]
        cid = raw[i].get("id") if i < len(raw) and isinstance(raw[i], dict) else None
        who = f"campaign {cid!r}" if isinstance(cid, str) else f"campaign #{i + 1}"
        who = f"{source}: {who}"
        path = _field_path(loc[2:])
        # A validator reporting several problems puts one per line; each gets the full prefix.
        return [f"{who}: {path}: {m}" if path else f"{who}: {m}" for m in msg.split("\n")]
    if loc == ("campaigns",) and etype == "list_type":
        msg = "must be a list of [[campaigns]] tables"
    return [f"{source}: {_field_path(loc) or 'file'}: {msg}"]


def _duplicate_ids(source: str, raw: list[Any]) -> list[str]:
    """Checked on the raw tables, so duplicates are reported alongside every other problem."""
    seen: set[str] = set()
    errors = []
    for i, c in enumerate(raw):
        cid = c.get("id") if isinstance(c, dict) else None
        if not isinstance(cid, str):
            continue
        if cid in seen:
            errors.append(f"{source}: campaign {cid!r}: id: duplicate (campaign #{i + 1})")
        seen.add(cid)
    return errors


def load_campaigns(text: str, source: str = "campaigns.toml") -> dict[str, Campaign]:
    """Parse and validate a campaigns file's text; {id: Campaign} in file order.

    Raises CampaignError listing every problem, e.g.
    "campaigns.toml: campaign 'c1': target: must be > 0".
    """
    return validate_campaigns(parse_toml(text, source), source)


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError([f"{source}: invalid TOML: {exc}"]) from None


def validate_campaigns(data: Mapping[str, Any], source: str) -> dict[str, Campaign]:
    """`load_campaigns` on the parsed TOML tables (`campaign_fx` validates converted ones)."""
    raw = data.get("campaigns")
    raw_list = raw if isinstance(raw, list) else []
    errors: list[str] = []
    try:
        parsed = CampaignsFile.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors(include_url=False):
            errors.extend(_describe(e, source, raw_list))
        parsed = None
    errors.extend(_duplicate_ids(source, raw_list))
    if errors or parsed is None:
        raise CampaignError(errors)
    return {c.id: c for c in parsed.campaigns}
