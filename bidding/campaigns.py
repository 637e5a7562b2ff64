"""The campaigns file: one TOML schema, validated once at load, frozen afterwards.

    [[campaigns]]
    id = "c1"
    goal = "cpc"                 # cpc | cpa | roas | cpm
    target = 0.8                 # CPC, CPA, ROAS (revenue / spend) or CPM, per goal
    max_bid = 20.0               # CPM
    daily_budget = 500.0         # account currency
    timezone = "Europe/Paris"    # the campaign's day (pacing) and hours (rules); default UTC
    strategy = "lagrangian"      # see bidding.strategies.STRATEGY_NAMES (aliases: lin, const, rand)
    strategy_params = { lam = 0.3 }
    creatives = ["cr1", "cr2"]   # ids, or tables: { id = "cr1" }

Loading is pure (`load_campaigns` takes the text; the caller reads the file), so the service,
`bidopt campaigns check` and tests share it. Every problem is reported, one line each, naming
the file, the campaign and the field.

Growing the schema (the campaigns issue: targeting, rules, flight dates, richer creatives):
add fields with defaults to `Campaign` (or to `Creative`, which already accepts a bare id as
shorthand), so existing files stay valid; unknown fields stay errors, so typos never pass
silently. Keep one model per TOML table and put cross-field checks in validators that raise
`ValueError("<field>: <reason>")`, which `_describe` turns into the standard line.
"""

from __future__ import annotations

import tomllib
import zoneinfo
from collections.abc import Mapping
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from bidding.goals import Goal, GoalValue, goal_value
from bidding.strategies import BidStrategy, make_strategy, strategy_name

ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class CampaignError(ValueError):
    """An invalid campaigns file; `errors` holds one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


def _creative_shorthand(v: object) -> object:
    return {"id": v} if isinstance(v, str) else v


class Creative(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=ID_PATTERN)


CreativeIn = Annotated[Creative, BeforeValidator(_creative_shorthand)]
Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Campaign(BaseModel):
    """One campaign. Derived objects (goal value, strategy, timezone) are built once here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    goal: Goal
    target: Price
    value_per_conversion: Price | None = None
    max_bid: Price
    daily_budget: Price
    timezone: str = "UTC"
    strategy: str = "value"
    strategy_params: dict[str, float] = Field(default_factory=dict)
    creatives: tuple[CreativeIn, ...] = Field(min_length=1)

    _goal_value: GoalValue = PrivateAttr()
    _strategy: BidStrategy = PrivateAttr()
    _tz: zoneinfo.ZoneInfo = PrivateAttr()

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
        if self.goal == "roas" and self.value_per_conversion is None:
            raise ValueError("value_per_conversion: required for goal 'roas'")
        try:
            self._strategy = make_strategy(self.strategy, **self.strategy_params)
        except ValueError as exc:
            raise ValueError(f"strategy_params: {exc}") from None
        ids = [c.id for c in self.creatives]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"creatives: duplicate id(s) {', '.join(dupes)}")
        self._goal_value = goal_value(self.goal, self.target, self.value_per_conversion)
        self._tz = zoneinfo.ZoneInfo(self.timezone)
        return self

    @property
    def goal_value(self) -> GoalValue:
        return self._goal_value

    @property
    def bid_strategy(self) -> BidStrategy:
        return self._strategy

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return self._tz

    @property
    def creative_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.creatives)


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
}


def _plain(x: object) -> object:
    """0.0 -> 0 in messages: the file said 0, or nothing at all."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(err: Mapping[str, Any], source: str, raw: list[Any]) -> str:
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
        path = _field_path(loc[2:])
        return f"{source}: {who}: {path}: {msg}" if path else f"{source}: {who}: {msg}"
    if loc == ("campaigns",) and etype == "list_type":
        msg = "must be a list of [[campaigns]] tables"
    return f"{source}: {_field_path(loc) or 'file'}: {msg}"


def load_campaigns(text: str, source: str = "campaigns.toml") -> dict[str, Campaign]:
    """Parse and validate a campaigns file's text; {id: Campaign} in file order.

    Raises CampaignError listing every problem, e.g.
    "campaigns.toml: campaign 'c1': target: must be > 0".
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError([f"{source}: invalid TOML: {exc}"]) from None
    raw = data.get("campaigns")
    raw_list = raw if isinstance(raw, list) else []
    try:
        parsed = CampaignsFile.model_validate(data)
    except ValidationError as exc:
        raise CampaignError(
            [_describe(e, source, raw_list) for e in exc.errors(include_url=False)]
        ) from None
    out: dict[str, Campaign] = {}
    errors = []
    for i, c in enumerate(parsed.campaigns):
        if c.id in out:
            errors.append(f"{source}: campaign {c.id!r}: id: duplicate (campaign #{i + 1})")
        out[c.id] = c
    if errors:
        raise CampaignError(errors)
    return out
