"""Fitting a FeatureSpec on the training window with polars: vocabularies, segments, lifts.

Fitting on the training window only keeps validation and test honest about unseen categories.
Kept apart from `features.spec` (the JSON contract), which serving imports to read a spec
without loading polars.

Everything a spec is learned from is a count, so fitting is two steps: `count_batch` counts one
part of the training window (a batch, a file, a Dask partition) into `SpecCounts`, parts are
added with `SpecCounts.merge` (associative and commutative: any reduction tree gives the same
counts), and `spec_from_counts` turns the total into the spec. `fit_spec` on a frame is the
same two steps on one part, so a spec fitted batch by batch equals the in-memory one.

Out-of-fold segment lifts: the training window's rows, in log order, are cut into `folds`
consecutive blocks of (nearly) equal size, `fold_bounds(n, folds)`: training row i (0-based,
counted over the whole training window in log order) is in block b when
bounds[b] <= i < bounds[b + 1]. A part whose first training row is row `offset` gets its
blocks from `row_blocks(offset, length, bounds)`. Counts keep the block of each row, so the
lifts for block b (learned on every other block) come from the same merged counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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

_N = pl.Int64  # counts: UInt32 (pl.len) would overflow on merged logs of billions of rows
_VALUE = {"_v": pl.String, "n": _N}
_KEYS = {"_b": pl.Int32, "_k": pl.String, "_ck": pl.Float64, "_nk": _N}
_CELLS = {"_b": pl.Int32, "_k": pl.String, "_s": pl.String, "_c": pl.Float64, "_n": _N}


@dataclass(frozen=True)
class SpecCounts:
    """What a spec is learned from, counted on part of a training window.

    `values[source]` holds (_v value, n rows) per category source; `segments` (_v segment,
    n rows listing it). With a lift key, `keys` holds (_b block, _k key, _ck clicks, _nk rows)
    and `cells` (_b, _k, _s segment, _c clicks, _n rows) for rows with a key and a label.
    Label sums are exact in any order (0/1 labels, or weights of few bits), so merged counts
    equal counts of the concatenated rows.
    """

    rows: int
    values: Mapping[str, pl.DataFrame]
    segments: pl.DataFrame
    lift_key: str = ""
    keys: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_KEYS))
    cells: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_CELLS))

    def merge(self, other: SpecCounts) -> SpecCounts:
        """The counts of both parts together."""
        if self.lift_key != other.lift_key:
            raise ValueError(
                f"cannot merge counts for lift_key {self.lift_key!r} with {other.lift_key!r}"
            )
        if set(self.values) != set(other.values):
            raise ValueError("cannot merge counts of different category sources")
        return SpecCounts(
            rows=self.rows + other.rows,
            values={s: _add(self.values[s], other.values[s], ["_v"], ["n"]) for s in self.values},
            segments=_add(self.segments, other.segments, ["_v"], ["n"]),
            lift_key=self.lift_key,
            keys=_add(self.keys, other.keys, ["_b", "_k"], ["_ck", "_nk"]),
            cells=_add(self.cells, other.cells, ["_b", "_k", "_s"], ["_c", "_n"]),
        )

    @property
    def blocks(self) -> int:
        """1 + the highest block counted (0 without lift counts)."""
        if self.keys.height == 0:
            return 0
        return int(self.keys.get_column("_b").max()) + 1  # type: ignore[arg-type]


def _add(a: pl.DataFrame, b: pl.DataFrame, on: list[str], values: list[str]) -> pl.DataFrame:
    return pl.concat([a, b]).group_by(on).agg(pl.col(values).sum())


def count_batch(
    frame: pl.DataFrame,
    *,
    label: str | None = None,
    lift_key: str = "",
    blocks: int | np.ndarray = 0,
) -> SpecCounts:
    """Count one part of the training window. `blocks` is each row's out-of-fold block (one
    int for the whole part, or an array with one per row; see the module docstring)."""
    if lift_key and lift_key not in CATEGORY_SOURCES:
        raise ValueError(f"lift_key: {lift_key!r} is not a category source")
    rows = with_derived(frame).lazy()
    queries = [_value_counts(rows.select(pl.col(s).alias("_v"))) for s in CATEGORY_SOURCES]
    queries.append(_value_counts(rows.select(pl.col("user_segments").explode().alias("_v"))))
    use_lifts = bool(lift_key) and label is not None
    if use_lifts:
        queries.extend(_lift_counts(rows, frame.height, lift_key, str(label), blocks))
    out = pl.collect_all(queries)
    n = len(CATEGORY_SOURCES)
    return SpecCounts(
        rows=frame.height,
        values=dict(zip(CATEGORY_SOURCES, out[:n], strict=True)),
        segments=out[n],
        **({"lift_key": lift_key, "keys": out[n + 1], "cells": out[n + 2]} if use_lifts else {}),
    )


def _lift_counts(
    rows: pl.LazyFrame, height: int, key: str, label: str, blocks: int | np.ndarray
) -> list[pl.LazyFrame]:
    if isinstance(blocks, int | np.integer):
        block: pl.Expr | pl.Series = pl.lit(int(blocks), dtype=pl.Int32)
    else:
        if len(blocks) != height:
            raise ValueError(f"blocks has {len(blocks)} entries, the frame {height} rows")
        block = pl.Series(np.asarray(blocks), dtype=pl.Int32)
    keys, cells = _counts(_lift_rows(rows.with_columns(_b=block), key, label, "_b"), "_b")
    return [
        keys.select(pl.col(c).cast(t) for c, t in _KEYS.items()),
        cells.select(pl.col(c).cast(t) for c, t in _CELLS.items()),
    ]


def _value_counts(values: pl.LazyFrame) -> pl.LazyFrame:
    return (
        values.select(pl.col("_v").cast(pl.String))
        .drop_nulls()
        .group_by("_v")
        .agg(pl.len().cast(_N).alias("n"))
    )


def _vocab(counts: pl.DataFrame, min_count: int, max_size: int) -> list[str]:
    """The values seen at least `min_count` times, most frequent first (ties by value, so the
    codes are reproducible), at most `max_size` of them."""
    top = (
        counts.filter(pl.col("n") >= min_count)
        .sort(["n", "_v"], descending=[True, False])
        .head(max_size)
    )
    return top.get_column("_v").to_list()


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


def lifts_from_counts(counts: SpecCounts, prior: float) -> tuple[LiftCell, ...]:
    """The lift cells learned on every counted row (all blocks)."""
    _check_prior(prior)
    keys = counts.keys.lazy().group_by("_k").agg(pl.col("_ck", "_nk").sum())
    cells = counts.cells.lazy().group_by("_k", "_s").agg(pl.col("_c", "_n").sum())
    return _cells(keys, cells, prior)


def fold_lifts_from_counts(
    counts: SpecCounts, prior: float, folds: int
) -> list[tuple[LiftCell, ...]]:
    """For each block b < `folds`, the lift cells learned on all the other blocks.

    The block's counts are subtracted from the totals instead of refitting on each complement:
    one count of the window instead of one per block."""
    _check_prior(prior)
    key_total = counts.keys.group_by("_k").agg(pl.col("_ck", "_nk").sum())
    cell_total = counts.cells.group_by("_k", "_s").agg(pl.col("_c", "_n").sum())
    out = []
    for b in range(folds):
        in_block = pl.col("_b") == b
        keys = _minus(key_total, counts.keys.filter(in_block), ["_k"], ["_ck", "_nk"])
        cells = _minus(cell_total, counts.cells.filter(in_block), ["_k", "_s"], ["_c", "_n"])
        out.append(_cells(keys, cells, prior))
    return out


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


def fold_bounds(n: int, folds: int) -> list[int]:
    """Row bounds of the out-of-fold blocks over `n` training rows (module docstring)."""
    return np.linspace(0, n, folds + 1).astype(int).tolist()


def row_blocks(offset: int, length: int, bounds: Sequence[int]) -> np.ndarray:
    """The block of training rows offset .. offset + length - 1."""
    return blocks_of(np.arange(offset, offset + length), bounds)


def blocks_of(rows: np.ndarray, bounds: Sequence[int]) -> np.ndarray:
    """The block of each training row (its position in the training window)."""
    return (np.searchsorted(np.asarray(bounds), rows, side="right") - 1).astype(np.int32)


def fold_lifts(
    train: pl.DataFrame, key: str, label: str, prior: float, bounds: Sequence[int]
) -> list[tuple[LiftCell, ...]]:
    """For each block [bounds[i], bounds[i+1]) of rows, `fit_lifts` on all the other rows."""
    _check_prior(prior)
    n = int(bounds[-1]) - int(bounds[0])
    if n != train.height:
        raise ValueError(f"bounds cover {n} rows, the frame has {train.height}")
    blocks = row_blocks(int(bounds[0]), n, bounds)
    keys, cells = pl.collect_all(_lift_counts(train.lazy(), n, key, label, blocks))
    counts = SpecCounts(0, {}, pl.DataFrame(schema=_VALUE), key, keys, cells)
    return fold_lifts_from_counts(counts, prior, len(bounds) - 1)


def _minus(
    total: pl.DataFrame, part: pl.DataFrame, on: list[str], values: list[str]
) -> pl.LazyFrame:
    """total - part per group (groups missing from part subtract nothing)."""
    joined = total.lazy().join(part.lazy().select(*on, *values), on=on, how="left", suffix="_b")
    return joined.select(
        *on, *[(pl.col(v) - pl.col(f"{v}_b").fill_null(0)).alias(v) for v in values]
    )


def spec_from_counts(
    counts: SpecCounts,
    *,
    min_count: int = 20,
    max_vocab: int = 5000,
    max_segments: int = 64,
    lift_key: str = "",
    lift_prior: float = 200.0,
) -> FeatureSpec:
    """The spec learned from the counts of a whole training window (see `fit_spec`)."""
    if counts.rows == 0:
        raise ValueError("cannot fit a feature spec on an empty training window")
    feats: list[Feature] = [
        Feature(src, "category", src, tuple(_vocab(counts.values[src], min_count, max_vocab)))
        for src in CATEGORY_SOURCES
    ]
    feats.extend(Feature(src, "numeric", src) for src in NUMERIC_SOURCES)
    feats.append(Feature("hour", "hour", "event_time"))
    feats.append(Feature("weekday", "weekday", "event_time"))
    segs = _vocab(counts.segments, min_count, max_segments)
    feats.extend(Feature(f"seg_{s}", "segment", "user_segments", (s,)) for s in segs)
    params: dict[str, Any] = {
        "min_count": min_count, "max_vocab": max_vocab, "max_segments": max_segments,
    }  # fmt: skip
    if lift_key and counts.lift_key:
        if lift_key != counts.lift_key:
            raise ValueError(f"lift_key: {lift_key!r}, but {counts.lift_key!r} was counted")
        lifts = lifts_from_counts(counts, lift_prior)
        feats.append(Feature(f"seglift_{lift_key}", "segment_lift", lift_key, (), lifts))
        params |= {"lift_key": lift_key, "lift_prior": lift_prior}
    return FeatureSpec(features=tuple(feats), params=params)


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
    key = lift_key if label is not None else ""
    counts = count_batch(train, label=label, lift_key=key)
    return spec_from_counts(
        counts,
        min_count=min_count,
        max_vocab=max_vocab,
        max_segments=max_segments,
        lift_key=key,
        lift_prior=lift_prior,
    )


def lift_feature(spec: FeatureSpec) -> int | None:
    """Index of the spec's segment-lift column (None without one)."""
    return next((i for i, f in enumerate(spec.features) if f.kind == "segment_lift"), None)


def oof_lift_given(
    batch: pl.DataFrame,
    spec: FeatureSpec,
    tables: Sequence[tuple[LiftCell, ...]],
    blocks: np.ndarray,
) -> dict[int, np.ndarray]:
    """`encode_matrix(batch, spec, given=...)`'s out-of-fold lift column for a part of the
    training window: each row's lift from the table of its block (`tables[b]` learned on the
    other blocks, `fold_lifts_from_counts`). Empty when the spec has no lift column."""
    i = lift_feature(spec)
    if i is None:
        return {}
    f = spec.features[i]
    src = with_derived(batch)
    out = np.empty(batch.height, dtype=np.float64)
    for b in np.unique(blocks):
        rows = np.flatnonzero(blocks == b)
        part = src[rows] if rows.size < batch.height else src
        out[rows] = lift_column(part, Feature(f.name, f.kind, f.source, (), tables[int(b)]))
    return {i: out}


def out_of_fold_lifts(
    train: pl.DataFrame, spec: FeatureSpec, label: str, folds: int = 5
) -> dict[int, np.ndarray]:
    """Column index -> the lift column for the training rows, each time block encoded with
    lifts fitted on the other blocks: a row never sees its own label (which the in-sample lift
    would leak, worst in the small cells)."""
    i = lift_feature(spec)
    if i is None:
        return {}
    prior = float(spec.params.get("lift_prior", 200.0))
    bounds = fold_bounds(train.height, folds)
    tables = fold_lifts(train, spec.features[i].source, label, prior, bounds)
    return oof_lift_given(train, spec, tables, row_blocks(0, train.height, bounds))


__all__ = [
    "SpecCounts",
    "blocks_of",
    "count_batch",
    "fit_spec",
    "fold_bounds",
    "fold_lifts_from_counts",
    "oof_lift_given",
    "row_blocks",
    "spec_from_counts",
]
