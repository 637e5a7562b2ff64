"""The synthetic log: canonical, seeded, realistic where training depends on it, and hard enough.

One 200k-row log (a couple of seconds) backs the statistical checks; the thresholds sit several
standard errors away from the measured values so the tests fail on a broken generator, not on
sampling noise.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from features.cli import register
from features.ipanon import IPV4_PREFIX, IPV6_PREFIX
from features.profiles import add_user_counters
from features.schema import CHANNELS, COUNTER_COLUMNS, DEVICE_TYPES, SCHEMA, TIME, TRUTH_SCHEMA
from features.synth import DEFAULT_START, generate
from features.synth_truth import conversion_delay_seconds, recent_impressions

ROOT = Path(__file__).resolve().parents[2]
ROWS = 200_000
DAYS = 14

# Columns a model could use one at a time (raw or bucketed), for the "no dominant column" test.
SINGLE_COLUMNS = (
    "channel", "exchange", "publisher", "placement_id", "slot_size", "slot_visibility",
    "slot_format", "device_type", "os", "browser", "country", "region", "city", "advertiser_id",
    "campaign_id", "creative_id", "auction_type", "hour", "weekday", "n_segments", "imps_24h",
    "clicks_7d", "floor_bucket",
)  # fmt: skip


@pytest.fixture(scope="module")
def log() -> pl.DataFrame:
    return generate(ROWS, seed=0, days=DAYS)


@pytest.fixture(scope="module")
def won(log: pl.DataFrame) -> pl.DataFrame:
    return log.filter("won")


def test_columns_are_canonical_then_truth(log: pl.DataFrame) -> None:
    assert log.schema == pl.Schema({**SCHEMA, **TRUTH_SCHEMA})
    assert log.height == ROWS


def test_same_seed_same_log_other_seed_other_log() -> None:
    a, b = generate(3000, seed=5), generate(3000, seed=5)
    assert a.equals(b)
    assert not a.equals(generate(3000, seed=6))


def test_more_rows_sample_the_same_market() -> None:
    small, big = generate(2000, seed=3), generate(20_000, seed=3)
    shared = set(small["publisher"]) & set(big["publisher"])
    assert len(shared) > 0.5 * small["publisher"].n_unique()
    for keys in (
        ["creative_id", "campaign_id", "advertiser_id"],
        ["placement_id", "publisher", "channel", "slot_width", "slot_height", "slot_format"],
    ):
        a, b = (d.select(keys).unique() for d in (small, big))
        both = a.join(b, on=keys[0], suffix="_big")
        assert both.height > 0.5 * a.height
        for k in keys[1:]:
            assert (both[k] == both[f"{k}_big"]).all(), k


def test_time_span_start_and_order() -> None:
    start = datetime(2023, 11, 1, 6, 30)  # naive: taken as UTC
    df = generate(5000, seed=1, start=start, days=3)
    begin = start.replace(tzinfo=UTC)
    assert df["event_time"].min() >= begin
    assert df["event_time"].max() < begin + timedelta(days=3)
    assert df["event_time"].is_sorted()


def test_request_and_impression_ids_are_unique(log: pl.DataFrame) -> None:
    assert log["impression_id"].n_unique() == ROWS
    assert log["request_id"].n_unique() == ROWS
    assert log["user_id"].drop_nulls().str.contains(r"^[0-9a-f]{16}$").all()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rows": 0}, "rows"),
        ({"rows": -5}, "rows"),
        ({"rows": True}, "rows"),
        ({"rows": 10.0}, "rows"),
        ({"rows": "10"}, "rows"),
        ({"rows": 10, "days": 0}, "days"),
        ({"rows": 10, "seed": -1}, "seed"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        generate(**kwargs)


def test_rates_in_realistic_ranges(log: pl.DataFrame, won: pl.DataFrame) -> None:
    win_rate = log["won"].mean()
    ctr = won["click"].mean()
    first = (log["auction_type"] == "first").mean()
    assert 0.78 <= win_rate <= 0.92, win_rate
    assert 0.005 <= ctr <= 0.02, ctr
    assert 0.45 <= first <= 0.75, first
    clicks = won.filter(pl.col("click") == 1)
    assert 0.01 <= clicks["conversion"].mean() <= 0.15
    assert set(log["channel"].unique()) == set(CHANNELS)


def test_auction_mechanics(log: pl.DataFrame) -> None:
    floor, bid, market = (log[c].to_numpy() for c in ("floor_price", "bid_price", "market_price"))
    assert log.select(pl.col("floor_price", "bid_price", "market_price").min()).row(0) >= (0, 0, 0)
    assert (market > 0).all()
    assert (log["won"].to_numpy() == (bid >= np.maximum(floor, market))).all()
    won = log.filter("won")
    second = won.filter(pl.col("auction_type") == "second")
    first = won.filter(pl.col("auction_type") == "first")
    expected = np.maximum(second["market_price"].to_numpy(), second["floor_price"].to_numpy())
    assert (second["paying_price"].to_numpy() == expected).all()
    assert (first["paying_price"] == first["bid_price"]).all()
    assert (won["paying_price"] <= won["bid_price"]).all()
    assert log.filter(~pl.col("won"))["paying_price"].null_count() == log.height - won.height


def test_outcomes_only_on_won_rows(log: pl.DataFrame) -> None:
    lost = log.filter(~pl.col("won"))
    assert lost["click"].sum() == 0 and lost["conversion"].sum() == 0
    assert lost["true_ctr"].null_count() == 0  # the truth exists for every row
    assert (log.filter(pl.col("conversion") == 1)["click"] == 1).all()


def test_click_and_conversion_times(log: pl.DataFrame) -> None:
    clicks = log.filter(pl.col("click") == 1)
    delay = (clicks["click_time"] - clicks["event_time"]).dt.total_seconds(fractional=True)
    assert delay.min() >= 1.0 and delay.max() <= 1800.0
    assert log.filter(pl.col("click") == 0)["click_time"].null_count() == log.height - clicks.height
    conv = log.filter(pl.col("conversion") == 1)
    assert (conv["conversion_time"] > conv["click_time"]).all()
    assert (conv["conversion_value"] > 0).all()
    cutoff = DEFAULT_START + timedelta(days=DAYS)
    assert conv["conversion_time"].max() < cutoff
    no_conv = log.filter(pl.col("conversion") == 0)
    assert no_conv["conversion_time"].null_count() == no_conv.height
    assert no_conv["conversion_value"].null_count() == no_conv.height


def test_conversion_delays_follow_chapelle() -> None:
    d = conversion_delay_seconds(np.random.default_rng(0), 200_000)
    assert (d < 3600).mean() == pytest.approx(1 / 3, abs=0.03)
    assert (d < 86400).mean() == pytest.approx(0.5, abs=0.03)
    assert (d > 7 * 86400).mean() > 0.1
    assert d.max() <= 30 * 86400


def test_advertiser_speed_moves_delays_inside_the_window_only() -> None:
    """A fast advertiser converts sooner within the day, a slow one later; the shares within the
    hour and within the 7-day window (which the pCVR label's oracle uses) do not move."""
    base = conversion_delay_seconds(np.random.default_rng(4), 100_000)
    fast = conversion_delay_seconds(np.random.default_rng(4), 100_000, speed=2.0)
    slow = conversion_delay_seconds(np.random.default_rng(4), 100_000, speed=0.5)
    for d in (fast, slow):
        assert np.mean(d < 3600) == np.mean(base < 3600)
        assert np.mean(d <= 7 * 86400) == np.mean(base <= 7 * 86400)
    day = [np.mean(d < 86400) for d in (slow, base, fast)]
    assert day[0] + 0.05 < day[1] < day[2] - 0.05


def test_advertisers_differ_in_conversion_speed(log: pl.DataFrame) -> None:
    from features.synth_world import build_world

    speed = build_world(0).adv_delay_speed
    assert speed.min() < 0.8 and speed.max() > 1.25
    assert np.log(speed).mean() == pytest.approx(0.0, abs=1e-12)


def test_conversions_after_the_cutoff_are_missing() -> None:
    """On a one-day log most conversions land after the cut-off and must not be recorded."""
    df = generate(150_000, seed=2, days=1)
    clicks = df.filter(pl.col("click") == 1)
    expected = clicks["true_cvr"].sum()  # conversions there would be with no cut-off
    assert clicks["conversion"].sum() < 0.75 * expected


def test_counters_are_the_as_of_counters_of_the_log(log: pl.DataFrame) -> None:
    recomputed = add_user_counters(
        log.select("user_id", "event_time", "click", "click_time", "won")
    )
    for col in COUNTER_COLUMNS:
        assert log[col].equals(recomputed[col]), col
    assert log.filter(pl.col("user_id").is_null())["user_imps_24h"].null_count() > 0
    assert log["user_clicks_7d"].max() > 0


def _as_of_inputs(df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    codes = df["user_id"].cast(pl.Categorical).to_physical().fill_null(-1).cast(pl.Int64)
    return codes.to_numpy(), df["event_time"].dt.epoch("us").to_numpy()


def test_logged_counters_count_won_impressions_only(log: pl.DataFrame) -> None:
    """Fatigue in the truth comes from every ad the user saw (any bidder's); the logged counters,
    like the profile store's win notices, count only our won impressions. On won-only history
    the fast as-of counts equal the logged columns exactly."""
    user, t = _as_of_inputs(log)
    won = log["won"].to_numpy()
    won_only = np.where(won, user, -1)
    rows = won & (user >= 0)
    for label, hours in (("24h", 24), ("7d", 24 * 7)):
        recent = recent_impressions(won_only, t, hours * 3_600_000_000)
        logged = log[f"user_imps_{label}"].fill_null(0).to_numpy()
        assert (recent["imps"][rows] == logged[rows]).all()
        everything = recent_impressions(user, t, hours * 3_600_000_000)["imps"]
        assert (everything[rows] >= logged[rows]).all()
        assert (everything[rows] > logged[rows]).any()  # lost auctions are not impressions
    logged_gap = log["user_secs_since_last_imp"].fill_null(np.inf).to_numpy()
    np.testing.assert_array_equal(recent["secs"][rows], logged_gap[rows])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([None, "a", "b", "c"]), st.integers(0, 24 * 9)),
        min_size=1,
        max_size=40,
    )
)
def test_fast_as_of_counts_match_profiles_on_ties_and_window_edges(rows: list) -> None:
    """Whole hours make exact 24 h / 7 d boundaries and same-timestamp ties common."""
    df = pl.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "event_time": [DEFAULT_START + timedelta(hours=h) for _, h in rows],
            "click": [0] * len(rows),
            "click_time": [None] * len(rows),
        },
        schema={"user_id": pl.String, "event_time": TIME, "click": pl.Int8, "click_time": TIME},
    )
    expected = add_user_counters(df)
    user, t = _as_of_inputs(df)
    for label, hours in (("24h", 24), ("7d", 24 * 7)):
        got = recent_impressions(user, t, hours * 3_600_000_000)["imps"]
        assert got.tolist() == expected[f"user_imps_{label}"].fill_null(0).to_list()
    gap = expected["user_secs_since_last_imp"].fill_null(np.inf).to_numpy()
    np.testing.assert_allclose(recent_impressions(user, t, 1)["secs"], gap, rtol=1e-12, atol=0)


def test_fatigue_lowers_the_truth(log: pl.DataFrame) -> None:
    """Fatigue follows every ad the user saw in 24 h (all auctions, whoever won them)."""
    user, t = _as_of_inputs(log)
    seen = recent_impressions(user, t, 24 * 3_600_000_000)["imps"]
    ctr = log["true_ctr"].to_numpy()
    fresh, tired = ctr[(seen == 0) & (user >= 0)].mean(), ctr[seen >= 5].mean()
    assert tired < 0.85 * fresh


def test_users_heavy_tailed_with_stable_segments(log: pl.DataFrame) -> None:
    known = log.filter(pl.col("user_id").is_not_null())
    per_user = known.group_by("user_id").agg(
        n=pl.len(), segs=pl.col("user_segments").n_unique(), ips=pl.col("ip").n_unique()
    )
    assert per_user["n"].max() > 20 * per_user["n"].median()
    assert (per_user["segs"] == 1).all() and (per_user["ips"] == 1).all()
    lengths = log["user_segments"].list.len()
    assert lengths.min() == 0 and lengths.max() == 6
    assert log["user_segments"].explode().drop_nulls().n_unique() == 50
    anonymous = log.filter(pl.col("user_id").is_null())
    assert anonymous.height > 0 and (anonymous["user_segments"].list.len() == 0).all()


def test_publishers_follow_zipf(log: pl.DataFrame) -> None:
    counts = log["publisher"].value_counts(sort=True)["count"].to_numpy()
    assert counts.size > 1000
    top10 = counts[:10].sum() / counts.sum()
    assert 0.15 < top10 < 0.7  # a heavy head and a long tail
    assert log["placement_id"].n_unique() > counts.size
    assert 150 <= log["creative_id"].n_unique() <= 300
    assert log["campaign_id"].n_unique() == 20


def test_traffic_is_diurnal_and_weekly(log: pl.DataFrame) -> None:
    hours = log.group_by(pl.col("event_time").dt.hour()).len()["len"]
    assert hours.max() > 1.4 * hours.min()
    weekday = log.group_by(pl.col("event_time").dt.weekday()).len().sort("event_time")["len"]
    assert weekday[5:].mean() < 0.95 * weekday[:5].mean()  # weekends are quieter


def test_devices_formats_and_ips_are_consistent(log: pl.DataFrame) -> None:
    assert set(log["device_type"].unique()) <= set(DEVICE_TYPES)
    ctv = log["channel"] == "ctv"
    assert ((log["device_type"] == "ctv") == ctv).all()
    in_app = log.filter(pl.col("channel").is_in(["app", "ctv"]))
    assert in_app["browser"].null_count() == in_app.height
    assert log.filter(pl.col("channel") == "web")["browser"].null_count() == 0
    ios = log.filter(pl.col("os") == "ios")
    assert set(ios["device_type"].unique()) == {"mobile"}
    video_only = log.filter(pl.col("channel").is_in(["video", "ctv"]))
    assert set(video_only["slot_format"].unique()) == {"video"}
    assert set(log.filter(pl.col("channel") == "email")["slot_format"].unique()) == {"banner"}
    ips = log["ip"]
    assert ips.null_count() == 0  # anonymous requests still come from somewhere
    for ip in ips.unique().to_list():  # already anonymised: the prefix's network, canonical
        prefix = IPV4_PREFIX if "." in ip else IPV6_PREFIX
        net = ipaddress.ip_network(f"{ip}/{prefix}", strict=True)
        assert str(net.network_address) == ip
        assert net.version == 6 or not net.is_private
    assert 0.05 < ips.str.contains(":").mean() < 0.25


def test_oracle_auc_is_in_the_real_data_range(won: pl.DataFrame) -> None:
    auc = roc_auc_score(won["click"].to_numpy(), won["true_ctr"].to_numpy())
    assert 0.70 <= auc <= 0.85, auc


def _single_columns(won: pl.DataFrame) -> pl.DataFrame:
    return won.with_columns(
        slot_size=pl.format("{}x{}", "slot_width", "slot_height"),
        hour=pl.col("event_time").dt.hour().cast(pl.String),
        weekday=pl.col("event_time").dt.weekday().cast(pl.String),
        n_segments=pl.col("user_segments").list.len().cast(pl.String),
        imps_24h=pl.col("user_imps_24h").clip(0, 20).cast(pl.String),
        clicks_7d=pl.col("user_clicks_7d").clip(0, 3).cast(pl.String),
        floor_bucket=(pl.col("floor_price").log1p() * 4).floor().cast(pl.String),
    )


def test_no_single_column_carries_the_signal(won: pl.DataFrame) -> None:
    """Target-encode each column on the first half (by time), score the second half: the best
    single column must stay well below the oracle on the same rows."""
    df = _single_columns(won)
    train, test = df[: df.height // 2], df[df.height // 2 :]
    prior = train["click"].mean()
    y = test["click"].to_numpy()
    oracle = roc_auc_score(y, test["true_ctr"].to_numpy())
    aucs = {}
    for col in SINGLE_COLUMNS:
        enc = train.group_by(col).agg(
            m=(pl.col("click").sum() + 20 * prior) / (pl.len() + 20)  # smoothed mean
        )
        scored = test.join(enc, on=col, how="left", nulls_equal=True)["m"].fill_null(prior)
        aucs[col] = roc_auc_score(y, scored.to_numpy())
    best = max(aucs, key=aucs.__getitem__)
    assert aucs[best] < oracle - 0.08, (best, aucs[best], oracle)
    # ...and it recovers well under two thirds of the oracle's lift over chance (about 0.4 here)
    assert aucs[best] - 0.5 < 0.6 * (oracle - 0.5), (best, aucs[best], oracle)


def test_no_single_column_explains_most_of_the_truth(won: pl.DataFrame) -> None:
    """Even with unlimited data, a column's mean log-odds explains under half of the variance."""
    df = _single_columns(won).with_columns(z=(pl.col("true_ctr") / (1 - pl.col("true_ctr"))).log())
    total = df["z"].var()
    shares = {
        c: df.select(pl.col("z").mean().over(c)).to_series().var() / total for c in SINGLE_COLUMNS
    }
    best = max(shares, key=shares.__getitem__)
    assert shares[best] < 0.45, (best, shares[best])
    assert sum(shares[c] for c in ("publisher", "placement_id", "creative_id")) > 0.3


# --- the `synth` command -------------------------------------------------------------------


def _text(output: str) -> str:
    """The CLI output without rich's box drawing and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    register(app)

    @app.callback()
    def main() -> None:
        """Keeps `synth` a sub-command, as in `bidopt`."""

    return app


def test_cli_writes_parquet_and_prints_one_summary_line(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir" / "log.parquet"
    result = CliRunner().invoke(
        _app(), ["synth", "--rows", "3000", "--seed", "4", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    df = pl.read_parquet(out)
    assert df.equals(generate(3000, seed=4))
    line = result.stdout.strip()
    assert "\n" not in line and "3,000 rows" in line and str(out) in line
    assert re.search(r"click rate \d+\.\d+%", line) and "conversion rate" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "0"], "--rows"),
        (["--rows", "ten"], "--rows"),
        (["--rows", "10", "--days", "0"], "--days"),
    ],
)
def test_cli_rejects_bad_numbers(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(_app(), ["synth", *args, "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2
    assert message in _text(result.output) and "Traceback" not in result.output
    assert not (tmp_path / "x.parquet").exists()


def test_cli_rejects_unwritable_paths(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    full = tmp_path / "full"
    full.mkdir()
    (full / "old.parquet").write_text("another log")
    cases = [(blocker / "x.parquet", "is a file"), (blocker, "is a file"), (full, "not empty")]
    for out, message in cases:
        result = CliRunner().invoke(_app(), ["synth", "--rows", "10", "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert message in _text(result.output) and "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_writes_a_dataset_by_date_in_parts_of_the_same_market(tmp_path: Path) -> None:
    """A folder output is generated part by part; part 0 is the in-memory log itself, and
    every part is another group of users of the same world (same publishers, same truth)."""
    out = tmp_path / "logs"
    args = ["synth", "--rows", "5000", "--seed", "4", "--part-rows", "2000", "--out", str(out)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "5,000 rows in" in result.stdout and str(out) in result.stdout
    files = sorted(out.glob("date=*/part-*.parquet"))
    assert {f.name for f in files} == {
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    }
    for f in files:  # one day per file, named by its folder
        days = pl.read_parquet(f).get_column("event_time").dt.date().unique()
        assert days.to_list() == [date.fromisoformat(f.parent.name.removeprefix("date="))]
    logs = pl.read_parquet(files, hive_partitioning=False)
    assert logs.height == 5000
    part0 = pl.concat(pl.read_parquet(f) for f in files if f.name == "part-00000.parquet")
    assert part0.equals(generate(1667, seed=4))
    part1 = pl.concat(pl.read_parquet(f) for f in files if f.name == "part-00001.parquet")
    assert part1.sort("event_time", maintain_order=True).equals(generate(1667, seed=4, part=1))
    users0 = part0.get_column("user_id").drop_nulls().implode()
    assert part1.get_column("user_id").drop_nulls().is_in(users0).sum() == 0  # other users
    assert set(part1["publisher"]) & set(part0["publisher"])  # the same market's publishers


@pytest.mark.integration
def test_bidopt_synth_through_the_installed_command(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "bidopt"
    if not exe.exists():
        pytest.skip(f"{exe} is not installed yet (pip install -e .)")
    out = tmp_path / "synth.parquet"
    ok = subprocess.run(
        [str(exe), "synth", "--rows", "2000", "--seed", "9", "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert pl.read_parquet(out).height == 2000
    assert "2,000 rows" in ok.stdout
    bad = subprocess.run(
        [str(exe), "synth", "--rows", "-3", "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "--rows" in _text(bad.stderr) and "Traceback" not in bad.stderr
