"""pCTR's time windows over logs read batch by batch: the same cut as `splits.time_split`.

A first pass reads only event_time and won, to find the cut instants over the shown rows
sorted by time (the same order statistics as the in-memory split) and which validation and
test rows to keep. A second pass labels each batch and hands its training rows to a consumer
(the spec counts) while it keeps the chosen validation and test rows. The training window
itself is never held: later passes read it again, batch by batch (`train_batches`).

Validation and test are bounded: above `max_valid_rows` / `max_test_rows` rows they are
thinned evenly in time order (every k-th row by time, as `gather_every` on the time-sorted
window), which at most a few hundred thousand rows already measure as well as all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from features.logset import Batches, FrameBatches, iter_batches
from training.batch_fit import Counter, TrainRows
from training.config import TrainConfig
from training.splits import CLICK_LABEL, LABEL, SHOWN, Split, SplitError, make_split


def _keep(times: pl.Series, cap: int) -> np.ndarray:
    """Which rows of a window (in log order) to keep: all, or every k-th row by time."""
    n = times.len()
    keep = np.zeros(n, dtype=bool)
    if cap <= 0 or n <= cap:
        keep[:] = True
        return keep
    order = np.argsort(times.dt.epoch("us").to_numpy(), kind="stable")
    keep[order[:: math.ceil(n / cap)]] = True
    return keep


@dataclass
class CtrWindows:
    """The cut of a log into pCTR's windows; valid and test held (bounded), train re-read."""

    logs: Batches
    valid_start: datetime
    test_start: datetime
    valid: pl.DataFrame
    test: pl.DataFrame
    rows_train: int
    train_per_batch: list[int]  # training rows in each batch of `logs`, in order
    info: dict[str, int]

    def train_batch(self, i: int) -> pl.DataFrame:
        """The labelled training rows of batch i, in log order."""
        return _shown(self.logs.batch(i)).filter(pl.col("event_time") < self.valid_start)

    def train_batches(self) -> Iterator[tuple[int, pl.DataFrame]]:
        """(offset of the batch's first training row, its training rows), batch by batch."""
        offset = 0
        for i, n in enumerate(self.train_per_batch):
            if n:
                yield offset, self.train_batch(i)
            offset += n

    def as_split(self) -> Split:
        """A `Split` whose train is empty (it is read by batches), for code that scores windows."""
        return Split(self.valid[:0], self.valid, self.test, self.valid_start, self.test_start)


def _shown(batch: pl.DataFrame) -> pl.DataFrame:
    return batch.filter(SHOWN).with_columns(CLICK_LABEL)


def ctr_windows(
    logs: Batches,
    *,
    train_frac: float = 0.7,
    valid_frac: float = 0.15,
    max_valid_rows: int = 0,
    max_test_rows: int = 0,
    consumer: Callable[[int], Callable[[int, pl.DataFrame], None]] | None = None,
) -> CtrWindows:
    """Cut `logs` as `make_split(df, "ctr")` would, in two passes. With a `consumer`, after the
    first pass `consumer(training rows)` gives `on_train(offset, rows)`, which then sees each
    batch's training rows during the second (offset: index of its first training row)."""
    parts = [b.filter(SHOWN).get_column("event_time") for b in _each(logs, ["event_time", "won"])]
    times = pl.concat(parts) if parts else pl.Series("event_time", [], pl.Datetime("us", "UTC"))
    n = times.len()
    what = "shown impressions"
    if n < 3:
        raise SplitError(f"need at least 3 {what} to split into train/validation/test, got {n}")
    ordered = times.sort()
    i1 = min(max(int(n * train_frac), 1), n - 1)
    i2 = min(max(int(n * (train_frac + valid_frac)), i1 + 1), n - 1)
    t1, t2 = ordered[i1], ordered[i2]
    del ordered
    in_valid = (times >= t1) & (times < t2)
    keep_valid = _keep(times.filter(in_valid), max_valid_rows)
    keep_test = _keep(times.filter(times >= t2), max_test_rows)
    per_batch = [int((p < t1).sum()) for p in parts]
    counts = {"train": sum(per_batch), "valid": int(in_valid.sum())}
    counts["test"] = n - counts["train"] - counts["valid"]
    del times, parts, in_valid
    for name, size in (("training", "train"), ("validation", "valid"), ("test", "test")):
        if counts[size] == 0:
            raise SplitError(
                f"the {name} window is empty: {n} {what} have too few distinct event_time values "
                "to split by time"
            )
    on_train = consumer(counts["train"]) if consumer is not None else None
    valid, test = [], []
    positives = {"train": 0, "valid": 0, "test": 0}
    offset = v_at = s_at = 0
    for batch in _each(logs):
        rows = _shown(batch)
        t = pl.col("event_time")
        train = rows.filter(t < t1)
        v = rows.filter((t >= t1) & (t < t2))
        s = rows.filter(t >= t2)
        for name, part in (("train", train), ("valid", v), ("test", s)):
            positives[name] += int(part.get_column(LABEL).sum())
        if on_train is not None and train.height:
            on_train(offset, train)
        offset += train.height
        valid.append(v.filter(pl.Series(keep_valid[v_at : v_at + v.height])))
        test.append(s.filter(pl.Series(keep_test[s_at : s_at + s.height])))
        v_at, s_at = v_at + v.height, s_at + s.height
    valid_frame = pl.concat(valid).sort("event_time", maintain_order=True)
    info = {"rows_shown": n}
    info |= {f"rows_{k}": v for k, v in counts.items()}
    info |= {f"positives_{k}": v for k, v in positives.items()}
    info |= {"rows_valid_kept": valid_frame.height, "rows_test_kept": sum(p.height for p in test)}
    return CtrWindows(logs, t1, t2, valid_frame, pl.concat(test), counts["train"], per_batch, info)  # type: ignore[arg-type]


def _each(logs: Batches, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
    for i in range(len(logs)):
        yield logs.batch(i, columns)


@dataclass
class Windows:
    """A target's time windows over batched logs: what `train` and `promote` need."""

    split: Split  # pCTR: its train is empty, the rows are read again through `train_rows`
    info: dict[str, int]
    cutoff: datetime | None  # pCVR: the log's newest event_time
    train_rows: TrainRows | None = None
    counter: Counter | None = None
    clicks: pl.DataFrame | None = None  # pCVR: every click of the log, in memory


def windows_for(logs: Batches | pl.DataFrame, cfg: TrainConfig, *, count: bool = True) -> Windows:
    """pCTR: cut while streaming (`ctr_windows`), the training rows counted on the way
    when `count`. pCVR: the clicks are gathered in memory (about 1% of impressions) and split
    as before, against the whole log's cut-off."""
    if isinstance(logs, pl.DataFrame):
        logs = FrameBatches(logs)
    if cfg.target == "ctr":
        holder: list[Counter] = []

        def consumer(n: int) -> Counter:
            holder.append(Counter(cfg.section("spec"), n))
            return holder[0]

        w = ctr_windows(
            logs,
            train_frac=cfg.train_frac,
            valid_frac=cfg.valid_frac,
            max_valid_rows=cfg.max_valid_rows,
            max_test_rows=cfg.max_test_rows,
            consumer=consumer if count else None,
        )
        return Windows(w.as_split(), w.info, None, w, holder[0] if holder else None)
    clicks, cutoff = clicked_rows(logs)
    split, info = make_split(
        clicks,
        cfg.target,
        train_frac=cfg.train_frac,
        valid_frac=cfg.valid_frac,
        attribution_days=cfg.attribution_days,
        cutoff=cutoff,
    )
    return Windows(split, info, cutoff, clicks=clicks)


def clicked_rows(logs: Batches) -> tuple[pl.DataFrame, datetime]:
    """Every clicked row of the log and the log's cut-off (its newest event_time)."""
    parts, newest = [], None
    for batch in iter_batches(logs):
        parts.append(batch.filter(pl.col("click").fill_null(0) == 1))
        t = batch.get_column("event_time").max()
        newest = t if newest is None or (t is not None and t > newest) else newest  # type: ignore[operator]
    return pl.concat(parts), newest  # type: ignore[return-value]


__all__ = ["CtrWindows", "Windows", "clicked_rows", "ctr_windows", "windows_for"]
