"""rlb campaigns in the service's campaign book (serving/state/campaigns.py, rlb_tables.py): a
bad market file stops the start naming the campaign and the file, a bad reload keeps the old
campaigns bidding, and tables are solved again only when their inputs change."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import typer

from bidding.campaigns import CampaignError
from bidding.fx import parse_fx
from bidding.rlb_campaign import RlbBidder, market_from_json, solve_campaign
from serving.cli import check_startup
from serving.settings import BidoptSettings
from serving.state.campaigns import CampaignBook

MARKET = {"market_price_counts": [0, 5, 9, 7, 4, 2, 1], "step": 0.5}
RLB = """
[[campaigns]]
id = "rlb-web"
goal = "cpm"
target = 3.0
max_bid = 9.0
daily_budget = {budget}
strategy = "rlb"
creatives = ["cr"]
rlb = {{ market = "{market}", auctions_per_day = 500, horizon = 40, grid = 64 }}

[[campaigns]]
id = "other"
goal = "cpm"
target = {target}
max_bid = 9.0
daily_budget = 10.0
creatives = ["o-cr"]
"""


def _write(
    tmp_path: Path, budget: float = 0.5, target: float = 2.0, market: str = "m.json"
) -> Path:
    path = tmp_path / "campaigns.toml"
    path.write_text(RLB.format(budget=budget, target=target, market=market))
    _bump(path)
    return path


def _bump(path: Path) -> None:
    """A new modification time, whatever the filesystem's clock resolution."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def market(tmp_path: Path) -> Path:
    path = tmp_path / "m.json"
    path.write_text(json.dumps(MARKET))
    return path


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read (No such file or directory)"),
        ("{not json", "not JSON (Expecting property name enclosed in double quotes, line 1)"),
        (json.dumps({"market_price_counts": [1, -1]}), "market_price_counts[1]: not a count"),
        (json.dumps({"market_price_counts": [1], "step": "1"}), "step: must be a number > 0"),
    ],
)
def test_a_bad_market_file_stops_the_start_naming_campaign_and_file(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    path = _write(tmp_path)
    if content is not None:
        (tmp_path / "m.json").write_text(content)
    with pytest.raises(CampaignError) as info:
        CampaignBook(path)
    want = f"{path}: campaign 'rlb-web': rlb.market: {tmp_path / 'm.json'}: {reason}"
    assert [line[: len(want)] for line in info.value.errors] == [want]


def test_serve_startup_check_exits_2_with_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, market="absent.json")
    settings = BidoptSettings(tracking_uri="sqlite:///x.db", campaigns_file=path)
    with pytest.raises(typer.Exit) as info:
        check_startup(settings)
    assert info.value.exit_code == 2
    err = capsys.readouterr().err
    assert f"campaign 'rlb-web': rlb.market: {tmp_path / 'absent.json'}: cannot read" in err
    assert "Traceback" not in err


def _table(book: CampaignBook) -> object:
    bidder = book.campaigns["rlb-web"].rlb_bidder
    assert isinstance(bidder, RlbBidder)
    return bidder.strategy


def test_reload_solves_only_what_changed_and_refuses_a_bad_market(
    tmp_path: Path, market: Path
) -> None:
    path = _write(tmp_path)
    book = CampaignBook(path)
    first = _table(book)
    assert book.tables.last["rlb-web"]["reused"] is False
    assert book.poll() is None  # nothing changed

    _write(tmp_path, target=2.5)  # another campaign edited: the table is reused
    assert book.poll() is True and _table(book) is first
    assert book.tables.last["rlb-web"]["reused"] is True

    _write(tmp_path, budget=0.8, target=2.5)  # a new budget: solved again
    assert book.poll() is True and _table(book) is not first
    second = _table(book)
    assert second.table.budget == pytest.approx(0.8 * 1000 * 40 / 500)  # type: ignore[attr-defined]

    market.write_text(json.dumps({"market_price_counts": []}))  # only the market file changes
    _bump(market)
    assert book.poll() is False  # refused: the previous campaigns keep bidding on their table
    assert _table(book) is second and book.reloads_failed == 1
    assert book.last_error is not None and "rlb.market" in book.last_error[0]

    market.write_text(json.dumps({**MARKET, "step": 0.25}))  # mended: a new market, a new table
    _bump(market)
    assert book.poll() is True and _table(book) is not second
    assert book.last_error is None
    assert _table(book).table.market.step == 0.25  # type: ignore[attr-defined]


def test_a_campaign_in_its_own_currency_has_its_market_converted(
    tmp_path: Path, market: Path
) -> None:
    path = tmp_path / "campaigns.toml"
    path.write_text(
        RLB.format(budget=0.5, target=2.0, market="m.json").replace(
            'id = "rlb-web"', 'id = "rlb-web"\ncurrency = "EUR"'
        )
    )
    fx = parse_fx("date,base,currency,rate\n2025-06-06,EUR,USD,1.25\n")
    book = CampaignBook(path, "USD", lambda: fx)
    c = book.campaigns["rlb-web"]
    assert c.daily_budget == 0.625 and _table(book).table.market.step == 0.5 * 1.25  # type: ignore[attr-defined]


def test_several_tables_solved_side_by_side_are_each_campaigns_own(
    tmp_path: Path, market: Path
) -> None:
    one = RLB.format(budget=0.5, target=2.0, market="m.json").split("[[campaigns]]")[1]
    text = "".join(
        f"[[campaigns]]{one.replace('rlb-web', f'rlb-{i}').replace('0.5', str(0.2 * i + 0.1))}"
        for i in range(3)
    )
    path = tmp_path / "campaigns.toml"
    path.write_text(text)
    book = CampaignBook(path)
    for i in range(3):
        c = book.campaigns[f"rlb-{i}"]
        assert c.rlb is not None and c.daily_budget == pytest.approx(0.2 * i + 0.1)
        alone = solve_campaign(c.rlb, c.goal_value, c.daily_budget, market_from_json(MARKET))
        np.testing.assert_array_equal(c.bid_strategy.table.values, alone.table.values)  # type: ignore[attr-defined]
