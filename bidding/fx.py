"""FX reference rates: a table of daily rates against one base, parsed and validated from its
text, and the conversion of an amount between two currencies on a date.

Why in `bidding/`: the per-impression decision converts floors into the account currency and
bid prices back into the exchange's, and campaigns' money is converted once at load; both are
arithmetic on a table, with no I/O, and the lowest package that uses them is bidding (features
has no money to convert: logs are in the account currency, and bidding may import only
features). The caller reads the file: `serving/state/fx.py` loads and polls it for the service,
`bidopt fx check` (bidding/cli.py) validates one offline, with this same parser.

The file has the shape of the ECB's euro reference rates, one rate per line:

    # comment lines and blank lines are ignored
    date,base,currency,rate
    2025-06-02,EUR,USD,1.1444        # 1 EUR = 1.1444 USD

Lines may come in any order (the ECB lists the newest first). Every problem is reported, one
line each, naming the line: a bad date, a currency code that is not three capital letters, a
rate that is not a finite number above 0, a second base, a duplicate (date, currency), a date
missing a currency the table knows, and a gap of more than `MAX_GAP_DAYS` between dates.

A rate on a date is the latest published on or before it (the ECB publishes on TARGET business
days only), and no older than `MAX_GAP_DAYS`: a date before the table's first date, or more than
`MAX_GAP_DAYS` after its last, has no rate (`FxUnavailable`, reason `fx_rate_unavailable`), so
a table nobody refreshes stops converting instead of converting at a stale rate. The lookup is
one dict per calendar day, built once at load: per impression it costs two dict reads and a
division.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final, NamedTuple

CURRENCY_PATTERN: Final = r"^[A-Z]{3}$"
_CODE: Final = re.compile(CURRENCY_PATTERN)
HEADER: Final = ("date", "base", "currency", "rate")
# The longest gap the ECB calendar makes: Maundy Thursday to Easter Tuesday, and Christmas
# Eve to the Monday after when the 25th is a Thursday. Longer means days are missing.
MAX_GAP_DAYS: Final = 5
MAX_ERRORS: Final = 50

CURRENCY_NOT_SUPPORTED: Final = "currency_not_supported"
FX_RATE_UNAVAILABLE: Final = "fx_rate_unavailable"


class FxError(ValueError):
    """An invalid FX file; `errors` holds one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


class FxUnavailable(Exception):
    """No rate for this conversion: `reason` is a no-bid reason, `detail` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class FxTable:
    """Rates as units of each currency per 1 `base`, by date; the base itself is 1.0."""

    base: str
    dates: tuple[date, ...]  # ascending
    currencies: frozenset[str]  # the base included
    # day ordinal -> the rates in force that day: plain dicts, read per impression (a
    # MappingProxyType read costs twice as much); nothing writes them after _build
    by_day: dict[int, dict[str, float]]

    @property
    def first(self) -> date:
        return self.dates[0]

    @property
    def last(self) -> date:
        return self.dates[-1]

    def rates_on(self, on: date) -> Mapping[str, float]:
        row = self.by_day.get(on.toordinal())
        if row is None:
            raise FxUnavailable(FX_RATE_UNAVAILABLE, self._out_of_range(on))
        return row

    def factor(self, src: str, dst: str, day: int) -> float:
        """What one unit of `src` is worth in `dst` on the day with ordinal `day`."""
        if src == dst:
            return 1.0
        row = self.by_day.get(day)
        if row is None:
            raise FxUnavailable(FX_RATE_UNAVAILABLE, self._out_of_range(date.fromordinal(day)))
        a = row.get(src)
        b = row.get(dst)
        if a is None or b is None:
            unknown = src if a is None else dst
            raise FxUnavailable(CURRENCY_NOT_SUPPORTED, self.unknown(unknown))
        return b / a

    def latest_factor(self, src: str, dst: str) -> float:
        """The factor at the table's last date (what campaigns are converted at, at load)."""
        return self.factor(src, dst, self.last.toordinal())

    def unknown(self, currency: str) -> str:
        return (
            f"currency {currency!r} is not in the FX table (it has "
            f"{', '.join(sorted(self.currencies))})"
        )

    def _out_of_range(self, on: date) -> str:
        return (
            f"no FX rate for {on.isoformat()}: the table covers {self.first.isoformat()} to "
            f"{self.last.isoformat()} (a rate is used up to {MAX_GAP_DAYS} days after its date)"
        )


def factor(table: FxTable | None, src: str, dst: str, day: int) -> float:
    """`FxTable.factor`, or for no table: 1 between equal currencies, else unavailable."""
    if src == dst:
        return 1.0
    if table is None:
        raise FxUnavailable(
            CURRENCY_NOT_SUPPORTED,
            f"converting {src} to {dst} needs an FX table, and none is configured (BIDOPT_FX_FILE)",
        )
    return table.factor(src, dst, day)


def _rate(text: str) -> tuple[float | None, str | None]:
    try:
        x = float(text)
    except ValueError:
        return None, f"rate: {text!r} is not a number"
    if not math.isfinite(x):
        return None, f"rate: {text} is not a finite number"
    if x <= 0:
        return None, f"rate: {text} must be above 0"
    return x, None


def _code(field: str, text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, f"{field}: missing"
    if not _CODE.fullmatch(text):
        return None, f"{field}: {text!r} is not an ISO 4217 code (three capital letters)"
    return text, None


def parse_fx(text: str, source: str = "fx.csv") -> FxTable:
    """Parse and validate an FX file's text; FxError listing every problem, e.g.
    "fx.csv: line 7: rate: -1.2 must be above 0"."""
    errors: list[str] = []
    rates: dict[date, dict[str, float]] = {}
    first_line: dict[date, int] = {}
    seen: dict[tuple[date, str], int] = {}
    base: str | None = None
    base_line = 0
    header_seen = False
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))  # a spreadsheet's BOM
    for row in reader:
        line = reader.line_num
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        where = f"{source}: line {line}"
        if not header_seen:
            header_seen = True
            if tuple(c.lower() for c in cells) != HEADER:
                errors.append(f"{where}: the header must be {','.join(HEADER)}: {','.join(cells)}")
                break
            continue
        if len(cells) != len(HEADER):
            errors.append(f"{where}: {len(cells)} fields, expected 4 ({','.join(HEADER)})")
            continue
        problems = []
        try:
            day = date.fromisoformat(cells[0]) if len(cells[0]) == 10 else None
        except ValueError:
            day = None
        if day is None:
            problems.append(f"date: {cells[0]!r} is not a date such as 2025-06-02")
        row_base, why = _code("base", cells[1])
        if why:
            problems.append(why)
        currency, why = _code("currency", cells[2])
        if why:
            problems.append(why)
        rate, why = _rate(cells[3])
        if why:
            problems.append(why)
        if row_base is not None:
            if base is None:
                base, base_line = row_base, line
            elif row_base != base:
                problems.append(f"base: {row_base}, but line {base_line} set the base to {base}")
        if currency is not None and currency == row_base:
            problems.append(f"currency: {currency} is the base (its rate is 1 by definition)")
        if problems:
            errors.extend(f"{where}: {p}" for p in problems)
            continue
        assert day is not None and currency is not None and rate is not None
        key = (day, currency)
        if key in seen:
            errors.append(f"{where}: duplicate of line {seen[key]} ({day}, {currency})")
            continue
        seen[key] = line
        rates.setdefault(day, {})[currency] = rate
        first_line.setdefault(day, line)
    if not header_seen:
        errors.append(f"{source}: empty: expected a header {','.join(HEADER)} and rates")
    elif not rates and not errors:
        errors.append(f"{source}: no rates after the header")
    if not errors:
        errors.extend(_check_dates(rates, first_line, source))
    if errors:
        if len(errors) > MAX_ERRORS:
            errors = [*errors[:MAX_ERRORS], f"{source}: ... and {len(errors) - MAX_ERRORS} more"]
        raise FxError(errors)
    assert base is not None
    return _build(base, rates)


def _check_dates(
    rates: Mapping[date, Mapping[str, float]], first_line: Mapping[date, int], source: str
) -> list[str]:
    errors = []
    dates = sorted(rates)
    currencies = set().union(*(r.keys() for r in rates.values()))
    for d in dates:
        missing = sorted(currencies - rates[d].keys())
        if missing:
            errors.append(
                f"{source}: line {first_line[d]}: {d}: no rate for {', '.join(missing)} (every "
                "date must carry every currency of the table)"
            )
    for prev, d in itertools.pairwise(dates):
        gap = (d - prev).days
        if gap > MAX_GAP_DAYS:
            errors.append(
                f"{source}: line {first_line[d]}: {d} is {gap} days after the previous date "
                f"{prev} (at most {MAX_GAP_DAYS}: rates are missing in between)"
            )
    return errors


def _build(base: str, rates: Mapping[date, Mapping[str, float]]) -> FxTable:
    dates = tuple(sorted(rates))
    by_day: dict[int, dict[str, float]] = {}
    row: dict[str, float] = {}
    i = 0
    for day in range(dates[0].toordinal(), dates[-1].toordinal() + MAX_GAP_DAYS + 1):
        if i < len(dates) and dates[i].toordinal() == day:
            row = {base: 1.0, **rates[dates[i]]}
            i += 1
        by_day[day] = row
    currencies = frozenset(by_day[dates[-1].toordinal()])
    return FxTable(base, dates, currencies, by_day)


def choose_currency(allowed: Sequence[str], account: str, table: FxTable | None, day: int) -> str:
    """The currency to bid in: the account's when allowed (or nothing is listed), else the
    first listed one the table converts on that day; FxUnavailable (the first listed
    currency's reason) when none."""
    if not allowed or account in allowed:
        return account
    first: FxUnavailable | None = None
    for currency in allowed:
        try:
            factor(table, account, currency, day)
        except FxUnavailable as exc:
            first = first or exc
            continue
        return currency
    assert first is not None
    raise first


class Pricing(NamedTuple):
    """One auction's money at one date's rates: floors into the account currency for the
    decision, the decided price back into the bid `currency`. What OpenRTB and /v1/bid both
    call, and what bench/fx_cost.py times. A NamedTuple, as selection's per-impression
    objects: built several times faster than a frozen dataclass, once per request."""

    account: str
    currency: str  # the bid's
    to_bid: float  # 1 account unit in `currency`
    table: FxTable | None
    day: int

    def floor(self, amount: float, currency: str) -> float:
        """A floor in `currency`, in the account currency; FxUnavailable without a rate."""
        if currency == self.account:
            return amount
        if currency == self.currency:
            return amount / self.to_bid
        return amount * factor(self.table, currency, self.account, self.day)

    def bid(self, price: float, floor: float, floor_currency: str) -> float:
        """The decided price (account currency) in the bid currency, to 6 decimals; never
        below a floor given in the bid currency (rounding could otherwise cross it). Rounded
        by floor(x * 1e6 + 0.5) / 1e6, the nearest double to a 6-decimal number as round()
        gives (but for exact ties), at a fraction of round()'s cost for most values."""
        out = math.floor(price * self.to_bid * 1e6 + 0.5) / 1e6
        if out < floor and floor_currency == self.currency:
            return floor
        return out


def pricing(allowed: Sequence[str], account: str, table: FxTable | None, day: int) -> Pricing:
    """The Pricing of an auction that allows `allowed` (empty: any), on day ordinal `day`:
    the bid in `choose_currency`'s; FxUnavailable when no allowed currency has a rate."""
    if not allowed or account in allowed:
        return Pricing(account, account, 1.0, table, day)
    # per request: the rates read directly (FxTable.factor's work, without its two calls)
    row = table.by_day.get(day) if table is not None else None
    a = row.get(account) if row is not None else None
    if row is not None and a is not None:
        for currency in allowed:
            b = row.get(currency)
            if b is not None:
                return Pricing(account, currency, b / a, table, day)
    choose_currency(allowed, account, table, day)  # raises, with the first currency's reason
    raise AssertionError("choose_currency found a rate that pricing did not")
