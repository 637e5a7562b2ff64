"""Read logs of any supported format, validate every row, quarantine the bad ones.

The contract with the rest of bidopt: what `load_logs` returns is canonical (features.schema),
holds only rows that passed every rule, has anonymised IPs, has the user counters, and comes
with the count of rows set aside, so that rows_in == rows_used + rows_quarantined always.
A bad row never stops a run and is never dropped silently: it goes to the quarantine file
with the first rule it broke. Only problems that make the whole file unusable (absent,
unreadable, empty, missing required columns) stop, with a one-line LogError.

The row rules live in features.validation. All parsing is vectorised (polars); Python only
runs per distinct IPv6 address or cookie (features.ipanon) and on the error path.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

import polars as pl

from features.adapters import ADAPTERS, Adapter, detect_source
from features.profiles import add_user_counters
from features.schema import COUNTER_COLUMNS, SCHEMA, TRUTH_SCHEMA, conform
from features.validation import SEGMENT_SEPARATOR, validate

QUARANTINE_SUFFIX: Final = ".quarantine.csv"
_HASH_CHUNK: Final = 250_000


class LogError(Exception):
    """A log file that cannot be used at all; the message is one line naming file and problem."""


@dataclass(frozen=True)
class LoadResult:
    """Validated canonical rows and the accounting of what was set aside."""

    frame: pl.DataFrame
    rows_in: int
    rows_used: int
    rows_quarantined: int
    quarantine_path: Path | None  # None when no row was quarantined (no file is written)
    source: str  # adapter name: "canonical", "ipinyou", "ipinyou_ctr"
    reasons: dict[str, int] = field(default_factory=dict)  # rule ("negative bid_price") → rows

    def __post_init__(self) -> None:
        if self.rows_in != self.rows_used + self.rows_quarantined:
            raise ValueError(
                f"rows_in {self.rows_in} != rows_used {self.rows_used}"
                f" + rows_quarantined {self.rows_quarantined}"
            )
        if self.frame.height != self.rows_used:
            raise ValueError(f"frame has {self.frame.height} rows, rows_used is {self.rows_used}")


def load_logs(
    path: Path | str,
    *,
    source: str = "auto",
    quarantine_path: Path | None = None,
    add_counters: bool = True,
) -> LoadResult:
    """Load a log file (Parquet, or CSV/TSV optionally gzipped) into the canonical schema.

    `source="auto"` recognises the raw iPinYou log and the iPinYou CTR sample by their
    headers; anything else is read as canonical columns. Extra columns are ignored.

    Rows breaking a rule go to a CSV quarantine file (Parquet if `quarantine_path` ends in
    .parquet) holding `row_number` (1-based data row, header not counted), `reason` and the
    row as read, with its IP masked and any cookie pseudonymised. `quarantine_path` may be a
    file or a directory; by default the file is `<input stem>.quarantine.csv` beside the input
    or, when that directory is not writable or carries no write permission bit (shared data
    is dr-xr-xr-x, and root would pass a plain access check), in `<tmp>/bidopt-quarantine/`
    with a hash of the input path in its name so that inputs never overwrite each other's.
    Without bad rows no file is written and a stale one at that path is removed.

    Numbers, times, booleans, enums and IPs are stripped of blanks before parsing; other
    strings are kept as written, an empty one being null. Counters are computed from the used
    rows, strictly as of each row, when the source has none of them (unless `add_counters` is
    false: `features.logset` computes them over several files). Rows keep file order.
    """
    path = Path(path)
    shown = str(path)
    if source != "auto" and source not in ADAPTERS:
        raise LogError(f"{shown}: unknown source {source!r} (known: auto, {', '.join(ADAPTERS)})")
    raw = read_raw(path, shown)
    adapter = ADAPTERS[detect_source(raw.columns) if source == "auto" else source]
    missing = [c for c in adapter.required if c not in raw.columns]
    if missing:
        fmt = "" if adapter.name == "canonical" else f" of the {adapter.name} format"
        raise LogError(f"{shown}: missing required columns{fmt}: {', '.join(missing)}")

    checked = check_batch(raw, adapter, shown)
    frame = checked.frame
    if add_counters and not checked.has_counters:
        frame = with_counters(frame)
    target = quarantine_target(path, quarantine_path)
    if checked.bad is not None:
        write_quarantine(checked.bad, target)
    elif target.is_file():
        target.unlink()
    return LoadResult(
        frame=frame,
        rows_in=raw.height,
        rows_used=frame.height,
        rows_quarantined=checked.rows_bad,
        quarantine_path=target if checked.bad is not None else None,
        source=adapter.name,
        reasons=checked.reasons,
    )


@dataclass(frozen=True)
class Checked:
    """One batch of raw rows after validation: the good rows (canonical) and the bad ones
    (scrubbed, with `row_number` and `reason`, ready for the quarantine file)."""

    frame: pl.DataFrame
    bad: pl.DataFrame | None
    reasons: dict[str, int]
    has_counters: bool  # the source carried the user counters (else `with_counters`)

    @property
    def rows_bad(self) -> int:
        return 0 if self.bad is None else self.bad.height


def check_batch(raw: pl.DataFrame, adapter: Adapter, shown: str, first_row: int = 1) -> Checked:
    """Validate a batch of raw rows of one file; `first_row` is the 1-based data row number of
    its first row in that file, so quarantined rows are numbered as in the file."""
    candidate = adapter.to_canonical(raw)
    try:
        parsed, reason = validate(candidate)
    except TypeError as exc:
        raise LogError(f"{shown}: {exc}") from None
    bad = reason.is_not_null()
    n_bad = int(bad.sum())
    frame = conform(parsed.filter(~bad))
    rows = None
    if n_bad:
        rows = raw.with_row_index("row_number", offset=first_row).filter(bad)
        rows = adapter.scrub(rows).select(
            "row_number", reason.filter(bad).alias("reason"), *raw.columns
        )
    counts = reason.filter(bad).str.replace(r":.*$", "").value_counts(sort=True)
    has = not all(c not in candidate.columns for c in COUNTER_COLUMNS)
    return Checked(frame, rows, dict(counts.iter_rows()), has)


def with_counters(frame: pl.DataFrame) -> pl.DataFrame:
    """The user counters computed from the rows themselves (a source without them)."""
    frame = add_user_counters(frame)
    return frame.select([*SCHEMA, *(c for c in TRUTH_SCHEMA if c in frame.columns)])


def read_raw(path: Path, shown: str) -> pl.DataFrame:
    """The file as a frame: Parquet typed, CSV as strings so that bad values survive parsing."""
    if not path.exists():
        raise LogError(f"{shown}: no such file")
    if path.is_dir():
        raise LogError(f"{shown}: is a directory, not a log file")
    head = b""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
        if not head:
            raise LogError(f"{shown}: empty file")
        frame = pl.read_parquet(path) if head == b"PAR1" else _read_csv(path, head, shown)
    except LogError:
        raise
    except (OSError, EOFError, zlib.error, pl.exceptions.PolarsError) as exc:
        kind = "Parquet" if head == b"PAR1" else "CSV"
        raise LogError(f"{shown}: cannot read as {kind}: {_first_line(exc)}") from None
    if frame.height == 0:
        raise LogError(f"{shown}: empty file (no data rows)")
    return frame


def _read_csv(path: Path, head: bytes, shown: str) -> pl.DataFrame:
    gzipped = head[:2] == b"\x1f\x8b"
    with gzip.open(path, "rb") if gzipped else path.open("rb") as fh:
        first = fh.readline()
    if not first.strip():
        raise LogError(f"{shown}: empty file")
    sep = "\t" if first.count(b"\t") > first.count(b",") else ","
    try:
        return pl.read_csv(path, separator=sep, infer_schema=False, encoding="utf8-lossy")
    except pl.exceptions.ComputeError as exc:
        if "more fields" in str(exc):
            raise LogError(f"{shown}: {_ragged_line(path, gzipped, sep)}") from None
        raise


def _ragged_line(path: Path, gzipped: bool, sep: str) -> str:
    """Find the first row with too many fields: the error path may afford a Python scan."""
    opener = gzip.open if gzipped else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep)
        width = len(next(reader))
        for row in reader:
            if len(row) > width:
                return (
                    f"line {reader.line_num} has {len(row)} fields, the header has {width}"
                    " (a value with an unquoted separator?)"
                )
    return "a line has more fields than the header"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def quarantine_target(path: Path, given: Path | None) -> Path:
    stem = path.name.removesuffix(".gz")
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    name = stem + QUARANTINE_SUFFIX
    if given is not None:
        given = Path(given)
        return given / name if given.is_dir() or not given.suffix else given
    directory = path.resolve().parent
    if _writable(directory):
        return directory / name
    tag = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / "bidopt-quarantine" / f"{stem}-{tag}{QUARANTINE_SUFFIX}"


def _writable(directory: Path) -> bool:
    """Writable, and not marked read-only: root passes os.access on a dr-xr-xr-x data folder."""
    return os.access(directory, os.W_OK) and bool(directory.stat().st_mode & 0o222)


def write_quarantine(rows: pl.DataFrame, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix == ".parquet":
            rows.write_parquet(target)
        else:
            _csv_ready(rows).write_csv(target)
    except OSError as exc:
        raise LogError(f"cannot write quarantine file {target}: {exc.strerror or exc}") from None


def _csv_ready(frame: pl.DataFrame, separator: str = SEGMENT_SEPARATOR) -> pl.DataFrame:
    """Nested columns flattened to strings, since CSV holds only scalars."""
    exprs = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.List | pl.Array):
            exprs.append(pl.col(name).cast(pl.List(pl.String)).list.join(separator))
        elif isinstance(dtype, pl.Struct):
            exprs.append(pl.col(name).struct.json_encode())
        else:
            exprs.append(pl.col(name))
    return frame.select(exprs)


def write_csv(frame: pl.DataFrame, path: Path | str) -> None:
    """Write a canonical frame as CSV that `load_logs` reads back to the same frame.

    user_segments are joined with commas (segment ids must not contain one); times are ISO 8601
    with their UTC offset.
    """
    _csv_ready(frame).write_csv(Path(path))


class ContentHash:
    """SHA-256 over frames written as CSV in canonical column order, one after the other: the
    digest of the concatenated frames, whatever the batches (a header only before the first)."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._header = True

    def update(self, frame: pl.DataFrame) -> None:
        flat = _csv_ready(frame, separator="\x1f")
        for start in range(0, max(flat.height, 1 if self._header else 0), _HASH_CHUNK):
            buffer = io.BytesIO()
            flat.slice(start, _HASH_CHUNK).write_csv(buffer, include_header=self._header)
            self._header = False
            self._digest.update(buffer.getvalue())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def fingerprint(result: LoadResult) -> dict[str, str | int | None]:
    """What identifies the training data of a run: source, counts, time span, content hash.

    The hash is SHA-256 over the frame written as CSV in canonical column and row order: it
    depends on values only, not on polars' internal hashing (which may change between
    versions) nor on Parquet encoding. It is streamed in chunks to keep memory flat.
    """
    times = result.frame.get_column("event_time")
    digest = ContentHash()
    digest.update(result.frame)
    return {
        "source": result.source,
        "rows_in": result.rows_in,
        "rows_used": result.rows_used,
        "rows_quarantined": result.rows_quarantined,
        "event_time_min": _iso(times.min()),
        "event_time_max": _iso(times.max()),
        "content_sha256": digest.hexdigest(),
    }


def _iso(value: object) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


__all__ = [
    "Checked",
    "ContentHash",
    "LoadResult",
    "LogError",
    "check_batch",
    "fingerprint",
    "load_logs",
    "quarantine_target",
    "with_counters",
    "write_csv",
    "write_quarantine",
]
