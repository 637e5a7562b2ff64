"""Time-ordered train / validation / test windows and the pCTR / pCVR training sets.

Never a random split: ad logs drift (new creatives, campaigns, publishers), and a model is always
used on traffic newer than anything it saw. A random split would let tomorrow's rows teach
today's model and report a score no deployment can reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from training.config import Target

LABEL = "label"


class SplitError(ValueError):
    """The log cannot be split into three non-empty windows (or has no usable rows)."""


@dataclass(frozen=True)
class Split:
    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    valid_start: datetime
    test_start: datetime

    def counts(self) -> dict[str, int]:
        return {"train": self.train.height, "valid": self.valid.height, "test": self.test.height}


def time_split(
    df: pl.DataFrame,
    train_frac: float = 0.7,
    valid_frac: float = 0.15,
    *,
    time_col: str = "event_time",
    what: str = "rows",
    where: pl.Expr | None = None,
    columns: Sequence[pl.Expr] = (),
) -> Split:
    """Split by fractions of the rows ordered by time (not of the time range).

    Row fractions keep the windows' sizes predictable whatever the traffic's daily shape. The cut
    points are snapped to timestamps: every row at the cut instant goes to the later window, so
    no instant is shared between windows. Rows keep their input order inside each window (file
    order for the iPinYou 2997 sample, whose file order is its time order); the validation
    window is sorted by time, stably, because calibration cross-fits on its time halves.

    `where` selects the rows to split and `columns` adds columns, in the same pass that cuts each
    window out of `df`: on millions of rows every extra copy of the frame costs seconds.
    """
    rows = df.lazy() if where is None else df.lazy().filter(where)
    times = rows.select(pl.col(time_col)).collect().get_column(time_col).sort()
    n = times.len()
    if n < 3:
        raise SplitError(f"need at least 3 {what} to split into train/validation/test, got {n}")
    i1 = min(max(int(n * train_frac), 1), n - 1)
    i2 = min(max(int(n * (train_frac + valid_frac)), i1 + 1), n - 1)
    t1, t2 = times[i1], times[i2]
    col = pl.col(time_col)

    def window(cond: pl.Expr) -> pl.DataFrame:
        return rows.filter(cond).with_columns(columns).collect()

    train = window(col < t1)
    valid = window((col >= t1) & (col < t2)).sort(time_col, maintain_order=True)
    test = window(col >= t2)
    for name, part in (("training", train), ("validation", valid), ("test", test)):
        if part.height == 0:
            raise SplitError(
                f"the {name} window is empty: {n} {what} have too few distinct {time_col} values "
                "to split by time"
            )
    return Split(train=train, valid=valid, test=test, valid_start=t1, test_start=t2)


SHOWN = pl.col("won").fill_null(True)
CLICK_LABEL = pl.col("click").fill_null(0).cast(pl.Int8).alias(LABEL)


def ctr_rows(df: pl.DataFrame) -> pl.DataFrame:
    """Impressions that were shown, labelled by click.

    pCTR is P(click | impression shown): a lost auction cannot be clicked, so rows with
    won = false would only teach the model that losing predicts no click. A null `won` (sources
    that log only impressions, like the iPinYou CTR sample) counts as shown.
    """
    return df.filter(SHOWN).with_columns(CLICK_LABEL)


def data_cutoff(df: pl.DataFrame) -> datetime:
    """The log's cut-off: its newest event_time, the moment the log knows everything before."""
    return df.get_column("event_time").max()  # type: ignore[return-value]


def cvr_rows(
    df: pl.DataFrame, attribution_days: float = 7.0, cutoff: datetime | None = None
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Clicked impressions labelled by a conversion inside the attribution window.

    pCVR is post-click: P(conversion within the window | click). Here delayed feedback is
    handled by exclusion (`cvr.delay = drop`, and every mode's validation and test windows): a
    click whose attribution window has not closed by the data cut-off (the newest event_time in
    the log, unless given) is left out, not counted as a negative, because its conversion may
    still arrive; counting it would bias pCVR low, most of all for the newest clicks.
    `training.delay` adds those clicks back for `naive` and `em`. A conversion later than the
    window after its click is a negative. A missing click_time falls back to the impression
    time; a conversion without a conversion_time is trusted to be inside the window (the source
    did not record when).
    """
    window = timedelta(days=attribution_days)
    if cutoff is None:
        cutoff = data_cutoff(df)
    clicks = df.filter(pl.col("click").fill_null(0) == 1).with_columns(
        pl.coalesce("click_time", "event_time").alias("_click_at")
    )
    matured = clicks.filter(pl.col("_click_at") + window <= cutoff)
    converted = pl.col("conversion").fill_null(0) == 1
    in_window = pl.col("conversion_time").is_null() | (
        (pl.col("conversion_time") - pl.col("_click_at")) <= window
    )
    out = matured.with_columns((converted & in_window).cast(pl.Int8).alias(LABEL)).drop("_click_at")
    info = {
        "clicks": clicks.height,
        "clicks_matured": matured.height,
        "clicks_window_open": clicks.height - matured.height,
    }
    return out, info


def make_split(
    df: pl.DataFrame,
    target: Target,
    *,
    train_frac: float = 0.7,
    valid_frac: float = 0.15,
    attribution_days: float = 7.0,
    cutoff: datetime | None = None,
) -> tuple[Split, dict[str, int]]:
    """The labelled time windows for one model, plus counts worth logging. `cutoff`: the
    log's, when `df` is only part of it (pCVR's clicks); default df's newest event_time."""
    if target == "ctr":
        # filtered and labelled while each window is cut out: one copy of the log, not three
        split = time_split(
            df, train_frac, valid_frac, what="shown impressions", where=SHOWN, columns=[CLICK_LABEL]
        )
        info = {"rows_shown": sum(split.counts().values())}
    else:
        rows, info = cvr_rows(df, attribution_days, cutoff)
        if rows.height == 0:
            raise SplitError(
                f"no clicks with a closed attribution window ({attribution_days:g} days) "
                f"among {info['clicks']} clicks: the log is too short or has no clicks"
            )
        split = time_split(rows, train_frac, valid_frac, what="matured clicks")
    info |= {f"rows_{k}": v for k, v in split.counts().items()}
    info |= {f"positives_{k}": int(part.get_column(LABEL).sum()) for k, part in _parts(split)}
    return split, info


def _parts(split: Split) -> list[tuple[str, pl.DataFrame]]:
    return [("train", split.train), ("valid", split.valid), ("test", split.test)]
