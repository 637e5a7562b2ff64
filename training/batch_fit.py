"""Spec and LightGBM fitted on a training window read batch by batch (out of core).

The training window is never one frame or one matrix: its batches are counted once for the
feature spec (`features.spec_fit.count_batch`, merged), their labels kept (one byte a row),
and LightGBM's Dataset is built from the same batches encoded on demand (`training.trainset`).
The validation rows are in memory (bounded by `split.max_valid_rows`). A frame in memory is
fitted the same way (`FrameTrain`), so there is one path, whatever the size.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import polars as pl

from features.logset import BATCH_ROWS
from features.spec import FeatureSpec, LiftCell
from features.spec_fit import (
    SpecCounts,
    count_batch,
    fold_bounds,
    fold_lifts_from_counts,
    row_blocks,
    spec_from_counts,
)
from training.splits import LABEL

FOLDS = 5  # out-of-fold blocks of the segment lifts, as `out_of_fold_lifts`


class TrainRows(Protocol):
    """A training window as batches of labelled rows in log order."""

    rows_train: int
    train_per_batch: list[int]

    def train_batch(self, i: int) -> pl.DataFrame: ...

    def train_batches(self) -> Iterator[tuple[int, pl.DataFrame]]: ...


@dataclass
class FrameTrain:
    """A labelled training frame in memory, as batches (zero-copy slices)."""

    frame: pl.DataFrame
    batch_rows: int = BATCH_ROWS

    @property
    def rows_train(self) -> int:
        return self.frame.height

    @property
    def train_per_batch(self) -> list[int]:
        n, b = self.frame.height, self.batch_rows
        return [min(b, n - start) for start in range(0, n, b)]

    def train_batch(self, i: int) -> pl.DataFrame:
        return self.frame.slice(i * self.batch_rows, self.batch_rows)

    def train_batches(self) -> Iterator[tuple[int, pl.DataFrame]]:
        for i, _ in enumerate(self.train_per_batch):
            yield i * self.batch_rows, self.train_batch(i)


@dataclass
class Counter:
    """Counts and labels of the training rows, fed batch by batch (`ctr_windows(on_train=)`)."""

    spec_config: Mapping[str, Any]
    rows_train: int
    counts: SpecCounts | None = None
    labels: list[np.ndarray] = field(default_factory=list)

    @property
    def lift_key(self) -> str:
        return str(self.spec_config.get("lift_key", ""))

    @property
    def bounds(self) -> list[int]:
        return fold_bounds(self.rows_train, FOLDS)

    def __call__(self, offset: int, rows: pl.DataFrame) -> None:
        blocks = row_blocks(offset, rows.height, self.bounds)
        part = count_batch(rows, label=LABEL, lift_key=self.lift_key, blocks=blocks)
        self.counts = part if self.counts is None else self.counts.merge(part)
        self.labels.append(rows.get_column(LABEL).cast(pl.Int8).to_numpy())

    def y(self) -> np.ndarray:
        """The labels in training-row order, float32 (LightGBM's own label type)."""
        return np.concatenate(self.labels).astype(np.float32)


def count_rows(rows: TrainRows, spec_config: Mapping[str, Any]) -> Counter:
    """One pass over the training batches (for windows not counted while they were cut)."""
    counter = Counter(spec_config, rows.rows_train)
    for offset, batch in rows.train_batches():
        counter(offset, batch)
    return counter


@dataclass(frozen=True)
class FittedSpec:
    spec: FeatureSpec
    tables: list[tuple[LiftCell, ...]]  # out-of-fold lift cells per block ([] without lifts)
    bounds: list[int]


def spec_of(counter: Counter) -> FittedSpec:
    """The spec from the merged counts, and the out-of-fold lift tables of its blocks."""
    if counter.counts is None:
        raise ValueError("cannot fit a feature spec on an empty training window")
    cfg = dict(counter.spec_config)
    spec = spec_from_counts(counter.counts, **cfg)
    tables: list[tuple[LiftCell, ...]] = []
    if any(f.kind == "segment_lift" for f in spec.features):
        tables = fold_lifts_from_counts(counter.counts, float(cfg.get("lift_prior", 200.0)), FOLDS)
    return FittedSpec(spec, tables, counter.bounds)


__all__ = ["FOLDS", "Counter", "FittedSpec", "FrameTrain", "TrainRows", "count_rows", "spec_of"]
