"""The ledger's snapshot: the state derived from its compacted segments, so start-up replays
only what came after them instead of months of records.

The snapshot is built from the ledger alone, never from a running process's memory: it is the
in-process state (event ids seen, spend per campaign-day and flight, user histories) and the
performance window that replaying the compacted segments gives, written next to the list of
segments it holds (`covered`). A compactor folds newly compacted segments into it (`fold`,
under `bidopt ledger compact`'s lock), so it always equals a replay of exactly `covered`;
start-up loads it and replays every other segment (`serving.app.rebuild_state`). Because
state is sums and sets, that is the state a full replay gives (a test holds the two equal).

A snapshot that cannot be read is not trusted: start-up says so and replays the whole ledger,
which compaction keeps complete (Parquet for what was compacted, `.seg` for the rest).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson

from features.ledger import ReadStats
from features.ledger_store import (
    Manifest,
    drop_compacted,
    read_ledger,
    segment_names,
    write_atomic,
)
from serving.state.events import replay_ledger
from serving.state.performance import Performance
from serving.state.store import InMemoryStore

log = logging.getLogger("bidopt.ledger")

SNAPSHOT: Final = "snapshot.json"
VERSION: Final = 1


@contextlib.contextmanager
def bulk_load() -> Iterator[None]:
    """The garbage collector paused while millions of small objects are built: each young
    collection would walk the growing heap for nothing (nothing built here is garbage). Measured
    on a 525k-record ledger: a snapshot load 12.4 -> 2.8 s, a replay 19 -> 9.5 s (loaded host)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class SnapshotError(ValueError):
    """The snapshot file is unreadable or not a snapshot; the message says which and why."""


@dataclass
class Snapshot:
    covered: list[str] = field(default_factory=list)
    records: int = 0
    events: int = 0
    store: InMemoryStore = field(default_factory=InMemoryStore)
    performance: Performance = field(default_factory=Performance)

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "version": VERSION,
                "written_at": time.time(),
                "covered": self.covered,
                "records": self.records,
                "events": self.events,
                "store": self.store.export_state(),
                "performance": self.performance.export_state(),
            }
        )


def read_snapshot(directory: Path) -> Snapshot | None:
    """The snapshot in `directory`, or None if there is none; SnapshotError if unusable."""
    path = directory / SNAPSHOT
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise SnapshotError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        version = data.get("version") if isinstance(data, dict) else None
        raise SnapshotError(f"{path}: version {version!r}, expected {VERSION}")
    try:
        snap = Snapshot(
            covered=[str(n) for n in data["covered"]],
            records=int(data["records"]),
            events=int(data["events"]),
        )
        snap.store.import_state(data["store"])
        snap.performance.import_state(data["performance"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SnapshotError(f"{path}: not a bidopt ledger snapshot ({exc!r})") from None
    return snap


@dataclass
class FoldResult:
    folded: list[str]
    records: int
    events: int
    dropped: int
    seconds: float


def fold(directory: Path) -> FoldResult:
    """Fold every compacted segment the snapshot does not hold yet into it, write it, then
    delete those segments' `.seg` files (their records are in Parquet and in the snapshot).
    A snapshot that cannot be read is rebuilt from every compacted segment."""
    with bulk_load():
        return _fold(directory)


def _fold(directory: Path) -> FoldResult:
    started = time.perf_counter()
    try:
        snap = read_snapshot(directory) or Snapshot()
    except SnapshotError as exc:
        log.warning("%s: rebuilding the snapshot from the compacted segments", exc)
        snap = Snapshot()
    compacted = Manifest.read(directory).segments
    new = sorted(set(compacted) - set(snap.covered))
    stats = ReadStats()
    if new:
        records = read_ledger(directory, stats, skip=set(segment_names(directory)) - set(new))
        snap.events += replay_ledger(records, snap.store, snap.performance)
        snap.records += stats.records
        snap.covered = sorted(set(snap.covered) | set(new))
        write_atomic(directory / SNAPSHOT, snap.to_bytes())
    dropped = drop_compacted(directory, snap.covered)
    return FoldResult(new, stats.records, snap.events, dropped, time.perf_counter() - started)
