"""Currencies in the service, in process (the real app, its middleware and fast lane, the tiny
models): every conversion path (OpenRTB floor in, bid out, win notice; /v1/bid; /v1/events;
campaigns in their own currency) and every refusal, on the shared OpenRTB fixtures.

The campaigns bid their CPM target (goal cpm, value strategy), so prices do not depend on the
models and the conversions can be checked to the cent. The FX table: 1 EUR = 1.25 USD
(0.85 GBP) today, 1.20 USD yesterday, so a date's rate is visible in the result.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from serving.app import create_app
from serving.models.predictor import Predictor
from serving.settings import BidoptSettings
from serving.state.fx import FxBook
from tests.serving.conftest import run_server

FIXTURES = Path(
    os.environ.get(
        "BIDOPT_SHARED_OPENRTB", Path(__file__).resolve().parents[2] / ".." / "shared" / "openrtb"
    )
)
NOBID = "X-Bidopt-Nobid-Reason"
TODAY = datetime.now(UTC).date()

CAMPAIGNS = """
[[campaigns]]
id = "fr-eur"            # a French advertiser billed in euros, on the dollar account
currency = "EUR"
goal = "cpm"
target = 8.0             # 10 USD at the table's latest rate
max_bid = 16.0           # 20 USD
daily_budget = 800.0     # 1000 USD
total_budget = 8000.0
[campaigns.targeting]
channels = ["web"]
countries = ["FR"]
[[campaigns.creatives]]
id = "fr-banner"
format = "banner"
width = 300
height = 250
adomain = "boutique.example"

[[campaigns]]
id = "ctv-usd"
goal = "cpm"
target = 20.0
max_bid = 30.0
daily_budget = 1000.0
[campaigns.targeting]
channels = ["ctv"]
[[campaigns.creatives]]
id = "ctv-15"
format = "video"
duration_s = 15
adomain = "tv.example"
"""


def fx_text(days: int = 4, end: Any = TODAY) -> str:
    lines = ["date,base,currency,rate"]
    for i in range(days):
        d = end - timedelta(days=i)
        usd = "1.20" if i == 1 else "1.25"
        lines += [f"{d},EUR,USD,{usd}", f"{d},EUR,GBP,0.85", f"{d},EUR,JPY,160"]
    return "\n".join(lines) + "\n"


def fixture(name: str) -> dict[str, Any]:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"OpenRTB fixtures not found at {FIXTURES} (set BIDOPT_SHARED_OPENRTB)")
    return json.loads(path.read_text())


class Client:
    """The app called through ASGI, one request at a time, inside one run of its lifespan
    (the ledger's writer is running, as in the service); `close` ends it."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.lifespan = app.router.lifespan_context(app)
        self.loop.run_until_complete(self.lifespan.__aenter__())

    def __call__(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                return await c.request(method, path, **kw)

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.lifespan.__aexit__(None, None, None))
        self.loop.close()

    def rtb(self, body: dict[str, Any]) -> httpx.Response:
        return self("POST", "/openrtb2/bid", json=body)

    def campaign(self, cid: str) -> dict[str, Any]:
        status = self("GET", "/v1/campaigns").json()
        return next(c for c in status["campaigns"] if c["id"] == cid)


def make(tmp_path: Path, predictor: Predictor | None, fx: str | None = fx_text()) -> Client:
    (tmp_path / "campaigns.toml").write_text(CAMPAIGNS)
    if fx is not None:
        (tmp_path / "fx.csv").write_text(fx)
    settings = BidoptSettings(
        tracking_uri=f"sqlite:///{tmp_path / 'absent.db'}",
        campaigns_file=tmp_path / "campaigns.toml" if fx is not None else None,
        fx_file=tmp_path / "fx.csv" if fx is not None else None,
        win_secret="fx-test-secret-0123456789",
        ledger_dir=tmp_path / "ledger",
    )
    app = create_app(settings)
    app.state.holder.current = predictor
    client = Client(app)
    OPEN.append(client)
    return client


OPEN: list[Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


@pytest.fixture
def client(tmp_path: Path, predictor: Predictor) -> Client:
    return make(tmp_path, predictor)


def french_user_on_us_site() -> dict[str, Any]:
    """banner-site.json (a US publisher, www.foobar.com, USD) with a French user."""
    req = copy.deepcopy(fixture("banner-site.json"))
    req["device"]["geo"] = {"country": "FRA", "city": "Lyon"}
    req["badv"] = []
    return req


def only_bid(r: httpx.Response) -> tuple[dict[str, Any], str]:
    assert r.status_code == 200, (r.status_code, r.headers.get(NOBID), r.text)
    body = r.json()
    [seat] = body["seatbid"]
    [bid] = seat["bid"]
    return bid, body["cur"]


# --- geo: the user's, not the publisher's ------------------------------------------------


def test_french_user_on_a_us_site_in_a_usd_auction_gets_the_french_campaign(
    client: Client,
) -> None:
    bid, cur = only_bid(client.rtb(french_user_on_us_site()))
    assert (bid["cid"], bid["crid"], cur) == ("fr-eur", "fr-banner", "USD")
    assert bid["price"] == pytest.approx(10.0)  # 8 EUR of target at 1.25


def test_us_user_on_a_french_site_does_not(client: Client) -> None:
    req = copy.deepcopy(fixture("banner-site.json"))  # device geo USA
    req["site"] = {"domain": "www.journal.fr", "publisher": {"id": "fr-1", "domain": "journal.fr"}}
    req["badv"] = []
    r = client.rtb(req)
    assert (r.status_code, r.headers[NOBID]) == (204, "country_not_targeted")


def test_geo_falls_back_to_the_users_home_and_keeps_alpha2(client: Client) -> None:
    req = french_user_on_us_site()
    del req["device"]["geo"]
    req["user"]["geo"] = {"country": "FRA"}
    assert only_bid(client.rtb(req))[0]["cid"] == "fr-eur"
    req["user"]["geo"] = {"country": "fr"}  # alpha-2, as some exchanges send
    assert only_bid(client.rtb(req))[0]["cid"] == "fr-eur"


# --- OpenRTB: floors in, bids out ---------------------------------------------------------


def test_bid_goes_back_in_an_allowed_currency(client: Client) -> None:
    req = french_user_on_us_site()
    req["cur"] = ["EUR"]
    bid, cur = only_bid(client.rtb(req))
    assert cur == "EUR" and bid["price"] == pytest.approx(8.0)
    q = parse_qs(urlsplit(bid["nurl"]).query)
    assert (q["bc"], q["bp"]) == (["EUR"], ["8.0"])
    req["cur"] = ["EUR", "USD"]  # the account currency is preferred when allowed
    bid, cur = only_bid(client.rtb(req))
    assert cur == "USD" and bid["price"] == pytest.approx(10.0)
    req["cur"] = ["CHF", "GBP"]  # CHF unknown to the table: the first known one
    bid, cur = only_bid(client.rtb(req))
    assert cur == "GBP" and bid["price"] == pytest.approx(10.0 / 1.25 * 0.85)


def test_floor_in_another_currency_is_converted_for_the_decision(client: Client) -> None:
    req = french_user_on_us_site()
    req["imp"][0]["bidfloor"], req["imp"][0]["bidfloorcur"] = 7.9, "EUR"  # 9.875 USD < 10
    bid, cur = only_bid(client.rtb(req))
    assert cur == "USD" and bid["price"] == pytest.approx(10.0)
    req["imp"][0]["bidfloor"] = 8.1  # 10.125 USD: above what the campaign bids
    r = client.rtb(req)
    assert (r.status_code, r.headers[NOBID]) == (204, "below_floor")
    req["imp"][0]["bidfloor"], req["imp"][0]["bidfloorcur"] = 1500.0, "JPY"  # 11.72 USD
    assert client.rtb(req).headers[NOBID] == "below_floor"
    req["imp"][0]["bidfloor"] = 1200.0  # 9.375 USD
    assert only_bid(client.rtb(req))[0]["price"] == pytest.approx(10.0)


def test_bid_at_the_floor_in_the_floor_currency_is_never_below_it(client: Client) -> None:
    req = french_user_on_us_site()
    req["cur"] = ["EUR"]
    req["imp"][0]["bidfloor"], req["imp"][0]["bidfloorcur"] = 8.0, "EUR"  # exactly the bid
    bid, cur = only_bid(client.rtb(req))
    assert cur == "EUR" and bid["price"] >= 8.0


def test_unknown_currency_is_a_no_bid_with_the_reason(client: Client) -> None:
    req = french_user_on_us_site()
    req["cur"] = ["CHF"]
    r = client.rtb(req)
    assert (r.status_code, r.headers[NOBID]) == (204, "currency_not_supported")
    req = french_user_on_us_site()
    req["imp"][0]["bidfloorcur"] = "CHF"
    r = client.rtb(req)
    assert (r.status_code, r.headers[NOBID]) == (204, "currency_not_supported")


def test_malformed_currency_is_a_400_naming_the_field(client: Client) -> None:
    req = french_user_on_us_site()
    req["imp"][0]["bidfloorcur"] = "usd"  # case is normalised, as exchanges disagree on it
    assert only_bid(client.rtb(req))[1] == "USD"
    for field, value in (("imp[0].bidfloorcur", "US$"), ("cur[1]", "EURO")):
        req = french_user_on_us_site()
        if field.startswith("imp"):
            req["imp"][0]["bidfloorcur"] = value
        else:
            req["cur"] = ["USD", value]
        r = client.rtb(req)
        assert r.status_code == 400 and r.json()["field"] == field, r.text


def test_ctv_eur_fixture_bids_in_euros_when_tmax_allows(client: Client) -> None:
    req = fixture("ctv-app-video-short-tmax.json")
    r = client.rtb(req)  # as shipped: tmax 8 ms, below the network margin
    assert (r.status_code, r.headers[NOBID]) == (204, "insufficient_time")
    bid, cur = only_bid(client.rtb({**req, "tmax": 200}))
    assert cur == "EUR" and bid["cid"] == "ctv-usd"
    assert bid["price"] == pytest.approx(20.0 / 1.25) and bid["price"] >= 12.0  # the EUR floor


def test_no_fx_file_keeps_the_account_currency_only(tmp_path: Path, predictor: Predictor) -> None:
    c = make(tmp_path, predictor, fx=None)
    req = {**fixture("ctv-app-video-short-tmax.json"), "tmax": 200}
    r = c.rtb(req)
    assert (r.status_code, r.headers[NOBID]) == (204, "currency_not_supported")


def test_stale_or_future_table_is_a_no_bid(tmp_path: Path, predictor: Predictor) -> None:
    c = make(tmp_path, predictor, fx=fx_text(end=TODAY - timedelta(days=30)))
    req = french_user_on_us_site()
    assert only_bid(c.rtb(req))[1] == "USD"  # no conversion needed: still bids
    req["cur"] = ["EUR"]
    r = c.rtb(req)
    assert (r.status_code, r.headers[NOBID]) == (204, "fx_rate_unavailable")
    req = french_user_on_us_site()
    req["imp"][0]["bidfloorcur"] = "GBP"
    assert c.rtb(req).headers[NOBID] == "fx_rate_unavailable"


# --- the win notice -----------------------------------------------------------------------


def test_win_notice_in_euros_books_dollars(client: Client) -> None:
    req = french_user_on_us_site()
    req["cur"] = ["EUR"]
    bid, _ = only_bid(client.rtb(req))
    url = urlsplit(bid["nurl"])

    def notice(query: str, price: float) -> httpx.Response:
        return client("GET", f"{url.path}?{query.replace('${AUCTION_PRICE}', str(price))}")

    before = client.campaign("fr-eur")["spend_today"]
    r = notice(url.query, 8.01)  # above our 8 EUR bid, compared in euros
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "price"]
    assert "EUR" in r.json()["detail"][0]["msg"]
    assert notice(url.query.replace("bc=EUR", "bc=USD"), 7.0).status_code == 403  # signed
    assert notice(url.query.replace("&bc=EUR", ""), 7.0).status_code == 403
    r = notice(url.query, 7.0)
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0}
    assert client.campaign("fr-eur")["spend_today"] == pytest.approx(before + 7.0 * 1.25 / 1000)


# --- /v1/bid -------------------------------------------------------------------------------


def imp(**kw: Any) -> dict[str, Any]:
    base = {
        "impression_id": "i1",
        "event_time": datetime.now(UTC).isoformat(),
        "channel": "web",
        "country": "FR",
        "floor_price": 0.0,
        "auction_type": "second",
    }
    return {**base, **kw}


def v1_bids(client: Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    r = client("POST", "/v1/bid", json=body)
    assert r.status_code == 200, r.text
    return r.json()["bids"]


def test_v1_bid_answers_in_each_impressions_currency(client: Client) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    body = {
        "impressions": [
            imp(impression_id="usd"),
            imp(impression_id="eur", currency="EUR", floor_price=7.5),
            imp(impression_id="eur-yesterday", currency="EUR", event_time=yesterday),
            imp(impression_id="gbp-high", currency="GBP", floor_price=7.0),  # 10.29 USD
            imp(impression_id="chf", currency="CHF"),
        ],
        "campaign_ids": ["fr-eur"],
    }
    usd, eur, eur_y, gbp, chf = v1_bids(client, body)
    assert (usd["currency"], usd["price"]) == ("USD", pytest.approx(10.0))
    assert (eur["currency"], eur["price"], eur["expected_value"]) == (
        "EUR",
        pytest.approx(8.0),
        pytest.approx(8.0),
    )
    assert eur_y["price"] == pytest.approx(10.0 / 1.20)  # yesterday's rate
    assert (gbp["bid"], gbp["reason"], gbp["currency"]) == (False, "below_floor", "GBP")
    assert (chf["bid"], chf["reason"], chf["currency"]) == (False, "currency_not_supported", "CHF")
    assert [b["impression_id"] for b in (usd, eur, eur_y, gbp, chf)] == [
        "usd",
        "eur",
        "eur-yesterday",
        "gbp-high",
        "chf",
    ]


def test_v1_bid_inline_campaigns_convert_too(client: Client) -> None:
    inline = {
        "campaign_id": "c",
        "goal": "cpm",
        "target": 5.0,
        "max_bid": 9.0,
        "creative_ids": ["a"],
    }
    body = {"impressions": [imp(currency="GBP", floor_price=3.0)], "campaigns": [inline]}
    [b] = v1_bids(client, body)
    assert (b["bid"], b["currency"], b["price"]) == (True, "GBP", pytest.approx(5 / 1.25 * 0.85))
    old = (datetime.now(UTC) - timedelta(days=60)).isoformat()
    body = {"impressions": [imp(currency="GBP", event_time=old)], "campaigns": [inline]}
    [b] = v1_bids(client, body)
    assert (b["bid"], b["reason"]) == (False, "fx_rate_unavailable")


def test_v1_bid_malformed_currency_is_422_naming_it(client: Client) -> None:
    r = client("POST", "/v1/bid", json={"impressions": [imp(currency="eur")]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "impressions", 0, "currency"]
    r = client(
        "POST", "/v1/bid", json={"impressions": [imp(currency="CHF")], "campaign_ids": ["x"]}
    )
    assert r.status_code == 404 and r.json()["field"] == "campaign_ids"  # checked all the same


# --- /v1/events and the campaigns' own currency ----------------------------------------------


def win(event_id: str, price: float, currency: str | None = None, **kw: Any) -> dict[str, Any]:
    ev = {"event_id": event_id, "type": "win", "impression_id": event_id, "campaign_id": "fr-eur"}
    ev |= {"price": price, "time": (datetime.now(UTC) - timedelta(seconds=60)).isoformat(), **kw}
    return ev | ({"currency": currency} if currency else {})


def test_events_convert_at_the_event_dates_rate(client: Client) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    events = [win("e1", 4.0, "EUR"), win("e2", 4.0, "EUR", time=yesterday), win("e3", 2.0)]
    before = client.campaign("fr-eur")
    r = client("POST", "/v1/events", json={"events": events})
    assert r.status_code == 200, r.text
    after = client.campaign("fr-eur")
    today = (4.0 * 1.25 + 2.0) / 1000  # the euro win at today's rate, the dollar win as is
    assert after["spend_today"] - before["spend_today"] == pytest.approx(today)
    total = today + 4.0 * 1.20 / 1000  # yesterday's win at yesterday's rate
    assert after["spend_total"] - before["spend_total"] == pytest.approx(total)


def test_event_refusals_change_nothing(client: Client) -> None:
    before = client.campaign("fr-eur")["spend_today"]
    cases = [
        # 17 EUR = 21.25 USD: above the 20 USD max bid (16 EUR)
        ([win("a", 1.0, "EUR"), win("b", 17.0, "EUR")], ["body", "events", 1, "price"], "17 EUR"),
        ([win("a", 1.0, "EUR"), win("c", 1.0, "CHF")], ["body", "events", 1, "currency"], "CHF"),
        ([win("d", 1.0, "eur")], ["body", "events", 0, "currency"], "pattern"),
    ]
    for events, loc, said in cases:
        r = client("POST", "/v1/events", json={"events": events})
        assert r.status_code == 422, r.text
        [err] = r.json()["detail"]
        assert err["loc"] == loc and said in err["msg"], err
    assert client.campaign("fr-eur")["spend_today"] == before
    ok = client("POST", "/v1/events", json={"events": [win("b", 16.0, "EUR")]})
    assert ok.status_code == 200  # exactly the max bid, in euros


def test_campaigns_state_both_currencies(client: Client) -> None:
    status = client("GET", "/v1/campaigns").json()
    assert status["account_currency"] == "USD"
    assert status["fx"]["base"] == "EUR" and status["fx"]["last_date"] == TODAY.isoformat()
    assert status["fx"]["currencies"] == ["EUR", "GBP", "JPY", "USD"]
    fr = next(c for c in status["campaigns"] if c["id"] == "fr-eur")
    assert (fr["currency"], fr["max_bid"], fr["daily_budget"], fr["target"]) == (
        "EUR",
        20.0,
        1000.0,
        10.0,
    )
    assert fr["fx"] == {
        "currency": "EUR",
        "rate": 1.25,
        "rate_date": TODAY.isoformat(),
        "original": {"max_bid": 16.0, "daily_budget": 800.0, "total_budget": 8000.0, "target": 8.0},
    }
    usd = next(c for c in status["campaigns"] if c["id"] == "ctv-usd")
    assert (usd["currency"], usd["fx"]) == ("USD", None)


def test_fx_file_reload_keeps_the_old_table_when_invalid(tmp_path: Path) -> None:
    path = tmp_path / "fx.csv"
    path.write_text(fx_text())
    book = FxBook(path)
    old = book.table
    assert book.poll() is None
    path.write_text(fx_text() + f"{TODAY},EUR,CHF,-1\n")
    assert book.poll() is False and book.table is old
    assert book.last_error is not None and "rate: -1 must be above 0" in book.last_error[0]
    assert book.status()["reloads_failed"] == 1
    path.write_text(fx_text().replace("1.25", "1.30"))
    assert book.poll() is True and book.last_error is None
    assert book.table is not None and book.table.rates_on(TODAY)["USD"] == 1.30


# --- the same through the real server (uvicorn, the registry's champions) -------------------


@pytest.mark.integration
def test_end_to_end_through_the_live_server(
    serving_store: tuple[str, Path], tmp_path: Path
) -> None:
    """The issue's case on the shared fixtures, through `bidopt serve`: a French user on a US
    site in a USD auction gets the euro campaign, a US user on a French site does not; the
    ctv fixture (EUR) bids in euros once tmax allows; its win notice books dollars."""
    (tmp_path / "campaigns.toml").write_text(CAMPAIGNS)
    (tmp_path / "fx.csv").write_text(fx_text())
    env = {"BIDOPT_FX_FILE": str(tmp_path / "fx.csv"), "BIDOPT_STATE_REFRESH_S": "0.2"}
    args = ("--campaigns", str(tmp_path / "campaigns.toml"))
    with run_server(serving_store[0], tmp_path, env=env, args=args) as s:
        r = s.client.post("/openrtb2/bid", json=french_user_on_us_site())
        bid, cur = only_bid(r)  # first price: shaded below 10 USD if the bundle has a curve
        assert (bid["cid"], cur) == ("fr-eur", "USD") and 0.03 <= bid["price"] <= 10.0
        us_on_fr = copy.deepcopy(fixture("banner-site.json"))
        us_on_fr["site"] = {"domain": "www.journal.fr", "publisher": {"domain": "journal.fr"}}
        us_on_fr["badv"] = []
        r = s.client.post("/openrtb2/bid", json=us_on_fr)
        assert (r.status_code, r.headers[NOBID]) == (204, "country_not_targeted")

        ctv = {**fixture("ctv-app-video-short-tmax.json"), "tmax": 300}
        bid, cur = only_bid(s.client.post("/openrtb2/bid", json=ctv))
        assert (bid["cid"], cur) == ("ctv-usd", "EUR") and 12.0 <= bid["price"] <= 16.0
        url = urlsplit(bid["nurl"].replace("${AUCTION_PRICE}", "12.0"))  # cleared at the floor
        assert s.client.get(f"{url.path}?{url.query}").json() == {"accepted": 1, "duplicates": 0}
        status = s.client.get("/v1/campaigns").json()
        ctv_status = next(c for c in status["campaigns"] if c["id"] == "ctv-usd")
        assert ctv_status["spend_today"] == pytest.approx(12.0 * 1.25 / 1000)
        assert status["fx"]["file"] == str(tmp_path / "fx.csv")


def test_serve_refuses_an_invalid_fx_file_or_an_unconvertible_campaign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import typer

    from serving.cli import check_startup

    bad = tmp_path / "fx.csv"
    bad.write_text(fx_text() + f"{TODAY},EUR,CHF,abc\n")
    with pytest.raises(typer.Exit) as info:
        check_startup(BidoptSettings(fx_file=bad))
    assert info.value.exit_code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"error: invalid FX file {bad}:"
    assert err[1] == f"{bad}: line 14: rate: 'abc' is not a number"
    (tmp_path / "campaigns.toml").write_text(CAMPAIGNS)
    with pytest.raises(typer.Exit):  # a euro campaign and no FX file to convert it
        check_startup(BidoptSettings(campaigns_file=tmp_path / "campaigns.toml"))
    assert "campaign 'fr-eur': currency: converting EUR to USD" in capsys.readouterr().err
    bad.write_text(fx_text())
    check_startup(BidoptSettings(campaigns_file=tmp_path / "campaigns.toml", fx_file=bad))
