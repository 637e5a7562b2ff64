"""Start-up after months of logs: the service's state rebuild on a ledger of N events, replayed
whole (the baseline, as before snapshots) and from the snapshot plus the live segment, in the
same run.

The ledger is written the way the service writes it: 64 MiB segments of framed records, wins
and clicks (with their bid decisions, one per win) for a few hundred campaigns and a million
users. All segments but the newest carry a dead writer's pid, so they are closed; the newest
carries this process's pid, as the live segment of a running writer. The steps:
  1. full    `serving.app.rebuild_state` on the raw segments (no snapshot yet)
  2. compact `bidopt ledger compact` in a child process, as the service runs it (timed)
  3. snap    `rebuild_state` again: the snapshot, then only the live segment
Both rebuilds are checked to give the same spend, event ids and user histories.

    .venv/bin/python bench/ledger_startup.py [--events 10000000] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEGMENT_BYTES = 64 << 20
T0 = 1_764_590_400_000_000


def write_ledger(directory: Path, events: int) -> tuple[int, int]:
    """Segments holding `events` events (3 wins : 1 click) and one decision per win."""
    import numpy as np

    from features.ledger import frame

    directory.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rng = np.random.default_rng(0)
    users = rng.integers(0, 1_000_000, events)
    campaigns = rng.integers(0, 300, events)
    chunks: list[bytes] = []
    size, seg, records = 0, 0, 0

    def close(last: bool) -> None:
        nonlocal chunks, size, seg
        pid = os.getpid() if last else dead.pid
        (directory / f"{seg + 1:020d}-{pid}.seg").write_bytes(b"".join(chunks))
        chunks, size, seg = [], 0, seg + 1

    for i in range(events):
        t = T0 + i * 50_000  # 20 events a second: 10M events are ~6 days
        cid, uid, imp = f"c{campaigns[i]}", f"u{users[i]}", f"i{i // 4 * 4}"
        if i % 4 == 3:
            recs: list[dict[str, Any]] = [{"k": "e", "t": t, "id": f"c{i}", "type": "click",
                                           "imp": imp, "cid": cid, "uid": uid}]  # fmt: skip
        else:
            imp = f"i{i}"
            price = 0.5 + (i % 17) / 4
            out = {"impression_id": imp, "bid": True, "campaign_id": cid, "price": price * 1.2,
                   "pctr": 0.001 + (i % 13) / 5000, "pcvr": 0.05}  # fmt: skip
            recs = [
                {"k": "d", "t": t - 1000, "src": "bid", "req": {"impression_id": imp,
                 "user_id": uid, "channel": "web"}, "out": out, "models": {}, "w": 1.0},
                {"k": "e", "t": t, "id": f"w{i}", "type": "win", "imp": imp, "cid": cid,
                 "uid": uid, "price": price, "currency": "USD", "amount": price / 1000,
                 "day": f"2025-12-{1 + (t - T0) // 86_400_000_000:02d}", "total": True},
            ]  # fmt: skip
        for r in recs:
            b = frame(r)
            chunks.append(b)
            size += len(b)
            records += 1
        if size >= SEGMENT_BYTES:
            close(last=False)
    close(last=True)
    return records, seg


def rebuild(directory: Path) -> tuple[float, dict[str, Any], float]:
    """The service's own start-up rebuild (serving.app.rebuild_state) on a fresh app."""
    import gc

    from serving.app import create_app, rebuild_state
    from serving.settings import BidoptSettings

    settings = BidoptSettings(ledger_dir=directory, tracking_uri="sqlite:///:memory:")
    service = create_app(settings).state.service
    gc.collect()
    started = time.perf_counter()
    rebuild_state(service)
    seconds = time.perf_counter() - started
    state = service.keeper.store.export_state()
    return seconds, state, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bidopt-startup-"))
    ledger = work / "ledger"
    t = time.perf_counter()
    records, segments = write_ledger(ledger, args.events)
    gib = sum(p.stat().st_size for p in ledger.glob("*.seg")) / 2**30
    print(f"ledger: {args.events:,} events, {records:,} records, {segments} segments, "
          f"{gib:.2f} GiB, written in {time.perf_counter() - t:.0f} s ({ledger})")  # fmt: skip

    full_s, full_state, peak = rebuild(ledger)
    print(f"full replay      {full_s:8.2f} s   (peak RSS so far {peak:,.0f} MB)")

    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "serving.cli", "ledger", "compact", "--ledger", str(ledger)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    compact_s = time.perf_counter() - t
    print(f"compaction       {compact_s:8.2f} s   (child process) {done.stdout.strip()}")
    parquet = sum(p.stat().st_size for p in (ledger / "compacted").rglob("*.parquet")) / 2**30
    snap_mb = (ledger / "snapshot.json").stat().st_size / 2**20
    print(f"                 Parquet {parquet:.2f} GiB, snapshot {snap_mb:.0f} MiB")

    snap_s, snap_state, peak = rebuild(ledger)
    print(f"snapshot + live  {snap_s:8.2f} s   (peak RSS so far {peak:,.0f} MB)")
    same = snap_state == full_state
    print(f"state identical: {same}; start-up ratio snapshot/full = {snap_s / full_s:.3f} "
          f"({full_s / snap_s:.1f}x faster)")  # fmt: skip
    if not same:
        raise SystemExit("the snapshot's state differs from a full replay")


if __name__ == "__main__":
    main()
