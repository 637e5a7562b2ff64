"""Logs of any size: a file, a folder or a glob of files, read and validated batch by batch.

`load_logs` (features.ingest) reads one file into memory. A week of a DSP's impressions, or
the 45M-row Criteo log, does not fit several times over, so training and scoring read logs as
`Batches`: canonical, validated frames in log order, each small, that can be read again (a
training makes a few passes). `ingest` validates every input row once, batch by batch, with
the same rules and quarantine as `load_logs` (rows_in == rows_used + rows_quarantined over all
files), and writes the good rows to a staging folder of Parquet batches that later passes read
without validating again.

One case stays in memory: sources without the user counters (raw iPinYou, say) spread over
several files. The counters are as-of counts over each user's whole history, which crosses
files, so those files are read together and counted once, as `load_logs` does for one file.
"""

from __future__ import annotations

import glob as globbing
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import polars as pl

from features.adapters import ADAPTERS, detect_source
from features.ingest import (
    QUARANTINE_SUFFIX,
    Checked,
    ContentHash,
    LogError,
    check_batch,
    quarantine_target,
    read_raw,
    with_counters,
    write_quarantine,
)

BATCH_ROWS: Final = 500_000
LOG_SUFFIXES: Final = (".parquet", ".csv", ".tsv", ".csv.gz", ".tsv.gz", ".txt", ".txt.gz")


class Batches(Protocol):
    """Canonical validated rows in log order, as `len(self)` frames that can be read again."""

    rows: int

    def __len__(self) -> int: ...

    def batch(self, i: int, columns: Sequence[str] | None = None) -> pl.DataFrame: ...


def iter_batches(logs: Batches, columns: Sequence[str] | None = None) -> Iterator[pl.DataFrame]:
    for i in range(len(logs)):
        yield logs.batch(i, columns)


def collect(logs: Batches, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """The whole log in memory (for what needs it: small logs, the replay of a sample)."""
    return pl.concat(list(iter_batches(logs, columns)), rechunk=False)


@dataclass(frozen=True)
class FrameBatches:
    """A frame in memory, served as zero-copy slices."""

    frame: pl.DataFrame
    batch_rows: int = BATCH_ROWS

    @property
    def rows(self) -> int:
        return self.frame.height

    def __len__(self) -> int:
        return max(1, -(-self.frame.height // self.batch_rows))

    def batch(self, i: int, columns: Sequence[str] | None = None) -> pl.DataFrame:
        part = self.frame.slice(i * self.batch_rows, self.batch_rows)
        return part if columns is None else part.select(columns)


@dataclass(frozen=True)
class ParquetBatches:
    """Canonical Parquet files written by `ingest` (or trusted ones), one batch per file."""

    files: tuple[Path, ...]
    rows: int

    def __len__(self) -> int:
        return len(self.files)

    def batch(self, i: int, columns: Sequence[str] | None = None) -> pl.DataFrame:
        return pl.read_parquet(self.files[i], columns=list(columns) if columns else None)


@dataclass(frozen=True)
class EveryKth:
    """Every k-th row of each batch of `logs` (rows 0, k, 2k, ... of each): a systematic sample
    in log order, for what needs its rows in memory but not all of them (the replay of a log
    too large to hold). `heights` are the batches' row counts."""

    logs: Batches
    k: int
    heights: tuple[int, ...]

    @classmethod
    def of(cls, logs: Batches, k: int) -> EveryKth:
        if k < 1:
            raise ValueError(f"every k-th row: k must be at least 1, got {k}")
        first = logs.batch(0).columns[:1]
        return cls(logs, k, tuple(logs.batch(i, first).height for i in range(len(logs))))

    @property
    def rows(self) -> int:
        return sum(-(-h // self.k) for h in self.heights)

    def __len__(self) -> int:
        return len(self.logs)

    def batch(self, i: int, columns: Sequence[str] | None = None) -> pl.DataFrame:
        return self.logs.batch(i, columns).gather_every(self.k)

    def mask(self) -> np.ndarray:
        """The kept rows as a mask over every row of `logs`, in log order."""
        return np.concatenate([np.arange(h) % self.k == 0 for h in self.heights])


def log_files(logs: str | Path) -> list[Path]:
    """The files of `--logs`: a file; a folder (its log files at any depth, e.g. date=.../
    partitions, in path order); or a glob such as 'logs/date=2024-03-0*/*.parquet'."""
    text = str(logs)
    path = Path(text)
    if any(c in text for c in "*?["):
        files = sorted(
            Path(p)
            for p in globbing.glob(text, recursive=True)
            if Path(p).is_file() and not p.endswith(QUARANTINE_SUFFIX)
        )
        if not files:
            raise LogError(f"{text}: no file matches")
        return files
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.name.lower().endswith(LOG_SUFFIXES)
            and not p.name.endswith(QUARANTINE_SUFFIX)
            and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        )
        if not files:
            raise LogError(f"{text}: a folder without log files ({', '.join(LOG_SUFFIXES)})")
        return files
    if not path.exists():
        raise LogError(f"{text}: no such file or folder")
    return [path]


@dataclass
class Ingested:
    """The validated log and its accounting, summed over its files."""

    logs: Batches
    source: str
    rows_in: int = 0
    rows_used: int = 0
    rows_quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    quarantine_paths: list[Path] = field(default_factory=list)
    files: int = 0
    time_min: datetime | None = None
    time_max: datetime | None = None
    content_sha256: str = ""

    def fingerprint(self) -> dict[str, Any]:
        """As `features.ingest.fingerprint` (for one file, the same hash for the same rows; for
        several, `files_sha256`), plus the number of files."""
        return {
            "source": self.source,
            "rows_in": self.rows_in,
            "rows_used": self.rows_used,
            "rows_quarantined": self.rows_quarantined,
            "event_time_min": None if self.time_min is None else self.time_min.isoformat(),
            "event_time_max": None if self.time_max is None else self.time_max.isoformat(),
            "content_sha256": self.content_sha256,
            "files": self.files,
        }

    def _add(self, frame: pl.DataFrame, digest: ContentHash | None) -> None:
        if digest is not None:
            digest.update(frame)
        self.rows_used += frame.height
        if frame.height:
            t = frame.get_column("event_time")
            lo, hi = t.min(), t.max()
            self.time_min = lo if self.time_min is None else min(self.time_min, lo)  # type: ignore[type-var,assignment]
            self.time_max = hi if self.time_max is None else max(self.time_max, hi)  # type: ignore[type-var,assignment]

    def _bad(self, reasons: dict[str, int], n: int, where: Path | None) -> None:
        self.rows_quarantined += n
        for k, v in reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + v
        if where is not None:
            self.quarantine_paths.append(where)


def ingest(
    logs: str | Path,
    stage: Path,
    *,
    source: str = "auto",
    batch_rows: int = BATCH_ROWS,
    quarantine: Path | None = None,
) -> Ingested:
    """Validate every row of `logs` once and stage the good ones under `stage` (module doc).

    Each input file gets its own quarantine file, named and placed as by `load_logs`
    (`quarantine` may be a folder for them). CSV files are read whole, as by `load_logs`;
    Parquet files in slices of `batch_rows`."""
    files = log_files(logs)
    if source != "auto" and source not in ADAPTERS:
        raise LogError(f"{logs}: unknown source {source!r} (known: auto, {', '.join(ADAPTERS)})")
    stage.mkdir(parents=True, exist_ok=True)
    staged: list[Path] = []
    sources: list[str] = []
    out = Ingested(logs=FrameBatches(pl.DataFrame()), source="", files=len(files))
    digest = ContentHash()
    memory: list[pl.DataFrame] = []  # sources without counters: counted together at the end

    def emit(frame: pl.DataFrame) -> None:
        for start in range(0, frame.height, batch_rows):
            part = frame.slice(start, batch_rows)
            target = stage / f"batch-{len(staged):06d}.parquet"
            part.write_parquet(target, compression="lz4")
            staged.append(target)
            out._add(part, digest if hashing else None)

    hashing = len(files) == 1
    for f in files:
        for checked, name, rows_in, where in _file_batches(f, source, batch_rows, quarantine):
            sources.append(name)
            out.rows_in += rows_in
            out._bad(checked.reasons, checked.rows_bad, where)
            (emit if checked.has_counters else memory.append)(checked.frame)
    if memory:
        emit(with_counters(pl.concat(memory)))
    out.source = ",".join(dict.fromkeys(sources))
    out.content_sha256 = digest.hexdigest() if len(files) == 1 else files_sha256(files)
    out.logs = ParquetBatches(tuple(staged), out.rows_used)
    return out


def files_sha256(files: Sequence[Path]) -> str:
    """SHA-256 over the files' names and bytes, in order: the content hash of a log of several
    files. Hashing the rows as CSV (one file's `fingerprint`) costs about as much as validating
    them; a dataset of many files is identified by its files instead (1 GB/s)."""
    digest = hashlib.sha256()
    root = Path(os.path.commonpath([str(f.resolve()) for f in files]))
    for f in files:
        digest.update(str(f.resolve().relative_to(root)).encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def _file_batches(
    path: Path, source: str, batch_rows: int, quarantine: Path | None
) -> Iterator[tuple[Checked, str, int, Path | None]]:
    """(checked batch, adapter, rows read, quarantine file once written) per batch of a file."""
    shown = str(path)
    if _is_parquet(path):
        try:
            scan = pl.scan_parquet(path, hive_partitioning=False)
            n = scan.select(pl.len()).collect().item()
            columns = scan.collect_schema().names()
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise LogError(f"{shown}: cannot read as Parquet: {str(exc).splitlines()[0]}") from None
        if n == 0:
            raise LogError(f"{shown}: empty file (no data rows)")
        slices: Iterator[pl.DataFrame] = (
            scan.slice(start, batch_rows).collect() for start in range(0, n, batch_rows)
        )
    else:
        raw = read_raw(path, shown)
        n, columns, slices = raw.height, raw.columns, iter([raw])
    adapter = ADAPTERS[detect_source(columns) if source == "auto" else source]
    missing = [c for c in adapter.required if c not in columns]
    if missing:
        fmt = "" if adapter.name == "canonical" else f" of the {adapter.name} format"
        raise LogError(f"{shown}: missing required columns{fmt}: {', '.join(missing)}")
    target = quarantine_target(path, quarantine)
    bad: list[pl.DataFrame] = []
    done = 0
    for raw in slices:
        checked = check_batch(raw, adapter, shown, first_row=done + 1)
        done += raw.height
        if checked.bad is not None:
            bad.append(checked.bad)
        where = None
        if done >= n:  # the file's last batch: its quarantine file, or none
            if bad:
                write_quarantine(pl.concat(bad), target)
                where = target
            elif target.is_file():
                target.unlink()
        yield checked, adapter.name, raw.height, where


def _is_parquet(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError as exc:
        raise LogError(f"{path}: cannot read: {exc.strerror or exc}") from None


__all__ = [
    "BATCH_ROWS",
    "Batches",
    "EveryKth",
    "FrameBatches",
    "Ingested",
    "ParquetBatches",
    "collect",
    "ingest",
    "iter_batches",
    "log_files",
]
