"""The iPinYou adapters: on hand-made rows (exact mappings, reasons) and on the real samples."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from features.adapters import detect_source
from features.ingest import load_logs
from features.ipanon import pseudonymise

SHARED = Path(
    os.environ.get("BIDOPT_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
)
LOG_2259 = SHARED / "ipinyou_2259_logs" / "train.log.tsv.gz"
CTR_2997 = SHARED / "ipinyou_2997_ctr" / "train.csv.gz"

# A real row of each file (2259 first data row, 2997 first data row), as whitespace-split text.
_RAW_NAMES = (
    "click weekday hour bidid timestamp logtype ipinyouid useragent IP region city adexchange"
    " domain url urlid slotid slotwidth slotheight slotvisibility slotformat slotprice creative"
    " bidprice payprice keypage advertiser usertag"
)
_RAW_VALUES = (
    "0 2 13 bid1 20131022135101295 1 DAILV_Dhx~z windows_chrome 113.76.1.* 216 220 2"
    " ea12fe49 b76fad79 null 1925909506 200 200 FirstView Na 13 7319 277 205 null 2259"
    " 11423,10063"
)
_CTR_NAMES = (
    "click weekday hour useragent IP region city adexchange domain slotid slotwidth slotheight"
    " slotvisibility slotformat creative advertiser slotprice"
)
_CTR_VALUES = (
    "0 2 18 android_safari 60.22.69.* 40 53 null 6e9c0e0b 318719490 320 50 FirstView Na"
    " 11908 2997 1-10"
)
RAW_COLUMNS = _RAW_NAMES.split()
RAW_ROW = dict(zip(RAW_COLUMNS, _RAW_VALUES.split(), strict=True))
CTR_COLUMNS = _CTR_NAMES.split()
CTR_ROW = dict(zip(CTR_COLUMNS, _CTR_VALUES.split(), strict=True))


def write_table(path: Path, rows: list[dict[str, str]], sep: str) -> Path:
    columns = list(rows[0])
    lines = [sep.join(columns)] + [sep.join(row[c] for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_detect_source():
    assert detect_source(RAW_COLUMNS) == "ipinyou"
    assert detect_source(CTR_COLUMNS) == "ipinyou_ctr"
    assert detect_source(["event_time", "impression_id", "channel", "click"]) == "canonical"


def test_raw_ipinyou_row_mapping(tmp_path):
    rows = [
        RAW_ROW,
        {**RAW_ROW, "bidid": "bid2", "useragent": "android_safari", "usertag": "null"}
        | {"timestamp": "20131022140000000"},
        {**RAW_ROW, "bidid": "bid3", "useragent": "null", "domain": "null", "click": "1"}
        | {"timestamp": "20131022150000000"},
    ]
    result = load_logs(write_table(tmp_path / "raw.tsv", rows, "\t"))
    assert result.source == "ipinyou" and result.rows_quarantined == 0
    first = result.frame.row(0, named=True)
    assert first["event_time"] == datetime(2013, 10, 22, 5, 51, 1, 295000, tzinfo=UTC)
    assert first["request_id"] == first["impression_id"] == "bid1"
    assert first["user_id"] == pseudonymise("DAILV_Dhx~z", "ipinyou")
    assert (first["channel"], first["device_type"]) == ("web", "desktop")
    assert (first["os"], first["browser"]) == ("windows", "chrome")
    assert (first["ip"], first["country"], first["region"], first["city"]) == (
        "113.76.1.0",
        "CN",
        "216",
        "220",
    )
    assert first["user_segments"] == ["11423", "10063"]
    assert (first["slot_width"], first["slot_height"]) == (200, 200)
    assert (first["slot_visibility"], first["slot_format"]) == ("FirstView", "Na")
    assert (first["advertiser_id"], first["campaign_id"], first["creative_id"]) == (
        "2259",
        "2259",
        "7319",
    )
    assert (first["floor_price"], first["bid_price"]) == (13.0, 277.0)
    assert (first["paying_price"], first["market_price"]) == (205.0, 205.0)
    assert (first["won"], first["auction_type"], first["conversion"]) == (True, "second", 0)
    assert result.frame["device_type"].to_list() == ["desktop", "mobile", None]
    assert result.frame["user_segments"].to_list()[1] is None
    assert result.frame["publisher"].to_list()[2] is None
    assert result.frame["click"].to_list() == [0, 0, 1]
    assert result.frame["user_imps_7d"].to_list() == [0, 1, 2]  # one cookie, three hours


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"timestamp": "2013-10-22"}, "timestamp not yyyyMMddHHmmssSSS: '2013-10-22'"),
        (
            {"timestamp": "20131322135101295"},
            "timestamp not yyyyMMddHHmmssSSS: '20131322135101295'",
        ),
        ({"logtype": "2"}, "logtype not 1 (impression): '2'"),
        ({"timestamp": "null"}, "missing event_time"),
        ({"bidid": "null"}, "missing impression_id"),
        ({"payprice": "-5"}, "negative paying_price: -5.0"),
        ({"slotwidth": "wide"}, "slot_width not an integer: 'wide'"),
        ({"IP": "300.1.1.*"}, "ip not an IP address: '300.1.1.*'"),
    ],
)
def test_raw_ipinyou_bad_rows(tmp_path, override, reason):
    rows = [RAW_ROW, {**RAW_ROW, **override}]
    result = load_logs(write_table(tmp_path / "raw.tsv", rows, "\t"), quarantine_path=tmp_path)
    assert (result.rows_used, result.rows_quarantined) == (1, 1)
    assert pl.read_csv(result.quarantine_path, infer_schema=False)["reason"].to_list() == [reason]


def test_raw_ipinyou_quarantine_never_holds_cookie_or_full_ip(tmp_path):
    bad = {**RAW_ROW, "IP": "113.76.1.77", "payprice": "-1"}
    result = load_logs(write_table(tmp_path / "raw.tsv", [bad], "\t"))
    text = result.quarantine_path.read_text()
    assert "DAILV_Dhx~z" not in text and "113.76.1.77" not in text
    assert pseudonymise("DAILV_Dhx~z", "ipinyou") in text


def test_raw_ipinyou_missing_required_column(tmp_path):
    row = {k: v for k, v in RAW_ROW.items() if k != "timestamp"}
    path = write_table(tmp_path / "raw.tsv", [row], "\t")
    with pytest.raises(
        Exception, match="missing required columns of the ipinyou format: timestamp"
    ):
        load_logs(path)


def test_ctr_sample_rows(tmp_path):
    rows = [
        {**CTR_ROW, "hour": "18"},
        {**CTR_ROW, "hour": "17", "slotprice": "other", "slotwidth": "other"},
        {**CTR_ROW, "hour": "25"},
        {**CTR_ROW, "hour": "18", "slotprice": "101+"},
        {**CTR_ROW, "hour": "17", "slotprice": "cheap"},
        {**CTR_ROW, "hour": "17", "slotprice": "0", "click": "1"},
    ]
    result = load_logs(write_table(tmp_path / "ctr.csv", rows, ","), quarantine_path=tmp_path)
    assert result.source == "ipinyou_ctr"
    reasons = pl.read_csv(result.quarantine_path, infer_schema=False)
    assert reasons["row_number"].to_list() == ["3", "5"]
    assert reasons["reason"].to_list() == [
        "hour not 0-23: '25'",
        "slotprice not a price bucket: 'cheap'",
    ]
    frame = result.frame
    assert frame["impression_id"].to_list() == [f"ipinyou-ctr-{i}" for i in (0, 1, 3, 5)]
    assert frame["floor_price"].to_list() == [1.0, None, 101.0, 0.0]
    assert frame["slot_width"].to_list() == [320, None, 320, 320]
    assert set(frame["channel"]) == {"app"} and set(frame["device_type"]) == {"mobile"}
    times = frame["event_time"]
    assert times.is_sorted() and times.n_unique() == frame.height
    # Tuesday 2013-10-22 in China. Slots go to every row with a valid weekday and hour (the
    # quarantined "cheap" row included): sorted hours 17, 17, 17, 18, 18 over rows 0, 1, 3, 4, 5.
    china = times.dt.convert_time_zone("Asia/Shanghai")
    assert china.dt.hour().to_list() == [17, 17, 17, 18]
    assert set(china.dt.date()) == {datetime(2013, 10, 22).date()}


def needs(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (set BIDOPT_SHARED_DATA)")


def test_real_ipinyou_2259_log():
    needs(LOG_2259)
    result = load_logs(LOG_2259)
    frame = result.frame
    assert (result.source, result.rows_in, result.rows_used) == ("ipinyou", 8355, 8355)
    assert result.rows_quarantined == 0 and result.quarantine_path is None
    assert frame["click"].sum() == 5
    assert frame["won"].all()
    assert (frame["paying_price"] > 0).all() and (frame["bid_price"] > 0).all()
    assert (frame["market_price"] == frame["paying_price"]).all()
    assert frame["ip"].str.ends_with(".0").all()
    china = frame["event_time"].dt.convert_time_zone("Asia/Shanghai")
    start = datetime(2013, 10, 19, tzinfo=UTC)
    assert china.min().replace(tzinfo=UTC) >= start
    assert china.max().replace(tzinfo=UTC) < start + timedelta(days=4)
    raw = pl.read_csv(LOG_2259, separator="\t", infer_schema=False)
    assert not set(raw["ipinyouid"]) & set(frame["user_id"])
    assert frame["user_imps_24h"].null_count() == 0


def test_real_ipinyou_2997_ctr_sample():
    needs(CTR_2997)
    result = load_logs(CTR_2997)
    frame = result.frame
    assert (result.source, result.rows_used, result.rows_quarantined) == ("ipinyou_ctr", 26773, 0)
    assert frame["click"].sum() == 255
    assert frame["event_time"].is_sorted() and frame["event_time"].n_unique() == 26773
    raw = pl.read_csv(CTR_2997, infer_schema=False)
    hours = frame["event_time"].dt.convert_time_zone("Asia/Shanghai").dt.hour()
    assert sorted(hours.cast(pl.String).to_list()) == sorted(raw["hour"].to_list())
    assert set(frame["floor_price"].unique()) == {1.0, 11.0, 51.0, 101.0}
    assert frame["impression_id"].n_unique() == 26773
