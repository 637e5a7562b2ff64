"""Compaction and the start-up snapshot on real segment files: closed segments (rotated, or of a
dead process, torn tail included) go to Parquet by date and hour and into the snapshot; the
segment a live writer appends to is left alone; and every reader sees the same records, and
start-up the same state, as before compaction."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from features.ledger import frame
from features.ledger_logs import build_logs
from features.ledger_store import COMPACTED, Manifest, closed_segments, compact, read_ledger
from serving.state.compaction import CompactionBusy, _locked, run_compaction
from serving.state.events import replay_ledger
from serving.state.performance import Performance
from serving.state.snapshot import SNAPSHOT, SnapshotError, read_snapshot
from serving.state.store import InMemoryStore

T0 = 1_764_590_400_000_000  # 2025-12-01T12:00:00Z in µs


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def decision(t: int, imp: str, cid: str, pctr: float) -> dict[str, Any]:
    req = {"request_id": f"r-{imp}", "impression_id": imp, "channel": "web", "user_id": "u1"}
    out = {"impression_id": imp, "bid": True, "campaign_id": cid, "price": 2.0,
           "pctr": pctr, "pcvr": 0.1}  # fmt: skip
    return {"k": "d", "t": t, "src": "bid", "req": req, "out": out, "models": {}, "w": 1.0}


def win(t: int, imp: str, cid: str, price: float) -> dict[str, Any]:
    return {"k": "e", "t": t, "id": f"w-{imp}", "type": "win", "imp": imp, "cid": cid,
            "uid": "u1", "price": price, "currency": "USD", "amount": price / 1000,
            "day": "2025-12-01", "total": True}  # fmt: skip


def click(t: int, imp: str, cid: str) -> dict[str, Any]:
    return {"k": "e", "t": t, "id": f"c-{imp}", "type": "click", "imp": imp, "cid": cid,
            "uid": "u1"}  # fmt: skip


def segment(
    directory: Path, ns: int, pid: int, records: list[dict[str, Any]], torn: int = 0
) -> Path:
    path = directory / f"{ns:020d}-{pid}.seg"
    data = b"".join(frame(r) for r in records)
    path.write_bytes(data + frame(win(T0, "torn", "c1", 9.0))[:torn] if torn else data)
    return path


def records(base: int, n: int, cid: str) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        t = base + i * 600_000_000  # every 10 minutes: the records span several hours
        imp = f"{cid}-{base}-{i}"
        out += [decision(t, imp, cid, 0.01 + i / 1000), win(t + 1, imp, cid, 1.0 + i % 5)]
        if i % 3 == 0:
            out.append(click(t + 2, imp, cid))
    return out


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """Four segments: a dead writer's, ours rotated, a killed writer's with a torn tail, and
    ours being written (the newest of this pid: not closed)."""
    d = tmp_path / "ledger"
    d.mkdir()
    me, gone = os.getpid(), dead_pid()
    segment(d, 1, gone, records(T0, 20, "c1"))
    segment(d, 2, me, records(T0 + 1, 15, "c2"))
    segment(d, 3, gone, records(T0 + 2, 10, "c1"), torn=11)
    segment(d, 4, me, records(T0 + 3, 5, "c2"))
    return d


def full_replay(directory: Path) -> tuple[dict[str, Any], dict[str, Any], int]:
    store, perf = InMemoryStore(), Performance()
    n = replay_ledger(read_ledger(directory), store, perf)
    return store.export_state(), perf.export_state(), n


def snapshot_start(directory: Path) -> tuple[dict[str, Any], dict[str, Any], int]:
    """What serving.app.rebuild_state does: the snapshot, then the segments it does not hold."""
    snap = read_snapshot(directory)
    assert snap is not None
    n = replay_ledger(read_ledger(directory, skip=snap.covered), snap.store, snap.performance)
    return snap.store.export_state(), snap.performance.export_state(), snap.events + n


def test_compaction_keeps_every_record_and_the_state_start_up_derives(ledger: Path) -> None:
    before = list(read_ledger(ledger))
    state = full_replay(ledger)
    logs = build_logs(ledger)
    assert [p.name.split("-")[0][-1] for p in closed_segments(ledger)] == ["1", "2", "3"]

    report = run_compaction(ledger)

    assert len(report.compacted.compacted) == 3 and report.compacted.torn_bytes == 11
    assert report.compacted.records == len(before) - len(records(T0 + 3, 5, "c2"))
    remaining = sorted(p.name for p in ledger.glob("*.seg"))
    assert remaining == [f"{4:020d}-{os.getpid()}.seg"]  # the live writer's segment stays
    parts = sorted(p.relative_to(ledger / COMPACTED).parts[:2] for p in ledger.rglob("*.parquet"))
    assert ("date=2025-12-01", "hour=12") in parts and ("date=2025-12-01", "hour=14") in parts
    assert list(read_ledger(ledger)) == before  # the same records, in the same order
    assert snapshot_start(ledger) == state  # snapshot + tail = a full replay
    assert full_replay(ledger) == state
    again = build_logs(ledger)
    assert again.frame.equals(logs.frame) and again.decisions_in == logs.decisions_in

    # what analysts query: the Parquet dataset, partitioned the Hive way
    scanned = pl.scan_parquet(ledger / COMPACTED / "**/*.parquet", hive_partitioning=True)
    wins = scanned.filter(pl.col("type") == "win").select(pl.col("amount").sum()).collect()
    compacted = [r for r in before if r.get("type") == "win" and r["cid"] == "c1"]
    compacted += [r for r in records(T0 + 1, 15, "c2") if r.get("type") == "win"]
    assert wins.item() == pytest.approx(sum(r["amount"] for r in compacted))

    second = run_compaction(ledger)  # nothing new: nothing done, nothing lost
    assert second.compacted.compacted == [] and second.folded.folded == []
    assert list(read_ledger(ledger)) == before


def test_a_crash_before_the_manifest_leaves_the_segment_to_the_next_run(ledger: Path) -> None:
    from features.ledger_store import compact_segment

    before = list(read_ledger(ledger))
    first = closed_segments(ledger)[0]
    compact_segment(ledger, first)  # Parquet written, then the process dies: no manifest entry
    assert Manifest.read(ledger).segments == {}
    assert list(read_ledger(ledger)) == before  # unnamed parts are not read twice
    compact(ledger)
    assert list(read_ledger(ledger)) == before


def test_a_corrupt_snapshot_is_not_trusted_and_is_rebuilt(ledger: Path) -> None:
    state = full_replay(ledger)
    run_compaction(ledger)
    (ledger / SNAPSHOT).write_bytes(b'{"version": 1, "covered": ["x"]')  # cut short
    with pytest.raises(SnapshotError, match="cannot be read"):
        read_snapshot(ledger)
    assert full_replay(ledger) == state  # what start-up falls back to: Parquet + segments
    run_compaction(ledger)  # the next compaction rebuilds it from the compacted segments
    assert snapshot_start(ledger) == state


def test_one_compaction_at_a_time_and_clear_errors(ledger: Path, tmp_path: Path) -> None:
    with _locked(ledger), pytest.raises(CompactionBusy, match="another compaction"):
        run_compaction(ledger)
    import typer

    from serving.cli import ledger_compact

    app = typer.Typer()
    app.command()(ledger_compact)
    missing = CliRunner().invoke(app, ["--ledger", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no ledger directory at" in missing.output
    done = CliRunner().invoke(app, ["--ledger", str(ledger)])
    assert done.exit_code == 0 and "compacted 3 segments" in done.output
    (ledger / COMPACTED / "_manifest.json").write_text("[1, 2")
    broken = CliRunner().invoke(app, ["--ledger", str(ledger)])
    assert broken.exit_code == 2 and "not a ledger manifest" in broken.output


def test_the_service_compacts_in_a_child_and_restarts_from_the_snapshot(
    tmp_path: Path, ledger: Path
) -> None:
    """The compaction loop's child process, as the service runs it."""
    import asyncio

    from serving.state.compaction import compaction_loop

    async def one_round() -> None:
        task = asyncio.create_task(compaction_loop(ledger, 0.05))
        deadline = time.monotonic() + 60
        while not (ledger / SNAPSHOT).exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    state = full_replay(ledger)
    asyncio.run(one_round())
    assert snapshot_start(ledger) == state
