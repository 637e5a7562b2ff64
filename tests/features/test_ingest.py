"""Loading canonical logs: one reason per bad row, exact accounting, one-line file errors."""

from __future__ import annotations

import csv
import gzip
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.ingest import LoadResult, LogError, fingerprint, load_logs, write_csv
from features.schema import COUNTER_COLUMNS, SCHEMA, conform

GOOD: dict[str, str] = {
    "event_time": "2024-05-01T10:00:00Z",
    "request_id": "r1",
    "impression_id": "i1",
    "user_id": "u1",
    "channel": "web",
    "exchange": "x1",
    "publisher": "example.com",
    "placement_id": "p1",
    "slot_width": "300",
    "slot_height": "250",
    "device_type": "desktop",
    "os": "windows",
    "browser": "chrome",
    "ip": "1.2.3.4",
    "country": "US",
    "user_segments": "s1,s2",
    "advertiser_id": "a1",
    "campaign_id": "c1",
    "creative_id": "cr1",
    "floor_price": "0.5",
    "bid_price": "1.2",
    "won": "true",
    "paying_price": "0.8",
    "market_price": "0.8",
    "auction_type": "second",
    "click": "1",
    "click_time": "2024-05-01T10:00:30Z",
    "conversion": "1",
    "conversion_value": "12.5",
    "conversion_time": "2024-05-01T11:00:00Z",
}


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = list(dict.fromkeys(c for row in rows for c in row))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def quarantined(result: LoadResult) -> pl.DataFrame:
    assert result.quarantine_path is not None
    return pl.read_csv(result.quarantine_path, infer_schema=False)


# One case per rule; each bad row follows a good one and must be the only row set aside.
RULES = [
    ({"impression_id": ""}, "missing impression_id"),
    ({"event_time": " "}, "missing event_time"),
    ({"channel": ""}, "missing channel"),
    ({"click": ""}, "missing click"),
    ({"event_time": "abc"}, "event_time not a timestamp: 'abc'"),
    ({"slot_width": "3.5"}, "slot_width not an integer: '3.5'"),
    ({"ip": "1.2.3.999"}, "ip not an IP address: '1.2.3.999'"),
    ({"floor_price": "cheap"}, "floor_price not a number: 'cheap'"),
    ({"won": "maybe"}, "won not true/false: 'maybe'"),
    ({"click": "abc"}, "click not 0/1: 'abc'"),
    ({"channel": "radio"}, "unknown channel: 'radio'"),
    ({"auction_type": "third"}, "unknown auction_type: 'third'"),
    ({"device_type": "watch"}, "unknown device_type: 'watch'"),
    ({"floor_price": "inf"}, "floor_price not finite: inf"),
    ({"floor_price": "-1"}, "negative floor_price: -1.0"),
    ({"bid_price": "-0.5"}, "negative bid_price: -0.5"),
    ({"paying_price": "-2"}, "negative paying_price: -2.0"),
    ({"market_price": "-3"}, "negative market_price: -3.0"),
    ({"conversion_value": "-4"}, "negative conversion_value: -4.0"),
    ({"slot_height": "-5"}, "negative slot_height: -5"),
    ({"user_imps_24h": "-1"}, "negative user_imps_24h: -1"),
    ({"click": "3"}, "click not 0/1: 3"),
    ({"conversion": "2"}, "conversion not 0/1: 2"),
    ({"true_ctr": "1.5"}, "true_ctr not in [0, 1]: 1.5"),
    ({"click_time": "2024-05-01T09:59:00Z"}, "click_time before event_time"),
    ({"click": "0", "conversion": "0", "conversion_time": ""}, "click_time without click"),
    (
        {"click": "0", "click_time": "", "conversion_time": ""},
        "conversion without click",
    ),
    (
        {"click_time": "", "conversion_time": "2024-05-01T09:00:00Z"},
        "conversion_time before event_time",
    ),
    ({"conversion_time": "2024-05-01T10:00:10Z"}, "conversion_time before click_time"),
]


@pytest.mark.parametrize(("override", "reason"), RULES, ids=[r for _, r in RULES])
def test_each_rule_quarantines_with_its_reason(tmp_path, override, reason):
    bad = {**GOOD, "impression_id": "i2", **override}
    result = load_logs(write_rows(tmp_path / "logs.csv", [GOOD, bad]))
    assert (result.rows_in, result.rows_used, result.rows_quarantined) == (2, 1, 1)
    rows = quarantined(result)
    assert rows["reason"].to_list() == [reason]
    assert rows["row_number"].to_list() == ["2"]
    assert result.frame["impression_id"].to_list() == ["i1"]
    assert result.reasons == {reason.split(":")[0]: 1}


def test_first_failing_rule_is_the_one_reported(tmp_path):
    bad = {**GOOD, "impression_id": "", "floor_price": "-1", "channel": "radio"}
    result = load_logs(write_rows(tmp_path / "logs.csv", [bad]))
    assert quarantined(result)["reason"].to_list() == ["missing impression_id"]
    bad = {**GOOD, "floor_price": "-1", "channel": "radio"}
    result = load_logs(write_rows(tmp_path / "logs.csv", [bad]))
    assert quarantined(result)["reason"].to_list() == ["unknown channel: 'radio'"]


def test_rows_in_is_rows_used_plus_rows_quarantined(tmp_path):
    rows = []
    for i in range(60):
        row = {**GOOD, "impression_id": f"i{i}"}
        if i % 7 == 0:
            row["floor_price"] = "-1"
        if i % 11 == 0:
            row["channel"] = "radio"
        rows.append(row)
    result = load_logs(write_rows(tmp_path / "logs.csv", rows))
    bad = {i for i in range(60) if i % 7 == 0 or i % 11 == 0}
    assert result.rows_in == 60 == result.rows_used + result.rows_quarantined
    assert result.rows_quarantined == len(bad) == quarantined(result).height
    assert {int(n) - 1 for n in quarantined(result)["row_number"]} == bad
    assert sum(result.reasons.values()) == len(bad)


def test_all_rows_bad_gives_an_empty_canonical_frame(tmp_path):
    result = load_logs(write_rows(tmp_path / "logs.csv", [{**GOOD, "channel": "radio"}] * 3))
    assert (result.rows_in, result.rows_used, result.rows_quarantined) == (3, 0, 3)
    assert result.frame.schema == pl.Schema(SCHEMA)
    assert fingerprint(result)["event_time_min"] is None


def test_load_result_refuses_broken_accounting():
    with pytest.raises(ValueError, match="rows_in 3"):
        LoadResult(conform(pl.DataFrame()), 3, 0, 1, None, "canonical")


def test_lenient_spelling_strict_meaning(tmp_path):
    rows = [
        {**GOOD, "impression_id": "a", "event_time": "2024-05-01 18:00:00+08:00", "won": "1"},
        {**GOOD, "impression_id": "b", "event_time": "2024-05-01 10:00:00", "won": "False"},
        {**GOOD, "impression_id": "c", "channel": " Web ", "slot_width": "300.0", "won": "yes"},
    ]
    frame = load_logs(write_rows(tmp_path / "logs.csv", rows)).frame
    ten = datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert frame["event_time"].to_list() == [ten] * 3
    assert frame["won"].to_list() == [True, False, True]
    assert frame["channel"].to_list() == ["web"] * 3
    assert frame["slot_width"].to_list() == [300] * 3
    assert frame["user_segments"].to_list() == [["s1", "s2"]] * 3
    assert frame.schema == pl.Schema(SCHEMA)


def test_ips_are_anonymised_in_frame_and_quarantine(tmp_path):
    rows = [
        {**GOOD, "ip": "9.8.7.6"},
        {**GOOD, "impression_id": "i2", "ip": "2001:db8:abcd:12::1", "floor_price": "-1"},
        {**GOOD, "impression_id": "i3", "ip": "7.7.7.7", "channel": "radio"},
    ]
    result = load_logs(write_rows(tmp_path / "logs.csv", rows))
    assert result.frame["ip"].to_list() == ["9.8.7.0"]
    text = result.quarantine_path.read_text()
    assert "2001:db8:abcd::" in text and "7.7.7.0" in text
    assert "7.7.7.7" not in text and ":12::1" not in text


def test_counters_computed_when_absent(tmp_path):
    times = ["2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", "2024-05-03T10:00:00Z"]
    rows = [
        {**GOOD, "impression_id": f"i{i}", "event_time": t, "click": "0", "click_time": ""}
        | {"conversion": "0", "conversion_time": ""}
        for i, t in enumerate(times)
    ]
    frame = load_logs(write_rows(tmp_path / "logs.csv", rows)).frame
    assert frame["user_imps_24h"].to_list() == [0, 1, 0]
    assert frame["user_imps_7d"].to_list() == [0, 1, 2]
    assert frame["user_secs_since_last_imp"].to_list() == [None, 3600.0, 169200.0]


def test_counters_kept_when_present(tmp_path):
    row = {**GOOD, **dict.fromkeys(COUNTER_COLUMNS, "7")}
    frame = load_logs(write_rows(tmp_path / "logs.csv", [row])).frame
    assert frame.select(COUNTER_COLUMNS).row(0) == (7, 7, 7, 7, 7.0)


# --- whole-file errors: one line, naming the file and the problem -----------------------------


def _error(path: Path, **kwargs: object) -> str:
    with pytest.raises(LogError) as info:
        load_logs(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_required_columns(tmp_path):
    path = tmp_path / "logs.csv"
    path.write_text("event_time,impression_id\n2024-05-01T10:00:00Z,i1\n")
    assert _error(path) == f"{path}: missing required columns: channel, click"


def test_empty_file(tmp_path):
    path = tmp_path / "logs.csv"
    path.write_bytes(b"")
    assert _error(path) == f"{path}: empty file"


def test_header_only_file(tmp_path):
    path = tmp_path / "logs.csv"
    path.write_text(",".join(GOOD) + "\n")
    assert _error(path) == f"{path}: empty file (no data rows)"


def test_nonexistent_file(tmp_path):
    path = tmp_path / "nope.csv"
    assert _error(path) == f"{path}: no such file"


def test_directory_is_not_a_log(tmp_path):
    assert _error(tmp_path) == f"{tmp_path}: is a directory, not a log file"


def test_corrupt_gzip_is_unreadable(tmp_path):
    path = tmp_path / "logs.csv.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage that is not deflate")
    assert _error(path).startswith(f"{path}: cannot read as CSV: ")


def test_corrupt_parquet_is_unreadable(tmp_path):
    path = tmp_path / "logs.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    assert _error(path).startswith(f"{path}: cannot read as Parquet: ")


def test_line_with_too_many_fields_is_named(tmp_path):
    path = tmp_path / "logs.csv"
    path.write_text("event_time,impression_id,channel,click\nt,i,web,0\nt,i,web,0,extra\n")
    assert _error(path) == (
        f"{path}: line 3 has 5 fields, the header has 4 (a value with an unquoted separator?)"
    )


def test_unknown_source(tmp_path):
    path = write_rows(tmp_path / "logs.csv", [GOOD])
    assert "unknown source 'criteo'" in _error(path, source="criteo")


def test_wrong_parquet_column_type_is_a_file_error(tmp_path):
    frame = pl.DataFrame({**{k: [v] for k, v in GOOD.items()}, "floor_price": [[1.0]]})
    frame.write_parquet(tmp_path / "logs.parquet")
    message = _error(tmp_path / "logs.parquet")
    assert "column floor_price has type List(Float64), expected Float64" in message


# --- quarantine file placement ------------------------------------------------------------------


def test_quarantine_default_is_beside_the_input(tmp_path):
    path = write_rows(tmp_path / "day1.csv", [GOOD, {**GOOD, "channel": "radio"}])
    result = load_logs(path)
    assert result.quarantine_path == tmp_path / "day1.quarantine.csv"


def test_quarantine_in_given_directory_or_parquet_file(tmp_path):
    path = write_rows(tmp_path / "day1.csv", [GOOD, {**GOOD, "channel": "radio"}])
    out = tmp_path / "q"
    out.mkdir()
    assert load_logs(path, quarantine_path=out).quarantine_path == out / "day1.quarantine.csv"
    target = tmp_path / "bad.parquet"
    result = load_logs(path, quarantine_path=target)
    assert result.quarantine_path == target
    assert pl.read_parquet(target)["reason"].to_list() == ["unknown channel: 'radio'"]


def test_quarantine_of_read_only_input_goes_to_temp(tmp_path):
    data = tmp_path / "shared"
    data.mkdir()
    path = write_rows(data / "day1.csv", [GOOD, {**GOOD, "channel": "radio"}])
    data.chmod(0o555)
    try:
        result = load_logs(path)
    finally:
        data.chmod(0o755)
    assert result.quarantine_path is not None
    try:
        assert result.quarantine_path.parent == Path(tempfile.gettempdir()) / "bidopt-quarantine"
        assert result.quarantine_path.name.startswith("day1-")
        assert not list(data.glob("*quarantine*"))
    finally:
        result.quarantine_path.unlink()


def test_no_bad_rows_no_quarantine_file_and_stale_one_removed(tmp_path):
    stale = tmp_path / "logs.quarantine.csv"
    stale.write_text("row_number,reason\n1,old\n")
    result = load_logs(write_rows(tmp_path / "logs.csv", [GOOD]))
    assert result.quarantine_path is None
    assert result.rows_quarantined == 0
    assert not stale.exists()


# --- round trips and fingerprint ------------------------------------------------------------------


def canonical_frame() -> pl.DataFrame:
    t0 = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    rows = pl.DataFrame(
        {
            "event_time": [t0, t0.replace(hour=11), t0.replace(hour=12)],
            "request_id": ["r1", "r2", "r3"],
            "impression_id": ["i1", "i2", "i3"],
            "user_id": ["u1", None, "u1"],
            "channel": ["web", "app", "ctv"],
            "slot_width": [300, None, 1920],
            "ip": ["1.2.3.0", None, "2001:db8:abcd::"],
            "user_segments": [["s1", "s2"], [], None],
            "floor_price": [0.1, None, 1 / 3],
            "won": [True, False, None],
            "paying_price": [0.123456789012345, None, None],
            "auction_type": ["first", "second", None],
            "click": [1, 0, 0],
            "click_time": [t0.replace(second=5), None, None],
            "conversion": [0, 0, 0],
            "true_ctr": [0.01, 0.02, 0.5],
            "true_cvr": [0.1, 0.0, 1.0],
        }
    )
    return conform(rows.with_columns(pl.lit(1, dtype=pl.Int32).alias(c) for c in COUNTER_COLUMNS))


def test_csv_round_trip_of_a_canonical_frame(tmp_path):
    frame = canonical_frame()
    write_csv(frame, tmp_path / "logs.csv")
    result = load_logs(tmp_path / "logs.csv")
    assert result.rows_quarantined == 0
    assert_frame_equal(result.frame, frame)


def test_gzip_csv_and_parquet_round_trips(tmp_path):
    frame = canonical_frame()
    write_csv(frame, tmp_path / "logs.csv")
    with gzip.open(tmp_path / "logs.csv.gz", "wb") as fh:
        fh.write((tmp_path / "logs.csv").read_bytes())
    frame.write_parquet(tmp_path / "logs.parquet")
    for name in ("logs.csv.gz", "logs.parquet"):
        assert_frame_equal(load_logs(tmp_path / name).frame, frame)


def test_typed_parquet_values_are_validated_per_row(tmp_path):
    frame = canonical_frame().with_columns(pl.Series("click", [1, 3, 0], dtype=pl.Int64))
    frame.write_parquet(tmp_path / "logs.parquet")
    result = load_logs(tmp_path / "logs.parquet")
    assert quarantined(result)["reason"].to_list() == ["click not 0/1: 3"]


def test_fingerprint(tmp_path):
    frame = canonical_frame()
    write_csv(frame, tmp_path / "a.csv")
    frame.write_parquet(tmp_path / "a.parquet")
    a, b = (
        fingerprint(load_logs(tmp_path / "a.csv")),
        fingerprint(load_logs(tmp_path / "a.parquet")),
    )
    assert a == b
    assert a["source"] == "canonical" and a["rows_used"] == 3
    assert a["event_time_min"] == "2024-05-01T10:00:00.123456+00:00"
    assert a["event_time_max"] == "2024-05-01T12:00:00.123456+00:00"
    assert len(str(a["content_sha256"])) == 64
    write_csv(frame.with_columns(pl.col("floor_price") * 2), tmp_path / "c.csv")
    assert fingerprint(load_logs(tmp_path / "c.csv"))["content_sha256"] != a["content_sha256"]
