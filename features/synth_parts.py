"""Synthetic logs of any size in bounded memory: a Parquet dataset written part by part.

`synth.generate` holds a whole log in memory (about 1 KB a row while it works), so 45M rows
would need tens of GB. Here the log is generated in parts of at most `part_rows` rows, each an
independent group of users from the same market (`generate(..., part=k)`), and each part is
written at once, one file per day it covers:

    DIR/date=2024-03-04/part-00000.parquet, DIR/date=2024-03-04/part-00001.parquet, ...

Hive-style `date=` folders let any engine (polars, Dask, Spark) prune by day; bidopt reads
the files themselves (the `date` key is not a column of the canonical schema).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from features.synth import generate, write_parquet

PART_ROWS: Final = 1_000_000


@dataclass
class Summary:
    """What was written, for the one-line report: counts summed over the parts."""

    rows: int = 0
    won: int = 0
    clicks: int = 0
    conversions: int = 0
    files: list[Path] = field(default_factory=list)


def part_sizes(rows: int, part_rows: int) -> list[int]:
    """`rows` cut into nearly equal parts of at most `part_rows`."""
    if rows < 1 or part_rows < 1:
        raise ValueError(f"rows and part_rows must be >= 1, got {rows} and {part_rows}")
    parts = -(-rows // part_rows)
    return [rows // parts + (1 if k < rows % parts else 0) for k in range(parts)]


def write_dataset(
    out: Path,
    rows: int,
    *,
    seed: int = 0,
    days: int = 14,
    start: datetime | None = None,
    part_rows: int = PART_ROWS,
    on_part: Callable[[int, int], None] | None = None,
) -> Summary:
    """Generate `rows` rows in parts and write them under `out` (see the module docstring).

    `on_part(done, total)` is called after each part is written."""
    sizes = part_sizes(rows, part_rows)
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    for k, n in enumerate(sizes):
        df = generate(n, seed=seed, start=start, days=days, part=k)
        day = df.get_column("event_time").dt.date()
        by_day = df.with_columns(_day=day).partition_by("_day", maintain_order=True, as_dict=True)
        for (date,), rows_of_day in by_day.items():
            target = out / f"date={date}" / f"part-{k:05d}.parquet"
            target.parent.mkdir(exist_ok=True)
            write_parquet(rows_of_day.drop("_day"), target)
            summary.files.append(target)
        del by_day
        won = df.filter("won")
        summary.rows += df.height
        summary.won += won.height
        summary.clicks += int(won.get_column("click").sum())
        summary.conversions += int(won.get_column("conversion").sum())
        del df, won
        if on_part is not None:
            on_part(k + 1, len(sizes))
    summary.files.sort()
    return summary


__all__ = ["PART_ROWS", "Summary", "part_sizes", "write_dataset"]
