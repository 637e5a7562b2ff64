"""The ledger as a log source: decisions joined with their outcomes, counts that balance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import bidopt_cli
from features.ingest import load_logs
from features.ledger import frame
from features.ledger_logs import build_logs

T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)


def us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def decision(imp: str, bid: bool, t: datetime, **req: Any) -> dict[str, Any]:
    return {
        "k": "d",
        "t": us(t),
        "src": "v1",
        "req": {
            "event_time": t.isoformat(),
            "impression_id": imp,
            "channel": "web",
            "user_id": "u1",
            "floor_price": 0.1,
            "auction_type": "second",
            **req,
        },
        "out": {
            "impression_id": imp,
            "bid": bid,
            "price": 2.0 if bid else None,
            "campaign_id": "c1" if bid else None,
            "creative_id": "cr1" if bid else None,
            "reason": None if bid else "below_floor",
        },
        "models": {"ctr": {"name": "bidopt-ctr", "version": "1"}},
        "w": 1.0 if bid else 0.01,
    }


def event(kind: str, imp: str, t: datetime, **kw: Any) -> dict[str, Any]:
    return {"k": "e", "t": us(t), "id": f"{kind}-{imp}", "type": kind, "imp": imp, "cid": "c1",
            "uid": "u1", **kw}  # fmt: skip


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    records = [
        decision("a", True, T0),
        decision("b", True, T0 + timedelta(minutes=1)),
        decision("c", True, T0 + timedelta(minutes=2)),  # lost: no win
        decision("n", False, T0 + timedelta(minutes=3)),  # a sampled no-bid
        event("win", "a", T0, price=1.5, amount=0.0015, day="2026-11-30"),
        event("click", "a", T0 + timedelta(seconds=30)),
        event("conversion", "a", T0 + timedelta(hours=5), value=40.0),
        event("win", "b", T0 + timedelta(minutes=1), price=1.0, amount=0.001, day="2026-11-30"),
        event("conversion", "b", T0 + timedelta(hours=1), value=10.0),  # no click: aside
        event("win", "ghost", T0, price=1.0, amount=0.001, day="2026-11-30"),  # no decision
    ]
    directory = tmp_path / "ledger"
    directory.mkdir()
    (directory / "00000000000000000001-1.seg").write_bytes(b"".join(frame(r) for r in records))
    return directory


def test_decisions_join_their_outcomes_and_counts_balance(ledger: Path) -> None:
    result = build_logs(ledger)
    assert result.decisions_in == 3 == result.rows_out + result.rows_quarantined
    assert result.nobid_decisions == 1
    rows = {r["impression_id"]: r for r in result.frame.iter_rows(named=True)}
    a, b, c = rows["a"], rows["b"], rows["c"]
    assert (a["won"], a["paying_price"], a["bid_price"], a["click"], a["conversion"]) == (
        True, 1.5, 2.0, 1, 1,
    )  # fmt: skip
    assert a["conversion_value"] == 40.0 and a["click_time"] == T0 + timedelta(seconds=30)
    assert (b["won"], b["click"], b["conversion"]) == (True, 0, 0)
    assert (c["won"], c["paying_price"], c["bid_price"]) == (False, None, 2.0)  # censored row
    # counters as of each impression, from earlier wins only (a's win precedes b)
    assert (a["user_imps_24h"], b["user_imps_24h"], c["user_imps_24h"]) == (0, 1, 2)
    assert sorted(e["imp"] for e in result.unmatched) == ["b", "ghost"]
    assert result.events_matched + len(result.unmatched) == 6


def test_the_attribution_window_and_time_range(ledger: Path) -> None:
    short = build_logs(ledger, attribution_days=0.1)  # 2.4 h: a's conversion at 5 h is late
    assert short.frame.filter(impression_id="a")["conversion"].item() == 0
    assert short.conversions_outside_window == 1
    later = build_logs(ledger, since=T0 + timedelta(seconds=30))
    assert later.decisions_in == 2 and later.nobid_decisions == 1


def test_the_built_log_loads_as_a_log_source(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "logs.parquet"
    args = ["logs", "build", "--ledger", str(ledger), "--out", str(out)]
    r = CliRunner().invoke(bidopt_cli.app, args)
    assert r.exit_code == 0, r.output
    assert "3 bid decisions in = 3 rows out + 0 quarantined" in r.output
    assert "unmatched 2" in r.output and out.with_suffix(".unmatched.jsonl").is_file()
    loaded = load_logs(out)
    assert loaded.rows_in == 3 == loaded.rows_used and loaded.rows_quarantined == 0
    assert loaded.frame["won"].to_list() == [True, True, False]


def flat(text: str) -> str:
    """Typer's error box, unwrapped: its borders and line breaks removed."""
    lines = [ln.strip().strip("│╭╮╰╯─").strip() for ln in text.splitlines()]
    return " ".join(" ".join(lines).split())


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        bidopt_cli.app, ["logs", "build", "--ledger", str(tmp_path / "none"), "--out", "x.pq"]
    )
    assert r.exit_code == 2 and "is not a directory" in flat(r.output)
    r = CliRunner().invoke(
        bidopt_cli.app,
        ["logs", "build", "--ledger", str(tmp_path), "--out", str(tmp_path / "x.parquet"),
         "--since", "yesterday"],
    )  # fmt: skip
    assert r.exit_code == 2 and "not an ISO-8601 time" in flat(r.output)
