"""The training window as LightGBM reads it: encoded batch by batch, never as one matrix.

LightGBM keeps only its binned Dataset (about a byte per feature per row, less for sparse
segment flags); the float64 matrix of all training rows (8 bytes per feature per row) is what
made training fall over near 12M rows. `lightgbm.Sequence` is LightGBM's public way to build
the Dataset from parts: it first reads the rows it samples for the bin bounds (the same sample
as from a matrix: `LGBM_SampleIndices` with the same seed), then each part in order. Each part
here is one batch of the log, encoded when LightGBM asks for it by `features.batch`, the same
transform as for a frame in memory, with the out-of-fold lifts of its blocks. One encoded
batch is alive at a time.

One difference from a Dataset built from a matrix, LightGBM's own: building from a Sequence it
pre-filters features (`feature_pre_filter`: a feature that cannot split is left out) with the
default min_data_in_leaf (20), not the configured one (`Dataset.get_params` does not pass
min_data_in_leaf on), so segment flags too rare to split under bidopt's 500 stay in the
Dataset instead of being dropped. They still never split; they only take part in
feature_fraction's draws, so the forests differ slightly. At min_data_in_leaf 20 the two
Datasets, and the forests, are identical (tests/training/test_windows.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np

from features.batch import encode_matrix
from features.spec import FeatureSpec
from features.spec_fit import LiftCell, oof_lift_given, row_blocks
from training.batch_fit import TrainRows


@dataclass
class _Cache:
    """The one encoded batch kept (LightGBM asks for rows of a batch in order)."""

    index: int = -1
    matrix: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))


class EncodedBatch(lgb.Sequence):
    """Training rows of one log batch, encoded on demand."""

    def __init__(self, index: int, rows: int, encode: Callable[[int], np.ndarray], cache: _Cache):
        self.index = index
        self.rows = rows
        self.batch_size = rows  # LightGBM pushes each batch in one piece
        self._encode = encode
        self._cache = cache

    def _matrix(self) -> np.ndarray:
        if self._cache.index != self.index:
            self._cache.matrix = np.empty((0, 0))  # free the previous batch first
            x = self._encode(self.index)
            if x.shape[0] != self.rows:
                raise ValueError(f"batch {self.index}: {x.shape[0]} rows, expected {self.rows}")
            self._cache.index, self._cache.matrix = self.index, x
        return self._cache.matrix

    def __getitem__(self, idx: int | slice) -> np.ndarray:  # type: ignore[override]
        return self._matrix()[idx]

    def __len__(self) -> int:
        return self.rows


def encoded_batches(
    windows: TrainRows,
    spec: FeatureSpec,
    tables: list[tuple[LiftCell, ...]],
    bounds: list[int],
) -> list[EncodedBatch]:
    """One Sequence per log batch holding training rows."""
    offsets = np.concatenate([[0], np.cumsum(windows.train_per_batch)]).astype(int)
    cache = _Cache()

    def encode(i: int) -> np.ndarray:
        rows = windows.train_batch(i)
        given = oof_lift_given(rows, spec, tables, row_blocks(int(offsets[i]), rows.height, bounds))
        return encode_matrix(rows, spec, given=given)

    return [EncodedBatch(i, n, encode, cache) for i, n in enumerate(windows.train_per_batch) if n]


def release(batches: list[EncodedBatch]) -> None:
    """Drop the cached encoded batch once the Dataset is built."""
    if batches:
        batches[0]._cache.matrix = np.empty((0, 0))
        batches[0]._cache.index = -1


__all__ = ["EncodedBatch", "encoded_batches", "release"]
