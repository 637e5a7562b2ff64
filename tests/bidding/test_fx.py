"""bidding.fx: the FX file's validation (every problem, naming its line), the rate on a date,
conversions between any two currencies, the bid currency, and `bidopt fx check`."""

from __future__ import annotations

import math
import random
from datetime import date
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bidding.fx import (
    CURRENCY_NOT_SUPPORTED,
    FX_RATE_UNAVAILABLE,
    MAX_GAP_DAYS,
    FxError,
    FxUnavailable,
    choose_currency,
    factor,
    parse_fx,
    pricing,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "fx.example.csv"

# Friday 2025-06-06 and Monday 2025-06-09: a weekend in between, as the ECB publishes
GOOD = """\
# a comment, then the header
date,base,currency,rate
2025-06-09,EUR,USD,1.14
2025-06-09,EUR,GBP,0.84
2025-06-09,EUR,JPY,165.0
2025-06-06,EUR,USD,1.10
2025-06-06,EUR,GBP,0.85
2025-06-06,EUR,JPY,160.0
"""


def day(text: str) -> int:
    return date.fromisoformat(text).toordinal()


def errors_of(text: str) -> list[str]:
    with pytest.raises(FxError) as info:
        parse_fx(text, "fx.csv")
    return info.value.errors


def test_example_file_is_valid_and_ecb_shaped() -> None:
    table = parse_fx(EXAMPLE.read_text(encoding="utf-8"), EXAMPLE.name)
    assert table.base == "EUR"
    assert {"USD", "GBP", "JPY", "CHF", "EUR"} <= table.currencies
    assert "EXAMPLE" in EXAMPLE.read_text(encoding="utf-8").splitlines()[0]
    assert 1.0 < table.rates_on(table.last)["USD"] < 1.3  # a euro buys about 1.1 dollars


def test_rate_is_the_latest_on_or_before_the_date() -> None:
    t = parse_fx(GOOD)
    assert (t.first, t.last) == (date(2025, 6, 6), date(2025, 6, 9))
    assert t.factor("EUR", "USD", day("2025-06-06")) == 1.10
    assert t.factor("EUR", "USD", day("2025-06-08")) == 1.10  # Sunday: Friday's rate
    assert t.factor("EUR", "USD", day("2025-06-09")) == 1.14
    assert t.factor("USD", "EUR", day("2025-06-09")) == pytest.approx(1 / 1.14)
    # between two quoted currencies, through the base
    assert t.factor("GBP", "USD", day("2025-06-09")) == pytest.approx(1.14 / 0.84)
    assert t.factor("JPY", "JPY", day("1999-01-01")) == 1.0  # nothing to convert


def test_no_rate_before_the_first_date_or_long_after_the_last() -> None:
    t = parse_fx(GOOD)
    with pytest.raises(FxUnavailable) as info:
        t.factor("EUR", "USD", day("2025-06-05"))
    assert info.value.reason == FX_RATE_UNAVAILABLE and "2025-06-05" in info.value.detail
    last_ok = day("2025-06-09") + MAX_GAP_DAYS
    assert t.factor("EUR", "USD", last_ok) == 1.14
    with pytest.raises(FxUnavailable) as info:
        t.factor("EUR", "USD", last_ok + 1)
    assert info.value.reason == FX_RATE_UNAVAILABLE
    assert "covers 2025-06-06 to 2025-06-09" in info.value.detail


def test_unknown_currency_is_not_supported_and_listed() -> None:
    t = parse_fx(GOOD)
    with pytest.raises(FxUnavailable) as info:
        t.factor("CHF", "USD", day("2025-06-09"))
    assert info.value.reason == CURRENCY_NOT_SUPPORTED
    assert "'CHF'" in info.value.detail and "EUR, GBP, JPY, USD" in info.value.detail
    with pytest.raises(FxUnavailable) as info:
        factor(None, "EUR", "USD", 0)  # no table at all
    assert info.value.reason == CURRENCY_NOT_SUPPORTED and "BIDOPT_FX_FILE" in info.value.detail
    assert factor(None, "USD", "USD", 0) == 1.0


def test_line_order_does_not_matter() -> None:
    head, *rows = GOOD.splitlines()[1:]
    random.Random(3).shuffle(rows)
    shuffled = parse_fx("\n".join([head, *rows]))
    assert shuffled == parse_fx(GOOD)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2025-06-09,EUR,CHF,-0.9", "line 9: rate: -0.9 must be above 0"),
        ("2025-06-09,EUR,CHF,0", "line 9: rate: 0 must be above 0"),
        ("2025-06-09,EUR,CHF,inf", "line 9: rate: inf is not a finite number"),
        ("2025-06-09,EUR,CHF,nan", "line 9: rate: nan is not a finite number"),
        ("2025-06-09,EUR,CHF,one", "line 9: rate: 'one' is not a number"),
        ("2025-06-31,EUR,CHF,0.9", "line 9: date: '2025-06-31' is not a date"),
        ("9/6/2025,EUR,CHF,0.9", "line 9: date: '9/6/2025' is not a date"),
        ("2025-06-09,EUR,,0.9", "line 9: currency: missing"),
        ("2025-06-09,EUR,chf,0.9", "line 9: currency: 'chf' is not an ISO 4217 code"),
        ("2025-06-09,EUR,SWISS,0.9", "line 9: currency: 'SWISS' is not an ISO 4217 code"),
        ("2025-06-09,USD,CHF,0.9", "line 9: base: USD, but line 3 set the base to EUR"),
        ("2025-06-09,EUR,EUR,1", "line 9: currency: EUR is the base"),
        ("2025-06-09,EUR,USD,1.2", "line 9: duplicate of line 3 (2025-06-09, USD)"),
        ("2025-06-09,EUR,CHF", "line 9: 3 fields, expected 4"),
    ],
)
def test_each_bad_line_is_named(line: str, expected: str) -> None:
    [error] = errors_of(GOOD + line + "\n")
    assert error.startswith(f"fx.csv: {expected}")


def test_every_problem_is_reported_not_just_the_first() -> None:
    errors = errors_of(GOOD + "2025-06-09,EUR,CHF,-1\n2025-06-09,EUR,NOK,abc\n")
    assert [e.split(":")[1].strip() for e in errors] == ["line 9", "line 10"]


def test_a_date_missing_a_currency_is_named() -> None:
    text = GOOD.replace("2025-06-06,EUR,GBP,0.85\n", "")
    [error] = errors_of(text)
    assert error.startswith("fx.csv: line 6: 2025-06-06: no rate for GBP")


def test_a_gap_of_more_than_a_few_days_is_named() -> None:
    # Easter: Maundy Thursday to Tuesday is the ECB's longest gap, and valid
    easter = "date,base,currency,rate\n2025-04-17,EUR,USD,1.13\n2025-04-22,EUR,USD,1.14\n"
    assert parse_fx(easter).last == date(2025, 4, 22)
    text = "date,base,currency,rate\n2025-06-02,EUR,USD,1.13\n2025-06-09,EUR,USD,1.14\n"
    [error] = errors_of(text)
    assert error == (
        "fx.csv: line 3: 2025-06-09 is 7 days after the previous date 2025-06-02 "
        f"(at most {MAX_GAP_DAYS}: rates are missing in between)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "fx.csv: empty"),
        ("# only a comment\n", "fx.csv: empty"),
        ("date,base,currency,rate\n", "fx.csv: no rates after the header"),
        ("Date,USD,JPY\n2025-06-02,1.1,160\n", "fx.csv: line 1: the header must be"),
    ],
)
def test_empty_or_headless_files(text: str, expected: str) -> None:
    [error] = errors_of(text)
    assert error.startswith(expected)


def test_choose_currency_prefers_the_account_then_the_first_known() -> None:
    t = parse_fx(GOOD)
    d = day("2025-06-09")
    assert choose_currency([], "USD", t, d) == "USD"  # nothing listed: any currency
    assert choose_currency(["EUR", "USD"], "USD", t, d) == "USD"
    assert choose_currency(["CHF", "GBP", "EUR"], "USD", t, d) == "GBP"  # CHF unknown
    with pytest.raises(FxUnavailable) as info:
        choose_currency(["CHF", "SEK"], "USD", t, d)
    assert info.value.reason == CURRENCY_NOT_SUPPORTED and "'CHF'" in info.value.detail
    with pytest.raises(FxUnavailable) as info:
        choose_currency(["EUR"], "USD", t, d + 30)
    assert info.value.reason == FX_RATE_UNAVAILABLE
    with pytest.raises(FxUnavailable):
        choose_currency(["EUR"], "USD", None, d)


def test_round_trip_is_identity() -> None:
    t = parse_fx(EXAMPLE.read_text(encoding="utf-8"))
    d = t.last.toordinal()
    for cur in t.currencies:
        there = t.factor("USD", cur, d)
        assert math.isclose(there * t.factor(cur, "USD", d), 1.0, rel_tol=1e-12)


def test_fx_check_prints_a_summary(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["fx", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "base EUR" in out and "valid" in out
    for cur in ("USD", "GBP", "JPY", "CHF"):
        assert cur in out


def test_fx_check_lists_every_problem_and_exits_2(app: typer.Typer, tmp_path: Path) -> None:
    bad = tmp_path / "fx.csv"
    bad.write_text(GOOD + "2025-06-09,EUR,CHF,-1\n2025-06-09,EUR,,2\n")
    result = CliRunner().invoke(app, ["fx", "check", str(bad)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{bad}: line 9: rate: -1 must be above 0",
        f"{bad}: line 10: currency: missing",
    ]
    result = CliRunner().invoke(app, ["fx", "check", str(tmp_path / "absent.csv")])
    assert result.exit_code == 2 and "cannot read" in result.stderr


def test_pricing_converts_floors_in_and_bids_out() -> None:
    t = parse_fx(GOOD)
    d = day("2025-06-09")
    same = pricing(["USD"], "USD", t, d)
    assert (same.currency, same.to_bid, same.floor(0.5, "USD")) == ("USD", 1.0, 0.5)
    assert same.bid(1.2345678, 0.0, "USD") == 1.234568
    assert same.floor(1.0, "EUR") == pytest.approx(1.14)  # a floor in euros, for a dollar bid
    eur = pricing(["EUR"], "USD", t, d)
    assert eur.currency == "EUR" and eur.to_bid == pytest.approx(1 / 1.14)
    assert eur.floor(2.0, "EUR") == pytest.approx(2.28)
    assert eur.bid(2.28, 2.0, "EUR") == 2.0
    # a price decided at exactly the converted floor never comes back below the floor
    for floor in (0.01, 0.333333, 1.999999, 7.123457, 12.0):
        assert eur.bid(eur.floor(floor, "EUR"), floor, "EUR") >= floor
    with pytest.raises(FxUnavailable):
        eur.floor(1.0, "CHF")
    with pytest.raises(FxUnavailable):
        pricing(["CHF"], "USD", t, d)


def test_a_spreadsheets_byte_order_mark_is_not_part_of_the_header() -> None:
    assert parse_fx("\ufeff" + GOOD) == parse_fx(GOOD)
