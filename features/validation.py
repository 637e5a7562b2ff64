"""The row rules of canonical logs: lenient parsing into the schema, then one reason per row.

Kept apart from features.ingest (files, quarantine, fingerprint) so that each stays small;
ingest is the only caller. Every rule is a vectorised condition plus a reason expression;
the reason is only formatted for rows that break a rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import polars as pl

from features.adapters import REASON
from features.adapters.ipinyou import quoted
from features.ipanon import anonymise_ip_series
from features.schema import (
    AUCTION_TYPES,
    CHANNELS,
    COUNTER_COLUMNS,
    DEVICE_TYPES,
    PRICE_COLUMNS,
    REQUIRED,
    SCHEMA,
    TRUTH_SCHEMA,
)

SEGMENT_SEPARATOR: Final = ","  # user_segments in CSV: "10063,10006"; "" is an empty list

# Parsing is lenient about spelling, strict about meaning: " 5 ", "5.0" and "True" are read,
# "abc" in a number column is a reason. Times without an offset are taken as UTC.
_BOOLEANS: Final = {
    spelling: value
    for words, value in (
        (("true", "t", "1", "yes", "y"), True),
        (("false", "f", "0", "no", "n"), False),
    )
    for word in words
    for spelling in (word, word.upper(), word.capitalize())
}
_TIME_FORMATS_TZ: Final = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
_TIME_FORMATS_UTC: Final = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d")
_INT_RANGE: Final = {pl.Int8: (-(2**7), 2**7 - 1), pl.Int32: (-(2**31), 2**31 - 1)}
_ENUMS: Final = {"channel": CHANNELS, "auction_type": AUCTION_TYPES, "device_type": DEVICE_TYPES}
_BINARY: Final = ("click", "conversion")
_NON_NEGATIVE: Final = (
    *PRICE_COLUMNS,
    "conversion_value",
    "slot_width",
    "slot_height",
    *COUNTER_COLUMNS,
)
_TEXTUAL: Final = (pl.String, pl.Categorical, pl.Enum)


def validate(candidate: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """Typed canonical columns, and per row the first rule it breaks (null when none).

    Rule order: the adapter's own reason, a missing required field, a value that does not
    parse (in schema order), then the rules on parsed values. Conditions are evaluated on all
    rows as booleans; which rule comes first, and its reason string, only on the rows that break
    one (polars evaluates both branches of a when/then, so formatting reasons for every row
    would cost more than the parsing).
    """
    targets = {**SCHEMA, **{c: t for c, t in TRUTH_SCHEMA.items() if c in candidate.columns}}
    values: list[pl.Expr] = []
    missing: list[_Check] = []
    unparsed: list[_Check] = []
    for name, target in targets.items():
        if name not in candidate.columns:
            values.append(pl.lit(None, dtype=target).alias(name))
            missing += [_rule(pl.lit(True), f"missing {name}")] if name in REQUIRED else []
            continue
        source = candidate.schema[name]
        if source.is_nested() and not isinstance(target, pl.List):
            raise TypeError(f"column {name} has type {source}, expected {target}")
        textual = isinstance(source, _TEXTUAL)
        present = pl.col(name).is_not_null()
        if textual or (target == pl.String and source != pl.Null):
            # Same expression as inside _from_text: polars computes the strip once for both.
            present = present & (pl.col(name).cast(pl.String).str.strip_chars() != "")
            value = _from_text(name, target, pl.col(name).cast(pl.String))
        else:
            value = _from_typed(name, source, target)
        can_fail = not (target == pl.String and name != "ip") and not isinstance(target, pl.List)
        values.append(value.alias(name))
        if name not in REQUIRED and not can_fail:
            continue  # a string is never unparsable: spare the presence check
        values.append(present.alias(f"_has_{name}"))
        has = pl.col(f"_has_{name}")
        if name in REQUIRED:
            missing.append(_rule(~has, f"missing {name}"))
        if can_fail and not source.is_nested():
            text = pl.col(f"_raw_{name}").cast(pl.String).str.strip_chars()
            kind = _kind(name, target)
            shown = quoted(text) if textual else text
            unparsed.append(_rule(has & pl.col(name).is_null(), f"{name} not {kind}", shown))
    own = pl.col(f"_raw_{REASON}")
    adapter = [(own.is_not_null(), own)] if REASON in candidate.columns else []
    checks = [*adapter, *missing, *unparsed, *_rules(targets)]

    staged = candidate.select(values)
    both = pl.concat([candidate.select(pl.all().name.prefix("_raw_")), staged], how="horizontal")
    bad = both.select(pl.any_horizontal(c.fill_null(False) for c, _ in checks)).to_series()
    reason = pl.repeat(None, candidate.height, dtype=pl.String, eager=True).alias("reason")
    if bad.any():
        first = pl.coalesce(pl.when(cond).then(msg) for cond, msg in checks)
        messages = both.filter(bad).select(first).to_series()
        reason = reason.scatter(bad.arg_true(), messages)
    return staged.select(list(targets)), reason


_Check = tuple[pl.Expr, pl.Expr]  # (the row breaks the rule, its reason)


def _rule(condition: pl.Expr, message: str, value: pl.Expr | None = None) -> _Check:
    """A check whose reason is `message`, followed by ": value" when a value is given."""
    text = pl.lit(message) if value is None else pl.concat_str(pl.lit(f"{message}: "), value)
    return condition, text


def _kind(name: str, target: pl.DataType) -> str:
    if name in _BINARY:
        return "0/1"
    if name == "ip":
        return "an IP address"
    if isinstance(target, pl.Datetime):
        return "a timestamp"
    if target == pl.Boolean:
        return "true/false"
    return "an integer" if target.is_integer() else "a number"


def _integral(number: pl.Expr, target: pl.DataType) -> pl.Expr:
    low, high = _INT_RANGE[type(target)]
    ok = (number == number.floor()) & number.is_between(low, high)
    return pl.when(ok).then(number.cast(target))


def _from_text(name: str, target: pl.DataType, raw: pl.Expr) -> pl.Expr:
    """A string column parsed into `target`; null where it does not parse."""
    if isinstance(target, pl.List):  # "" is an empty list, null stays null
        items = raw.str.split(SEGMENT_SEPARATOR).list.eval(pl.element().str.strip_chars())
        return items.list.eval(pl.element().filter(pl.element() != ""))
    if target == pl.String and name != "ip" and name not in _ENUMS:
        return pl.when(raw != "").then(raw)  # kept as written: stripping 20 id columns is costly
    stripped = raw.str.strip_chars()
    text = pl.when(stripped != "").then(stripped)
    if isinstance(target, pl.Datetime):
        return text.map_batches(_parse_times, return_dtype=pl.Datetime("us", "UTC"))
    if target == pl.Float64:
        return text.cast(pl.Float64, strict=False)
    if target.is_integer():
        return text.map_batches(lambda t: _parse_ints(t, target), return_dtype=target)
    if target == pl.Boolean:
        return text.replace_strict(_BOOLEANS, default=None, return_dtype=pl.Boolean)
    if name == "ip":
        return text.map_batches(anonymise_ip_series, return_dtype=pl.String)
    return text.str.to_lowercase()  # an enum


def _with_fallback(
    fast: pl.Series, text: pl.Series, slow: Callable[[pl.Series], pl.Series]
) -> pl.Series:
    """`fast` where it parsed; `slow` runs only on the (usually no) rows where it did not."""
    todo = (fast.is_null() & text.is_not_null()).arg_true()
    return fast.scatter(todo, slow(text.gather(todo))) if todo.len() else fast


def _parse_ints(text: pl.Series, target: pl.DataType) -> pl.Series:
    """Integers; "300.0" and "3e2" are read too, "3.5" is not."""

    def as_float(rest: pl.Series) -> pl.Series:
        return pl.select(_integral(pl.lit(rest).cast(pl.Float64, strict=False), target)).to_series()

    return _with_fallback(text.cast(target, strict=False), text, as_float)


def _parse_times(text: pl.Series) -> pl.Series:
    """ISO 8601 times to UTC; the other accepted spellings are tried only where it fails."""
    first, *others = _TIME_FORMATS_TZ

    def other_spellings(rest: pl.Series) -> pl.Series:
        aware = [pl.lit(rest).str.to_datetime(f, time_unit="us", strict=False) for f in others]
        naive = [
            pl.lit(rest).str.to_datetime(f, time_unit="us", strict=False) for f in _TIME_FORMATS_UTC
        ]
        return pl.select(
            pl.coalesce(
                *(t.dt.convert_time_zone("UTC") for t in aware),
                *(t.dt.replace_time_zone("UTC") for t in naive),
            )
        ).to_series()

    out = text.str.to_datetime(first, time_unit="us", strict=False).dt.convert_time_zone("UTC")
    return _with_fallback(out, text, other_spellings)


def _from_typed(name: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """A typed (Parquet or adapter) column converted into `target`; null where it cannot be."""
    col = pl.col(name)
    if source == pl.Null:
        return col.cast(target)
    if isinstance(target, pl.Datetime):
        if isinstance(source, pl.Datetime):
            utc = (
                col.dt.replace_time_zone("UTC")
                if source.time_zone is None
                else col.dt.convert_time_zone("UTC")
            )
            return utc.dt.cast_time_unit("us")
        if source == pl.Date:
            return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    elif isinstance(target, pl.List) and isinstance(source, pl.List | pl.Array):
        return col.cast(pl.List(pl.String))
    elif target == pl.Boolean and (source == pl.Boolean or source.is_numeric()):
        return (
            col if source == pl.Boolean else pl.when(col == 1).then(True).when(col == 0).then(False)
        )
    elif target.is_integer() and (source.is_integer() or source == pl.Boolean):
        return col.cast(target, strict=False)
    elif target.is_integer() and source.is_float():
        return _integral(col.cast(pl.Float64), target)
    elif target == pl.Float64 and (source.is_numeric() or source == pl.Boolean):
        return col.cast(pl.Float64)
    raise TypeError(f"column {name} has type {source}, expected {target}")


def _rules(targets: dict[str, pl.DataType]) -> list[_Check]:
    """The rules on parsed values, in the order their reasons take precedence."""
    c = pl.col
    floats = [n for n, t in targets.items() if t == pl.Float64]
    truth = [n for n in TRUTH_SCHEMA if n in targets]
    return [
        *(
            _rule(c(n).is_not_null() & ~c(n).is_in(ok), f"unknown {n}", quoted(c(n)))
            for n, ok in _ENUMS.items()
        ),
        *(_rule(~c(n).is_finite(), f"{n} not finite", c(n).cast(pl.String)) for n in floats),
        *(_rule(c(n) < 0, f"negative {n}", c(n).cast(pl.String)) for n in _NON_NEGATIVE),
        *(_rule(~c(n).is_in((0, 1)), f"{n} not 0/1", c(n).cast(pl.String)) for n in _BINARY),
        *(_rule(~c(n).is_between(0, 1), f"{n} not in [0, 1]", c(n).cast(pl.String)) for n in truth),
        _rule(c("click_time") < c("event_time"), "click_time before event_time"),
        _rule(c("click_time").is_not_null() & (c("click") == 0), "click_time without click"),
        _rule((c("conversion") == 1) & (c("click") == 0), "conversion without click"),
        _rule(c("conversion_time") < c("event_time"), "conversion_time before event_time"),
        _rule(c("conversion_time") < c("click_time"), "conversion_time before click_time"),
    ]
