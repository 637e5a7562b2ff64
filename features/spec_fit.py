"""Fitting a FeatureSpec on the training window with polars: vocabularies, segments, lifts.

Fitting on the training window only keeps validation and test honest about unseen categories.
Kept apart from `features.spec` (the JSON contract), which serving imports to read a spec
without loading polars.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from features.batch import lift_column, with_derived
from features.spec import (
    CATEGORY_SOURCES,
    LIFT_QUANTUM,
    NUMERIC_SOURCES,
    Feature,
    FeatureSpec,
    LiftCell,
)


def _vocab(values: pl.LazyFrame, name: str, min_count: int, max_size: int) -> pl.LazyFrame:
    """The values of column `name` seen at least `min_count` times, most frequent first (ties by
    value, so the codes are reproducible), at most `max_size` of them."""
    return (
        values.select(pl.col(name).cast(pl.String))
        .drop_nulls()
        .group_by(name)
        .agg(pl.len().alias("n"))
        .filter(pl.col("n") >= min_count)
        .sort(["n", name], descending=[True, False])
        .head(max_size)
    )


def _lift_rows(train: pl.LazyFrame, key: str, label: str, *extra: str) -> pl.LazyFrame:
    return train.select(
        pl.col(key).cast(pl.String).alias("_k"),
        pl.col(label).cast(pl.Float64).alias("_y"),
        pl.col("user_segments").alias("_s"),
        *extra,
    ).filter(pl.col("_k").is_not_null() & pl.col("_y").is_not_null())


def _counts(rows: pl.LazyFrame, *by: str) -> list[pl.LazyFrame]:
    """Clicks and rows per key (_ck, _nk) and per (key, listed segment) (_c, _n), also grouped
    by the columns `by`."""
    keys = rows.group_by(*by, "_k").agg(pl.col("_y").sum().alias("_ck"), pl.len().alias("_nk"))
    cells = (
        rows.explode("_s")
        .drop_nulls("_s")
        .group_by(*by, "_k", "_s")
        .agg(pl.col("_y").sum().alias("_c"), pl.len().alias("_n"))
    )
    return [keys, cells]


def _cells(keys: pl.LazyFrame, cells: pl.LazyFrame, prior: float) -> tuple[LiftCell, ...]:
    """Lifts from counts: `keys` has (_k, _ck clicks, _nk rows), `cells` (_k, _s, _c, _n).

    The key rate is the exact ratio of the counts (labels are 0/1, so the sums are exact in any
    order): the one-pass out-of-fold tables below give the same cells as refitting."""
    rate = keys.filter((pl.col("_nk") > 0) & (pl.col("_ck") > 0)).select(
        "_k", (pl.col("_ck") / pl.col("_nk")).alias("_p")
    )
    shrunk = (pl.col("_c") + prior * pl.col("_p")) / (pl.col("_n") + prior)
    lift = ((shrunk.log() - pl.col("_p").log()) / LIFT_QUANTUM).round() * LIFT_QUANTUM
    out = (
        cells.filter(pl.col("_n") > 0)
        .join(rate, on="_k")
        .select("_k", "_s", lift.alias("_v"))
        .filter(pl.col("_v") != 0.0)
        .sort("_k", "_s")
        .collect()
    )
    return tuple(zip(out["_k"].to_list(), out["_s"].to_list(), out["_v"].to_list(), strict=True))


def _check_prior(prior: float) -> None:
    if not prior > 0:
        raise ValueError(f"lift_prior: must be > 0, got {prior!r}")


def fit_lifts(train: pl.DataFrame, key: str, label: str, prior: float) -> tuple[LiftCell, ...]:
    """Per (key, segment) cell, the lift ln(rate_cell / rate_key), with the cell's
    rate shrunk towards its key's by `prior` pseudo-rows, rounded to LIFT_QUANTUM.

    Why: a campaign's audience affinity (campaign x DMP segment) is the strongest interaction in
    ad logs and the hardest for trees, which must first isolate a campaign, then a segment, with
    a few clicks per cell. One number per row, the summed lift of its segments under its key,
    hands the model that interaction. Cells that round to 0 are left out (0 is the default).
    """
    _check_prior(prior)
    keys, cells = _counts(_lift_rows(train.lazy(), key, label))
    return _cells(keys, cells, prior)


def fold_lifts(
    train: pl.DataFrame, key: str, label: str, prior: float, bounds: Sequence[int]
) -> list[tuple[LiftCell, ...]]:
    """For each block [bounds[i], bounds[i+1]) of rows, `fit_lifts` on all the other rows.

    Counted once per block and subtracted from the totals, instead of refitting on each
    complement: on millions of rows that is one explode and group-by instead of one per block.
    """
    _check_prior(prior)
    block = np.repeat(np.arange(len(bounds) - 1), np.diff(np.asarray(bounds)))
    if block.size != train.height:
        raise ValueError(f"bounds cover {block.size} rows, the frame has {train.height}")
    blocks = train.lazy().with_columns(_b=pl.Series(block, dtype=pl.Int32))
    key_counts, cell_counts = pl.collect_all(_counts(_lift_rows(blocks, key, label, "_b"), "_b"))
    key_total = key_counts.group_by("_k").agg(pl.col("_ck", "_nk").sum())
    cell_total = cell_counts.group_by("_k", "_s").agg(pl.col("_c", "_n").sum())
    out = []
    for b in range(len(bounds) - 1):
        in_block = pl.col("_b") == b
        keys = _minus(key_total, key_counts.filter(in_block), ["_k"], ["_ck", "_nk"])
        cells = _minus(cell_total, cell_counts.filter(in_block), ["_k", "_s"], ["_c", "_n"])
        out.append(_cells(keys, cells, prior))
    return out


def _minus(
    total: pl.DataFrame, part: pl.DataFrame, on: list[str], values: list[str]
) -> pl.LazyFrame:
    """total - part per group (groups missing from part subtract nothing)."""
    joined = total.lazy().join(part.lazy().select(*on, *values), on=on, how="left", suffix="_b")
    return joined.select(
        *on, *[(pl.col(v) - pl.col(f"{v}_b").fill_null(0)).alias(v) for v in values]
    )


def fit_spec(
    train: pl.DataFrame,
    *,
    min_count: int = 20,
    max_vocab: int = 5000,
    max_segments: int = 64,
    label: str | None = None,
    lift_key: str = "",
    lift_prior: float = 200.0,
) -> FeatureSpec:
    """Learn vocabularies and the segment list from the training window.

    Rare values (fewer than `min_count` rows) share the unseen bucket: they carry no reliable
    signal, and dense codes keep the forest small and single-row prediction fast. With a
    `label` column and a `lift_key` (e.g. campaign_id), one more column: the summed segment
    lift under that key (`fit_lifts`); training must then fill it out of fold for its own rows
    (`out_of_fold_lifts`), or each row would see its own label.
    """
    if train.height == 0:
        raise ValueError("cannot fit a feature spec on an empty training window")
    df = with_derived(train)
    rows = df.lazy()
    # all vocabularies in one polars query: they are counted side by side on every core
    queries = [_vocab(rows, src, min_count, max_vocab) for src in CATEGORY_SOURCES]
    listed = rows.select(pl.col("user_segments").explode().alias("seg"))
    *vocabs, segments = pl.collect_all([*queries, _vocab(listed, "seg", min_count, max_segments)])
    feats: list[Feature] = []
    for src, vocab in zip(CATEGORY_SOURCES, vocabs, strict=True):
        feats.append(Feature(src, "category", src, tuple(vocab.get_column(src).to_list())))
    feats.extend(Feature(src, "numeric", src) for src in NUMERIC_SOURCES)
    feats.append(Feature("hour", "hour", "event_time"))
    feats.append(Feature("weekday", "weekday", "event_time"))
    segs = segments.get_column("seg").to_list()
    feats.extend(Feature(f"seg_{s}", "segment", "user_segments", (s,)) for s in segs)
    params: dict[str, Any] = {
        "min_count": min_count, "max_vocab": max_vocab, "max_segments": max_segments,
    }  # fmt: skip
    if lift_key and label is not None:
        if lift_key not in CATEGORY_SOURCES:
            raise ValueError(f"lift_key: {lift_key!r} is not a category source")
        lifts = fit_lifts(df, lift_key, label, lift_prior)
        feats.append(Feature(f"seglift_{lift_key}", "segment_lift", lift_key, (), lifts))
        params |= {"lift_key": lift_key, "lift_prior": lift_prior}
    return FeatureSpec(features=tuple(feats), params=params)


def out_of_fold_lifts(
    train: pl.DataFrame, spec: FeatureSpec, label: str, folds: int = 5
) -> dict[int, np.ndarray]:
    """Column index -> the lift column for the training rows, each time block encoded with
    lifts fitted on the other blocks: a row never sees its own label (which the in-sample lift
    would leak, worst in the small cells)."""
    out: dict[int, np.ndarray] = {}
    prior = float(spec.params.get("lift_prior", 200.0))
    src = with_derived(train)
    bounds = np.linspace(0, src.height, folds + 1).astype(int).tolist()
    for i, f in enumerate(spec.features):
        if f.kind != "segment_lift":
            continue
        tables = fold_lifts(src, f.source, label, prior, bounds)
        parts = [
            lift_column(src[lo:hi], Feature(f.name, f.kind, f.source, (), cells))
            for (lo, hi), cells in zip(itertools.pairwise(bounds), tables, strict=True)
        ]
        out[i] = np.concatenate(parts)
    return out
