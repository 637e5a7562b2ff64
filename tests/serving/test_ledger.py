"""The ledger under real faults: a torn record, a SIGKILL mid-load, a full disk, a removed
directory. What was acknowledged is counted against what was kept; the two must agree."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from features.ledger import ReadStats, frame, read_segment
from features.ledger_store import read_ledger
from tests.helpers.serving import Server, run_server
from tests.serving.campaign_files import CAMPAIGNS

BID_IMP = {
    "event_time": "2025-06-01T14:05:00Z",
    "channel": "web",
    "impression_id": "i",
    "floor_price": 0.0,
    "auction_type": "second",
}


def test_a_torn_or_corrupt_tail_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = [{"k": "e", "id": f"e{i}", "amount": i / 1000} for i in range(50)]
    whole = b"".join(frame(r) for r in records)
    last = len(frame(records[-1]))
    path = tmp_path / "x.seg"
    for cut in (1, 4, 8, 9, last // 2, last - 1):  # inside the header and inside the payload
        path.write_bytes(whole[: len(whole) - cut])
        stats = ReadStats()
        assert list(read_segment(path, stats)) == records[:-1]
        assert stats.torn_bytes == last - cut
    corrupt = bytearray(whole)
    corrupt[len(whole) // 2] ^= 0xFF  # a flipped byte in the middle: the checksum catches it
    path.write_bytes(bytes(corrupt))
    with caplog.at_level("WARNING", logger="bidopt.ledger"):
        got = list(read_segment(path))
    assert 0 < len(got) < 50 and got == records[: len(got)]
    assert "torn or corrupt record" in caplog.text


def win(event_id: str, price: float) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "win",
        "impression_id": f"imp-{event_id}",
        "campaign_id": "web-cpm",
        "price": price,
    }


def spend_today(server: Server) -> float:
    status = server.client.get("/v1/campaigns").json()
    return next(c["spend_today"] for c in status["campaigns"] if c["id"] == "web-cpm")


def start(uri: str, workdir: Path, **env: str) -> contextlib.AbstractContextManager[Server]:
    campaigns = workdir / "campaigns.toml"
    campaigns.write_text(CAMPAIGNS)
    return run_server(
        uri,
        workdir,
        args=("--campaigns", str(campaigns)),
        env={"BIDOPT_LEDGER_FLUSH_MS": "50", "BIDOPT_NOBID_SAMPLE_RATE": "1", **env},
    )


@pytest.mark.integration
def test_sigkill_mid_load_loses_no_acknowledged_event(
    serving_store: tuple[str, Path], tmp_path: Path
) -> None:
    """Wins are posted one by one while the server is killed with SIGKILL. After a restart on
    the same ledger, the sender retries what it had not seen acknowledged (as any sender of
    money-moving events must); spend then equals the acknowledged prices exactly, no event is
    counted twice, and every decision answered before the last flush interval is in the ledger."""
    uri, _ = serving_store
    acked: list[tuple[str, float]] = []
    in_flight: list[tuple[str, float]] = []
    with start(uri, tmp_path) as server:
        for k in range(20):  # decisions, then enough time for a flush
            imp = {**BID_IMP, "impression_id": f"b{k}"}
            body = {"impressions": [imp], "campaign_ids": ["web-cpm"]}
            r = server.client.post("/v1/bid", json=body)
            assert r.status_code == 200
        time.sleep(0.5)
        killer = subprocess.Popen(["sh", "-c", f"sleep 1.5; kill -9 {server.proc.pid}"])
        k = 0
        while True:
            event = (f"w{k}", round(1.0 + (k % 7) * 0.5, 2))
            try:
                r = server.client.post("/v1/events", json={"events": [win(*event)]}, timeout=5)
            except httpx.TransportError:
                in_flight.append(event)
                break
            assert r.status_code == 200, r.text
            acked.append(event)
            k += 1
        killer.wait()
        assert server.proc.wait(timeout=10) == -signal.SIGKILL
    assert len(acked) > 10, "the kill came before the load"
    with start(uri, tmp_path) as again:
        for event in in_flight:  # the sender's retry of what it never saw acknowledged
            r = again.client.post("/v1/events", json={"events": [win(*event)]})
            assert r.status_code == 200
        acked += in_flight
        assert spend_today(again) == pytest.approx(sum(p for _, p in acked) / 1000, abs=1e-9)
        r = again.client.post("/v1/events", json={"events": [win(*acked[0])]})
        assert r.json() == {"accepted": 0, "duplicates": 1}  # an id from before the kill
        assert spend_today(again) == pytest.approx(sum(p for _, p in acked) / 1000, abs=1e-9)
    records = list(read_ledger(tmp_path / "ledger"))
    events = [r for r in records if r["k"] == "e"]
    assert sorted(e["id"] for e in events) == sorted(i for i, _ in acked)
    decided = {r["out"]["impression_id"] for r in records if r["k"] == "d"}
    assert {f"b{k}" for k in range(20)} <= decided
    # the killed and the stopped server's segments are closed: compacted, then a start from
    # the snapshot gives the same spend and still knows every id
    done = subprocess.run(
        [sys.executable, "-m", "serving.cli", "ledger", "compact", "--ledger", "ledger"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "compacted 2 segments" in done.stdout, done.stderr
    assert not list((tmp_path / "ledger").glob("*.seg"))
    with start(uri, tmp_path) as third:
        assert spend_today(third) == pytest.approx(sum(p for _, p in acked) / 1000, abs=1e-9)
        r = third.client.post("/v1/events", json={"events": [win(*acked[-1])]})
        assert r.json() == {"accepted": 0, "duplicates": 1}
        assert "a snapshot of 2 segments" in third.log()
    assert list(read_ledger(tmp_path / "ledger"))[: len(records)] == records


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.mark.integration
def test_a_full_disk_stops_bidding_and_nothing_acknowledged_is_lost(
    serving_store: tuple[str, Path], tmp_path: Path
) -> None:
    """The ledger on a 256 KiB tmpfs: events are accepted until the disk is full, then each is
    a 503 (nothing booked), bids are no-bids `ledger_unavailable` and /readyz is false; what
    was acknowledged is exactly what the ledger holds and what spend says."""
    uri, _ = serving_store
    ledger_dir = tmp_path / "small"
    if os.geteuid() != 0 or not _mount_tmpfs(ledger_dir, "256k"):
        pytest.skip("needs root to mount a small tmpfs for the full-disk case")
    try:
        with start(uri, tmp_path, BIDOPT_LEDGER_DIR=str(ledger_dir)) as server:
            acked = 0.0
            refused = 0
            for k in range(3000):
                batch = [win(f"f{k}-{j}", 2.0) for j in range(20)]
                r = server.client.post("/v1/events", json={"events": batch})
                if r.status_code == 200:
                    assert r.json() == {"accepted": 20, "duplicates": 0}
                    acked += 20 * 2.0
                else:
                    assert r.status_code == 503, r.text
                    assert "ledger unavailable" in r.json()["detail"]
                    refused += 1
                    if refused >= 3:
                        break
            assert refused == 3, "the disk never filled"
            ready = server.client.get("/readyz")
            assert ready.status_code == 503 and "ledger_unavailable" in ready.json()["reason"]
            body = {"impressions": [BID_IMP], "campaign_ids": ["web-cpm"]}
            [b] = server.client.post("/v1/bid", json=body).json()["bids"]
            assert (b["bid"], b["reason"]) == (False, "ledger_unavailable")
            assert spend_today(server) == pytest.approx(acked / 1000, abs=1e-9)
        kept = [r for r in read_ledger(ledger_dir) if r["k"] == "e"]
        assert sum(r["price"] for r in kept) == pytest.approx(acked)
    finally:
        subprocess.run(["umount", str(ledger_dir)], check=False, capture_output=True)


@pytest.mark.integration
def test_a_removed_directory_stops_bidding_until_it_is_back(
    serving_store: tuple[str, Path], tmp_path: Path
) -> None:
    uri, _ = serving_store
    with start(uri, tmp_path) as server:
        assert (
            server.client.post("/v1/events", json={"events": [win("r1", 1.0)]}).status_code == 200
        )
        ledger_dir = tmp_path / "ledger"
        kept_before = [r for r in read_ledger(ledger_dir) if r["k"] == "e"]
        subprocess.run(["rm", "-rf", str(ledger_dir)], check=True)
        r = server.client.post("/v1/events", json={"events": [win("r2", 1.0)]})
        assert r.status_code == 503, r.text
        assert server.client.get("/readyz").status_code == 503
        ledger_dir.mkdir()
        deadline = time.monotonic() + 10
        while server.client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the ledger did not come back"
            time.sleep(0.2)
        r = server.client.post("/v1/events", json={"events": [win("r2", 1.0)]})
        assert r.json() == {"accepted": 1, "duplicates": 0}  # the refused one was not claimed
        assert spend_today(server) == pytest.approx(0.002)
    assert [r["id"] for r in kept_before] == ["r1"]
    assert [r["id"] for r in read_ledger(tmp_path / "ledger") if r["k"] == "e"] == ["r2"]
