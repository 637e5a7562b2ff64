"""The ledger directory: live segments and their compacted Parquet, read back as one sequence.

Writers only ever append to their own newest segment (`<start ns>-<pid>.seg`). A segment is
*closed* once its writer has moved on: a newer segment of the same pid exists (it rotated or
recovered from a write failure), or the pid is no longer alive (the process ended or was
killed). Only closed segments are compacted, so compaction never races a writer and needs no
lock shared with one.

Compaction writes each closed segment's records to Parquet under `compacted/`, partitioned the
Hive way by the record's date and hour (`date=2026-12-01/hour=14/<segment>.parquet`), with the
columns an analyst queries (kind, time, ids, campaign, price, pCTR, ...) and the whole record as
JSON (`record`), so reading it back is lossless. `compacted/_manifest.json` is the commit point:
a segment counts as compacted once the manifest names it (replaced atomically), and readers then
take its records from Parquet and ignore its `.seg` file, which may be deleted. A crash before
the manifest is written leaves at worst Parquet parts the manifest does not name: ignored, and
rewritten by the next run.

`read_ledger` yields every record once, segment by segment in name order (time, then pid),
whichever form each segment is in, so start-up, `bidopt logs build` and the benches do not care
whether compaction ran.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from features.ledger import DECISION, SEGMENT_SUFFIX, ReadStats, read_segment

COMPACTED: Final = "compacted"
MANIFEST: Final = "_manifest.json"
_NAME = re.compile(r"^(\d+)-(\d+)$")


def write_atomic(path: Path, data: bytes) -> None:
    """`data` at `path` whole or not at all, durable before it is visible (tmp, fsync, rename,
    fsync of the directory): a crash never leaves a half-written manifest or snapshot."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not ours to judge
        return True
    return True


def live_segments(directory: Path) -> dict[str, Path]:
    """Segment name (file stem) -> path, for every `.seg` file under `directory`."""
    if not directory.is_dir():
        return {}
    return {p.stem: p for p in directory.rglob(f"*{SEGMENT_SUFFIX}") if COMPACTED not in p.parts}


def closed_segments(directory: Path) -> list[Path]:
    """The segments no writer will append to again (see the module), oldest first. A name that
    is not `<ns>-<pid>` was not written by the service: never judged closed."""
    newest: dict[int, str] = {}
    by_name = live_segments(directory)
    for name in by_name:
        m = _NAME.match(name)
        if m is not None:
            pid = int(m.group(2))
            newest[pid] = max(newest.get(pid, name), name)
    closed = []
    for name, path in by_name.items():
        m = _NAME.match(name)
        if m is None:
            continue
        pid = int(m.group(2))
        if name != newest[pid] or not _pid_alive(pid):
            closed.append(path)
    return sorted(closed, key=lambda p: p.stem)


@dataclass
class Manifest:
    """Which segments are compacted, with their record counts and Parquet parts."""

    segments: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / COMPACTED / MANIFEST
        if not path.exists():
            return cls()
        try:
            data = orjson.loads(path.read_bytes())
            return cls(dict(data["segments"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a ledger manifest ({exc})") from None

    def write(self, directory: Path) -> None:
        body = {"version": 1, "segments": self.segments}
        write_atomic(directory / COMPACTED / MANIFEST, orjson.dumps(body))


@dataclass
class CompactResult:
    compacted: list[str] = field(default_factory=list)  # segment names compacted by this run
    records: int = 0
    parts: int = 0
    torn_bytes: int = 0  # torn tails skipped (never acknowledged: a write that did not finish)


def _columns(seq: int, r: dict[str, Any]) -> dict[str, Any]:
    """The queryable columns of one record; `record` keeps all of it."""
    t = datetime.fromtimestamp(int(r.get("t", 0)) / 1_000_000, UTC)
    row: dict[str, Any] = {"seq": seq, "kind": r.get("k"), "time": t}
    if r.get("k") == DECISION:
        out, req = r.get("out") or {}, r.get("req") or {}
        row |= {
            "source": r.get("src"),
            "request_id": req.get("request_id"),
            "impression_id": out.get("impression_id"),
            "campaign_id": out.get("campaign_id"),
            "creative_id": out.get("creative_id"),
            "bid": out.get("bid"),
            "price": out.get("price"),
            "pctr": out.get("pctr"),
            "pcvr": out.get("pcvr"),
            "reason": out.get("reason"),
            "weight": r.get("w"),
        }
    else:
        row |= {
            "event_id": r.get("id"),
            "type": r.get("type"),
            "impression_id": r.get("imp"),
            "campaign_id": r.get("cid"),
            "user_id": r.get("uid"),
            "price": r.get("price"),
            "amount": r.get("amount"),
            "value": r.get("value"),
        }
    row["record"] = orjson.dumps(r).decode()
    return row


_SCHEMA: Final[dict[str, str]] = {
    "seq": "UInt32", "kind": "String", "time": "Datetime", "source": "String",
    "request_id": "String", "impression_id": "String", "campaign_id": "String",
    "creative_id": "String", "bid": "Boolean", "price": "Float64", "pctr": "Float64",
    "pcvr": "Float64", "reason": "String", "weight": "Float64", "event_id": "String",
    "type": "String", "user_id": "String", "amount": "Float64", "value": "Float64",
    "record": "String",
}  # fmt: skip


def _frame(rows: list[dict[str, Any]]) -> Any:
    import polars as pl

    dtypes = {
        "UInt32": pl.UInt32, "String": pl.String, "Boolean": pl.Boolean,
        "Float64": pl.Float64, "Datetime": pl.Datetime("us", "UTC"),
    }  # fmt: skip
    schema = {name: dtypes[kind] for name, kind in _SCHEMA.items()}
    return pl.DataFrame(rows, schema=schema, strict=False).with_columns(
        pl.col("time").dt.strftime("%Y-%m-%d").alias("_date"),
        pl.col("time").dt.hour().alias("_hour"),
    )


def compact_segment(directory: Path, path: Path) -> tuple[list[str], ReadStats]:
    """Write one segment's records as Parquet parts; returns the parts (relative to
    `compacted/`) and what reading found. The manifest is the caller's to update."""
    stats = ReadStats()
    rows = [_columns(i, r) for i, r in enumerate(read_segment(path, stats))]
    if not rows:
        return [], stats
    frame = _frame(rows)
    parts = []
    for (date, hour), part in frame.group_by(["_date", "_hour"], maintain_order=True):
        rel = Path(f"date={date}") / f"hour={int(hour):02d}" / f"{path.stem}.parquet"
        target = directory / COMPACTED / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        part.drop("_date", "_hour").write_parquet(tmp, compression="zstd")
        os.replace(tmp, target)
        parts.append(rel.as_posix())
    return sorted(parts), stats


def compact(directory: Path) -> CompactResult:
    """Compact every closed segment the manifest does not name yet (see the module); the
    `.seg` files stay until `drop_compacted` removes them. Run it from one process at a time
    (`bidopt ledger compact` holds a lock)."""
    manifest = Manifest.read(directory)
    result = CompactResult()
    for path in closed_segments(directory):
        if path.stem in manifest.segments:
            continue
        parts, stats = compact_segment(directory, path)
        manifest.segments[path.stem] = {
            "records": stats.records,
            "torn_bytes": stats.torn_bytes,
            "parts": parts,
        }
        manifest.write(directory)  # committed segment by segment: a crash keeps the progress
        result.compacted.append(path.stem)
        result.records += stats.records
        result.parts += len(parts)
        result.torn_bytes += stats.torn_bytes
    return result


def drop_compacted(directory: Path, names: Iterable[str]) -> int:
    """Delete the `.seg` files of `names` that the manifest names (never another)."""
    manifest = Manifest.read(directory)
    live = live_segments(directory)
    dropped = 0
    for name in names:
        if name in manifest.segments and name in live:
            with contextlib.suppress(FileNotFoundError):
                live[name].unlink()
                dropped += 1
    return dropped


def read_compacted(directory: Path, name: str, entry: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One compacted segment's records in their original order."""
    import polars as pl

    parts = [directory / COMPACTED / p for p in entry.get("parts", ())]
    if not parts:
        return
    frame = pl.concat([pl.read_parquet(p, columns=["seq", "record"]) for p in parts])
    for record in frame.sort("seq").get_column("record"):
        yield orjson.loads(record)


def segment_names(directory: Path) -> list[str]:
    """Every segment the ledger holds, compacted or live, in reading order."""
    names = set(live_segments(directory)) | set(Manifest.read(directory).segments)
    return sorted(names)


def read_ledger(
    directory: Path, stats: ReadStats | None = None, skip: Iterable[str] = ()
) -> Iterator[dict[str, Any]]:
    """Every record of the ledger once (see the module), leaving out the segments in `skip`
    (those a snapshot already holds)."""
    stats = stats if stats is not None else ReadStats()
    manifest = Manifest.read(directory)
    live = live_segments(directory)
    skipped = set(skip)
    for name in sorted((set(live) | set(manifest.segments)) - skipped):
        entry = manifest.segments.get(name)
        if entry is not None:
            for record in read_compacted(directory, name, entry):
                stats.records += 1
                yield record
        else:
            yield from read_segment(live[name], stats)
