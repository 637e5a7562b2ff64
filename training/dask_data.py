"""Logs on a Dask cluster: partitioned Parquet read as a dask.dataframe, each partition
validated on its worker, and the time windows cut exactly as `training.splits` cuts them.

Each partition becomes a polars frame on the worker that read it (the same validation rules,
the same transforms as the local path); the client only ever holds per-partition statistics,
the validation and test windows (bounded), and for pCVR the clicks (about a hundredth of the
rows). The cut points are the local path's exactly: the n-th shown impression in time order is
found from a per-minute histogram of all partitions, then among the few rows of its minute.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from features.schema import COUNTER_COLUMNS, REQUIRED, SCHEMA, TRUTH_SCHEMA
from training.splits import CLICK_LABEL, LABEL, SHOWN, SplitError

TIME = "event_time"
BUCKET = "1m"


class DaskLogError(ValueError):
    """Logs the Dask path cannot use; the message names the path and the problem."""


@dataclass
class Parts:
    """Futures of per-partition polars frames on the workers, with their statistics."""

    frames: list[Any]  # distributed.Future -> pl.DataFrame (shown rows, labelled; or clicks)
    stats: list[dict[str, Any]]
    path: str
    quarantine_dir: Path | None = None
    newest: pl.DataFrame = field(default_factory=pl.DataFrame)  # the log's newest row

    @property
    def rows(self) -> int:
        return sum(int(s["rows"]) for s in self.stats)


def read_logs(path: Path) -> Any:
    """Partitioned Parquet (a directory, a glob or one file) as a dask.dataframe.

    pyarrow dtypes keep lists, nullable integers and booleans, and UTC times exactly as
    written, so each partition turns back into the canonical polars frame without loss.
    """
    import dask.dataframe as dd

    text = str(path)
    if not any(ch in text for ch in "*?[") and not path.exists():
        raise DaskLogError(f"--logs {text}: no such file or directory")
    try:
        ddf = dd.read_parquet(text, dtype_backend="pyarrow")
    except Exception as e:  # pyarrow / fsspec errors have no common base
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DaskLogError(f"--logs {text}: cannot read as Parquet ({first})") from None
    missing = [c for c in REQUIRED if c not in ddf.columns]
    if missing:
        raise DaskLogError(f"--logs {text}: missing required columns: {', '.join(missing)}")
    absent = [c for c in COUNTER_COLUMNS if c not in ddf.columns]
    if absent:
        raise DaskLogError(
            f"--logs {text}: --dask needs the user counters in the logs (missing "
            f"{', '.join(absent)}): they are as-of joins over each user's whole history, which "
            "one partition cannot compute; `bidopt synth` writes them"
        )
    return ddf


def each(client: Any, fn: Callable[..., Any], *iterables: Sequence[Any]) -> list[Any]:
    """`client.map` with every argument but the per-partition ones bound in `fn` (a partial).

    client.map's own keyword arguments become graph keys named after the keyword: two calls
    with different values under one name would share a key, so they are never used here."""
    return client.map(fn, *iterables, pure=False)  # type: ignore[no-any-return]


def by_name(workers: dict[str, dict[str, Any]]) -> list[str]:
    """Worker addresses ordered by worker name (stable across restarts of a cluster, unlike
    their ports), so that placement and LightGBM's ranks repeat from run to run."""
    return sorted(workers, key=lambda a: (str(workers[a].get("name", "")), a))


def quarantine_dir(path: Path) -> Path:
    """Where partitions put their bad rows: `<logs>.quarantine/` beside the logs, else tmp."""
    import os
    import tempfile

    base = path.parent if any(ch in str(path) for ch in "*?[") else path
    stem = base.name.removesuffix(".parquet") or "logs"
    parent = base.resolve().parent
    if os.access(parent, os.W_OK) and parent.stat().st_mode & 0o222:
        return parent / f"{stem}.quarantine"
    tag = hashlib.sha256(str(base.resolve()).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / "bidopt-quarantine" / f"{stem}-{tag}"


def clean_part(pdf: Any, index: int, target: str, qdir: str) -> tuple[pl.DataFrame, dict]:
    """One partition, validated as ingest validates a file; bad rows to its quarantine file.

    Returns the rows the target trains on (pCTR: shown impressions with their label; pCVR:
    clicks) and the partition's statistics: rows in, quarantined (by rule), the content hash,
    the time span, and for pCTR the per-minute histogram the exact cut points come from.
    """
    from features.adapters import ADAPTERS
    from features.ingest import _csv_ready, check_batch, write_quarantine

    raw = pl.from_pandas(pdf)
    checked = check_batch(raw, ADAPTERS["canonical"], f"partition {index}")
    frame = checked.frame.select(
        [*SCHEMA, *(c for c in TRUTH_SCHEMA if c in checked.frame.columns)]
    )
    n_bad = checked.rows_bad
    if checked.bad is not None:
        write_quarantine(checked.bad, Path(qdir) / f"part-{index:05d}.quarantine.csv")
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    _csv_ready(frame, separator="\x1f").write_csv(buffer, include_header=index == 0)
    digest.update(buffer.getvalue())
    times = frame.get_column(TIME)
    stats: dict[str, Any] = {
        "index": index,
        "rows_in": raw.height,
        "rows_used": frame.height,
        "rows_quarantined": n_bad,
        "reasons": checked.reasons,
        "sha256": digest.hexdigest(),
        "time_min": times.min(),
        "time_max": times.max(),
    }
    if target == "ctr":
        out = frame.filter(SHOWN).with_columns(CLICK_LABEL)
        minutes = out.select(pl.col(TIME).dt.truncate(BUCKET).alias("m")).get_column("m")
        stats["minutes"] = dict(minutes.value_counts().iter_rows())
    else:
        out = frame.filter(pl.col("click").fill_null(0) == 1)
        stats["newest"] = (
            frame.filter(pl.col(TIME) == times.max()).head(1) if frame.height else None
        )
    stats["rows"] = out.height
    return out, stats


def load_parts(client: Any, ddf: Any, target: str, path: Path) -> Parts:
    """Clean every partition on the workers (results stay there) and gather the statistics."""
    from dask import delayed

    qdir = quarantine_dir(path)
    parts = ddf.to_delayed()
    outs = [delayed(clean_part, nout=2)(p, i, target, str(qdir)) for i, p in enumerate(parts)]
    # partition i on worker i mod W: every worker holds rows for LightGBM, and a run's
    # placement (hence each worker's share of LightGBM's bin sampling) is reproducible
    workers = by_name(client.scheduler_info(n_workers=-1)["workers"])
    frames, stat_futures = [], []
    for i, (frame, stat) in enumerate(outs):
        # (allowed elsewhere: a partition lost with its worker is recomputed on another)
        f, st = client.compute(
            [frame, stat], workers=[workers[i % len(workers)]], allow_other_workers=True
        )
        frames.append(f)
        stat_futures.append(st)
    stats = client.gather(stat_futures)
    result = Parts(frames=frames, stats=stats, path=str(path))
    if any(s["rows_quarantined"] for s in stats):
        result.quarantine_dir = qdir
    if target == "cvr":
        newest = [s["newest"] for s in stats if s.get("newest") is not None]
        if newest:
            result.newest = pl.concat(newest).sort(TIME, descending=True).head(1)
    if sum(s["rows_used"] for s in stats) == 0:
        raise DaskLogError(
            f"{path}: no usable rows ({sum(s['rows_quarantined'] for s in stats)} quarantined)"
        )
    return result


def fingerprint(parts: Parts) -> dict[str, Any]:
    """As `features.ingest.fingerprint`, except the hash: SHA-256 over the partitions' own
    hashes in partition order (each over its rows as canonical CSV), computed where they are."""
    digest = hashlib.sha256()
    for s in parts.stats:
        digest.update(bytes.fromhex(s["sha256"]))
    t_min = min((s["time_min"] for s in parts.stats if s["time_min"] is not None), default=None)
    t_max = max((s["time_max"] for s in parts.stats if s["time_max"] is not None), default=None)
    fp: dict[str, Any] = {
        "source": "canonical",
        "rows_in": sum(s["rows_in"] for s in parts.stats),
        "rows_used": sum(s["rows_used"] for s in parts.stats),
        "rows_quarantined": sum(s["rows_quarantined"] for s in parts.stats),
        "event_time_min": t_min.isoformat() if isinstance(t_min, datetime) else None,
        "event_time_max": t_max.isoformat() if isinstance(t_max, datetime) else None,
        "content_sha256": digest.hexdigest(),
        "content_hash": "sha256 of the partitions' sha256, in partition order",
        "partitions": len(parts.stats),
    }
    if parts.quarantine_dir is not None:
        fp["quarantine_path"] = str(parts.quarantine_dir)
    return fp


def _times_in(frame: pl.DataFrame, minute: datetime) -> pl.Series:
    rows = frame.filter(pl.col(TIME).dt.truncate(BUCKET) == minute)
    return rows.get_column(TIME)


def _nth_time(client: Any, parts: Parts, hist: list[tuple[datetime, int]], i: int) -> datetime:
    """The i-th (0-based) time of all shown rows in time order."""
    before = 0
    for minute, count in hist:
        if before + count > i:
            chunks = client.gather(each(client, partial(_times_in, minute=minute), parts.frames))
            return pl.concat(chunks).sort()[i - before]  # type: ignore[no-any-return]
        before += count
    raise SplitError(f"row {i} is past the {before} rows counted")  # counts changed mid-run


def cut_points(
    client: Any, parts: Parts, train_frac: float, valid_frac: float
) -> tuple[datetime, datetime]:
    """t1, t2 exactly as `splits.time_split` chooses them on the same rows."""
    counts: Counter[datetime] = Counter()
    for s in parts.stats:
        counts.update(s["minutes"])
    hist = sorted(counts.items())
    n = sum(counts.values())
    if n < 3:
        raise SplitError(
            f"need at least 3 shown impressions to split into train/validation/test, got {n}"
        )
    i1 = min(max(int(n * train_frac), 1), n - 1)
    i2 = min(max(int(n * (train_frac + valid_frac)), i1 + 1), n - 1)
    return _nth_time(client, parts, hist, i1), _nth_time(client, parts, hist, i2)


def _window(frame: pl.DataFrame, lo: datetime | None, hi: datetime | None) -> pl.DataFrame:
    col = pl.col(TIME)
    cond = pl.lit(True)
    if lo is not None:
        cond = cond & (col >= lo)
    if hi is not None:
        cond = cond & (col < hi)
    return frame.filter(cond)


def _window_stats(frame: pl.DataFrame, t1: datetime, t2: datetime) -> dict[str, int]:
    out = {}
    for name, lo, hi in (("train", None, t1), ("valid", t1, t2), ("test", t2, None)):
        w = _window(frame, lo, hi)
        out[f"rows_{name}"] = w.height
        out[f"positives_{name}"] = int(w.get_column(LABEL).sum() or 0)
    return out


def window_counts(client: Any, parts: Parts, t1: datetime, t2: datetime) -> list[dict[str, int]]:
    return client.gather(each(client, partial(_window_stats, t1=t1, t2=t2), parts.frames))


def collect_window(
    client: Any, parts: Parts, lo: datetime | None, hi: datetime | None
) -> pl.DataFrame:
    """One window gathered to the client, rows in partition order (the local path's order)."""
    frames = client.gather(each(client, partial(_window, lo=lo, hi=hi), parts.frames))
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame()


def train_rows(frame: pl.DataFrame, t1: datetime) -> pl.DataFrame:
    """The partition's rows of the training window (before the first cut point)."""
    return _window(frame, None, t1)


def gather_all(client: Any, parts: Parts) -> pl.DataFrame:
    """Every partition's rows on the client (pCVR's clicks), plus the log's newest row so that
    the data cut-off (`splits.data_cutoff`) is the whole log's."""
    frames = client.gather(parts.frames)
    newest = parts.newest
    extra = newest.height > 0 and newest.get_column("click").fill_null(0).item() != 1
    frames = [f for f in frames if f.height] + ([newest] if extra else [])
    return pl.concat(frames, how="vertical")


__all__ = [
    "DaskLogError",
    "Parts",
    "collect_window",
    "cut_points",
    "fingerprint",
    "gather_all",
    "load_parts",
    "read_logs",
    "train_rows",
    "window_counts",
]
