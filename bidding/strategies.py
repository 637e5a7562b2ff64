"""Bid strategies: from an impression's value (CPM, see goals.py) to a price.

Each strategy is a frozen dataclass with two thin methods over one formula: `price` on a Python
float (serving answers one impression in tens of microseconds, where numpy's per-call overhead
would dominate) and `prices` on an array (replay, a million auctions at a time). Neither applies
any constraint: `bid_one` and `bid_array` do, identically, for every strategy, and they are the
only functions serving and replay call, so both give the same price for the same state
(tests/bidding/test_strategy_contract.py checks every strategy, on both paths).

The constraints, in order: a spent budget -> no bid; a non-finite or negative value -> no bid;
price x pacing multiplier; a non-finite price -> no bid; cap at the max bid; first-price
shading when a win curve is given; below the floor (or zero) -> no bid.

`rlb` (bidding/rlb.py) also bids on the state: given `auctions_left`, `bid_one` asks the
strategy's `price_at(value, auctions_left, budget_left)`; without it, rlb prices as at the start
of the episode it was solved for, like any static strategy.

ORTB's theta is the impression's value rather than raw pCTR: for a CPC goal value = pCTR x
constant, and the fitted lambda absorbs the constant, so bids are the same; for CPA/ROAS the
same formulas then optimise the campaign's own KPI.
"""

from __future__ import annotations

import math
import random
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, ClassVar, Final, Protocol

import numpy as np

from bidding.rlb import Rlb
from bidding.shading import shade, shade_array

if TYPE_CHECKING:
    from bidding.winrate import WinCurve

# No-bid reasons (the empty string means a bid was made).
BUDGET_SPENT: Final = "budget_spent"
INVALID_VALUE: Final = "invalid_value"
BELOW_FLOOR: Final = "below_floor"
ZERO_BID: Final = "zero_bid"
NO_SURPLUS: Final = "no_surplus"


class BidStrategy(Protocol):
    """What serving and replay need from a strategy: an unconstrained price, scalar and array."""

    name: ClassVar[str]

    def price(self, value: float) -> float: ...

    def prices(self, values: np.ndarray) -> np.ndarray: ...


class StatefulStrategy(BidStrategy, Protocol):
    """A strategy whose price also depends on the auctions and budget left (rlb)."""

    def price_at(self, value: float, auctions_left: int, budget_left: float) -> float: ...


def _check(strategy: str, param: str, x: float, *, lo: float = 0.0, strict: bool = True) -> None:
    ok = math.isfinite(x) and (x > lo if strict else x >= lo)
    if not ok:
        op = ">" if strict else ">="
        raise ValueError(f"{strategy}: {param} must be a finite number {op} {lo}, got {x!r}")


@dataclass(frozen=True, slots=True)
class Constant:
    """The same CPM for every impression: the simplest baseline."""

    name: ClassVar[str] = "constant"
    bid: float

    def __post_init__(self) -> None:
        _check(self.name, "bid", self.bid, strict=False)

    def price(self, value: float) -> float:
        return self.bid

    def prices(self, values: np.ndarray) -> np.ndarray:
        return np.full(values.shape, self.bid)


@dataclass(frozen=True, slots=True)
class RandomBid:
    """Uniform in [low, high], seeded: the lower-bound baseline of the iPinYou benchmark.

    The array path draws from a fresh generator per call (replays are reproducible); the scalar
    path draws from one stream per strategy object, so it is not comparable bid-for-bid.
    """

    name: ClassVar[str] = "random"
    low: float
    high: float
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check(self.name, "low", self.low, strict=False)
        _check(self.name, "high", self.high, lo=self.low, strict=False)
        object.__setattr__(self, "_rng", random.Random(self.seed))

    def price(self, value: float) -> float:
        return self._rng.uniform(self.low, self.high)

    def prices(self, values: np.ndarray) -> np.ndarray:
        return np.random.default_rng(self.seed).uniform(self.low, self.high, values.shape)


@dataclass(frozen=True, slots=True)
class Linear:
    """base_bid x value / average value (Perlich et al. 2012; with a CPC goal: pCTR / avg CTR)."""

    name: ClassVar[str] = "linear"
    base_bid: float
    avg_value: float

    def __post_init__(self) -> None:
        _check(self.name, "base_bid", self.base_bid, strict=False)
        _check(self.name, "avg_value", self.avg_value)

    def price(self, value: float) -> float:
        return self.base_bid * value / self.avg_value

    def prices(self, values: np.ndarray) -> np.ndarray:
        return self.base_bid * values / self.avg_value


@dataclass(frozen=True, slots=True)
class Value:
    """Bid the value: truthful in second-price auctions, and what serving did before strategies."""

    name: ClassVar[str] = "value"

    def price(self, value: float) -> float:
        return value

    def prices(self, values: np.ndarray) -> np.ndarray:
        return values.copy()


@dataclass(frozen=True, slots=True)
class Ortb1:
    """sqrt(c / lambda x theta + c^2) - c: optimal for the win function w(b) = b / (c + b).

    Zhang, Yuan, Wang, "Optimal real-time bidding for display advertising", KDD 2014.
    """

    name: ClassVar[str] = "ortb1"
    c: float
    lam: float

    def __post_init__(self) -> None:
        _check(self.name, "c", self.c)
        _check(self.name, "lam", self.lam)

    def price(self, value: float) -> float:
        c = self.c
        return math.sqrt(c / self.lam * value + c * c) - c

    def prices(self, values: np.ndarray) -> np.ndarray:
        c = self.c
        return np.sqrt(c / self.lam * values + c * c) - c


@dataclass(frozen=True, slots=True)
class Ortb2:
    """The closed form for the win function w(b) = b^2 / (c^2 + b^2) (same paper):

    b = c x [((theta + sqrt(c^2 lambda^2 + theta^2)) / (c lambda))^(1/3)
             - ((c lambda) / (theta + sqrt(c^2 lambda^2 + theta^2)))^(1/3)].
    """

    name: ClassVar[str] = "ortb2"
    c: float
    lam: float

    def __post_init__(self) -> None:
        _check(self.name, "c", self.c)
        _check(self.name, "lam", self.lam)

    def price(self, value: float) -> float:
        cl = self.c * self.lam
        r = value + math.sqrt(cl * cl + value * value)
        return self.c * (math.cbrt(r / cl) - math.cbrt(cl / r))

    def prices(self, values: np.ndarray) -> np.ndarray:
        cl = self.c * self.lam
        r = values + np.sqrt(cl * cl + values * values)
        return self.c * (np.cbrt(r / cl) - np.cbrt(cl / r))


@dataclass(frozen=True, slots=True)
class Lagrangian:
    """value / (1 + lambda): the budget's shadow price shades every bid by the same factor.

    lambda >= 0 for goals with a target (never bid above the value); for max_clicks and
    max_conversions the value is not money, and lambda in (-1, 0) is the fitted scale."""

    name: ClassVar[str] = "lagrangian"
    lam: float = 0.0

    def __post_init__(self) -> None:
        _check(self.name, "lam", self.lam, lo=-1.0)

    def price(self, value: float) -> float:
        return value / (1.0 + self.lam)

    def prices(self, values: np.ndarray) -> np.ndarray:
        return values / (1.0 + self.lam)


STRATEGIES: Final[dict[str, type]] = {
    cls.name: cls for cls in (Constant, RandomBid, Linear, Value, Ortb1, Ortb2, Lagrangian, Rlb)
}
FITTED_ONLY: Final = frozenset({"rlb"})  # built from a solved table (bidding.rlb.fit_rlb)
ALIASES: Final[dict[str, str]] = {"const": "constant", "rand": "random", "lin": "linear"}
STRATEGY_NAMES: Final[tuple[str, ...]] = tuple(STRATEGIES)


def strategy_name(name: str) -> str:
    """The canonical name for `name` or an alias; unknown names raise, listing the known ones."""
    key = ALIASES.get(name, name)
    if key not in STRATEGIES:
        known = ", ".join([*STRATEGIES, *ALIASES])
        raise ValueError(f"strategy: unknown strategy {name!r} (known: {known})")
    return key


def strategy_params(name: str) -> tuple[str, ...]:
    """The parameters a strategy takes (seed included for random)."""
    cls = STRATEGIES[strategy_name(name)]
    return tuple(f.name for f in fields(cls) if f.init)


def make_strategy(name: str, **params: float) -> BidStrategy:
    """Build a strategy by name; a missing, unknown or out-of-range parameter raises, named."""
    key = strategy_name(name)
    if key in FITTED_ONLY:
        raise ValueError(
            f"{key}: solved from a market-price model by `bidopt simulate` or bidding.rlb.fit_rlb,"
            " not built from parameters"
        )
    allowed = strategy_params(key)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"{key}: unknown parameter(s) {', '.join(unknown)} "
            f"(takes: {', '.join(allowed) or 'none'})"
        )
    required = [
        f.name
        for f in fields(STRATEGIES[key])
        if f.init and f.default is MISSING and f.default_factory is MISSING
    ]
    missing = [p for p in required if p not in params]
    if missing:
        raise ValueError(f"{key}: missing parameter(s) {', '.join(missing)}")
    clean: dict[str, float | int] = {}
    for p, v in params.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"{key}: {p} must be a number, got {v!r}")
        clean[p] = int(v) if p == "seed" else float(v)
    return STRATEGIES[key](**clean)  # type: ignore[no-any-return]


def strategy_to_dict(strategy: BidStrategy) -> dict[str, object]:
    """JSON-able description (name + parameters) for MLflow params and the campaigns file."""
    if isinstance(strategy, Rlb):  # the table is the parameter: describe it, don't dump it
        t = strategy.table
        return {"name": "rlb", "horizon": t.horizon, "budget": t.budget, "grid": t.values.shape[1]}
    params = {f.name: getattr(strategy, f.name) for f in fields(strategy) if f.init}  # type: ignore[arg-type]
    return {"name": strategy.name, **params}


def strategy_from_dict(d: dict[str, object]) -> BidStrategy:
    params = {k: v for k, v in d.items() if k != "name"}
    return make_strategy(str(d.get("name")), **params)  # type: ignore[arg-type]


def bid_one(
    strategy: BidStrategy,
    value: float,
    *,
    floor: float = 0.0,
    max_bid: float = math.inf,
    budget_left: float = math.inf,
    multiplier: float = 1.0,
    curve: WinCurve | None = None,
    auctions_left: int | None = None,
) -> tuple[float, str]:
    """(price, no-bid reason) for one impression; reason "" when a bid is made, price 0 when not.

    `curve` is the segment's win curve for a first-price auction (shade); None bids the
    strategy's price as is (second price: truthful). `auctions_left` (this one included, in the
    episode or pacing interval) is the state a stateful strategy (rlb) bids on; static
    strategies ignore it.
    """
    if not budget_left > 0:
        return 0.0, BUDGET_SPENT
    if not (value >= 0.0 and value != math.inf):  # also false for NaN
        return 0.0, INVALID_VALUE
    if auctions_left is not None and isinstance(strategy, Rlb):
        price = strategy.price_at(value, auctions_left, budget_left) * multiplier
    else:
        price = strategy.price(value) * multiplier
    if not math.isfinite(price):
        return 0.0, INVALID_VALUE
    if price > max_bid:
        price = max_bid
    if curve is not None and price > 0.0:
        price = shade(price, curve, floor, max_bid)
        if price <= 0.0:
            return 0.0, NO_SURPLUS
    if not price > 0.0:
        return 0.0, ZERO_BID
    if not price >= floor:
        return 0.0, BELOW_FLOOR
    return price, ""


def bid_array(
    strategy: BidStrategy,
    values: np.ndarray,
    *,
    floor: np.ndarray | float = 0.0,
    max_bid: float = math.inf,
    budget_left: float = math.inf,
    multiplier: float = 1.0,
    curve: WinCurve | None = None,
) -> np.ndarray:
    """`bid_one` over an array of values (same rules, same order); 0 means no bid."""
    v = np.asarray(values, dtype=np.float64)
    if not budget_left > 0:
        return np.zeros(v.shape)
    ok = (v >= 0.0) & (v != np.inf)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        p = strategy.prices(np.where(ok, v, 0.0)) * multiplier
    ok &= np.isfinite(p)
    p = np.where(ok, np.minimum(p, max_bid), 0.0)
    if curve is not None:
        p = shade_array(p, curve, floor, max_bid)
    return np.where(ok & (p > 0.0) & (p >= floor), p, 0.0)
