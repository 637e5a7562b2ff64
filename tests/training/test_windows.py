"""pCTR's windows cut from batches, and the model fitted from batches: the same as from the
frame in memory (the in-memory split, the float64 matrix, `lgb.Dataset` on it)."""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from features.batch import encode_matrix
from features.logset import FrameBatches
from features.spec_fit import fit_spec, out_of_fold_lifts
from features.synth import generate
from training.batch_fit import FrameTrain, count_rows, spec_of
from training.config import load_config
from training.fit import booster_params, fit_booster
from training.pipeline import labels, split_for, windows_for
from training.splits import SplitError
from training.trainset import BatchDataset, encoded_batches, release, sampled_rows
from training.windows import ctr_windows


@pytest.fixture(scope="module")
def log() -> pl.DataFrame:
    return generate(12_000, seed=13)


def test_windows_from_batches_are_the_in_memory_split(log: pl.DataFrame) -> None:
    cfg = load_config("ctr", overrides=["split.max_valid_rows=1000", "split.max_test_rows=0"])
    split, info = split_for(log, cfg)
    seen: list[tuple[int, pl.DataFrame]] = []
    w = ctr_windows(
        FrameBatches(log, batch_rows=2500),
        max_valid_rows=1000,
        consumer=lambda n: lambda offset, rows: seen.append((offset, rows)),
    )
    assert (w.valid_start, w.test_start) == (split.valid_start, split.test_start)
    assert w.test.equals(split.test)
    k = math.ceil(split.valid.height / 1000)
    assert w.valid.equals(split.valid.gather_every(k))  # thinned as fit_bundle thinned it
    assert pl.concat([rows for _, rows in seen]).equals(split.train)
    offsets = np.cumsum([0, *w.train_per_batch[:-1]])
    assert [o for o, _ in seen] == [o for o, n in zip(offsets, w.train_per_batch, strict=True) if n]
    assert w.train_per_batch[-1] == 0  # the newest batch is all validation and test
    assert pl.concat([w.train_batch(i) for i in range(len(w.train_per_batch))]).equals(split.train)
    for key, value in info.items():
        assert w.info[key] == value, key
    capped = ctr_windows(FrameBatches(log, batch_rows=2500), max_test_rows=500)
    assert capped.test.height == math.ceil(split.test.height / math.ceil(split.test.height / 500))
    assert capped.test.equals(
        split.test.with_row_index("_i")
        .sort("event_time", maintain_order=True)
        .gather_every(math.ceil(split.test.height / 500))
        .sort("_i")
        .drop("_i")
    )
    with pytest.raises(SplitError, match="need at least 3 shown impressions"):
        ctr_windows(FrameBatches(log[:2]))


def test_model_from_batches_is_the_model_from_the_matrix(log: pl.DataFrame) -> None:
    """LightGBM builds the same Dataset from the encoded batches (lightgbm.Sequence) as from
    the float64 matrix of the whole training window: the same forest, tree for tree.

    At LightGBM's default min_data_in_leaf (20): its Sequence path pre-filters features with
    that default whatever the setting (`Dataset.get_params` drops min_data_in_leaf), so with
    bidopt's 500 the two paths keep different unsplittable rare features (training.trainset)."""
    overrides = ["num_boost_round=10", "early_stopping_rounds=0", "min_data_in_leaf=20"]
    cfg = load_config("ctr", overrides=overrides)
    split, _ = split_for(log, cfg)
    spec = fit_spec(split.train, label="label", **cfg.section("spec"))
    x = encode_matrix(split.train, spec, given=out_of_fold_lifts(split.train, spec, "label"))
    x_valid, y_valid = encode_matrix(split.valid, spec), labels(split.valid)
    matrix = fit_booster(x, labels(split.train), x_valid, y_valid, spec, cfg.lightgbm)
    rows = FrameTrain(split.train, batch_rows=1500)
    counter = count_rows(rows, cfg.section("spec"))
    fitted = spec_of(counter)
    assert fitted.spec == spec
    parts = encoded_batches(rows, spec, fitted.tables, fitted.bounds)
    assert len(parts) > 3
    np.testing.assert_array_equal(np.concatenate([p[0 : len(p)] for p in parts]), x)
    release(parts)
    built: list[bool] = []
    batches = fit_booster(
        parts, counter.y(), x_valid, y_valid, spec, cfg.lightgbm, on_built=lambda: built.append(1)
    )
    assert built == [1]
    assert batches.booster.model_to_string() == matrix.booster.model_to_string()
    np.testing.assert_array_equal(batches.valid_pred, matrix.valid_pred)
    # a bin sample smaller than the window: BatchDataset reads the rows LightGBM sampled batch
    # by batch, and builds the Dataset LightGBM's own row-by-row Sequence reader builds
    indices = np.array([0, 1, 1499, 1500, 1501, 4000, len(x) - 1])
    np.testing.assert_array_equal(sampled_rows(parts, indices), x[indices])
    params = {**booster_params(cfg.lightgbm), "bin_construct_sample_cnt": 1500, "max_bin": 15}
    kw = {"feature_name": spec.names, "categorical_feature": spec.categorical, "params": params}
    forests = []
    for dataset in (lgb.Dataset, BatchDataset):
        parts = encoded_batches(rows, spec, fitted.tables, fitted.bounds)
        train_set = dataset(list(parts), label=counter.y(), **kw)
        forests.append(lgb.train(params, train_set, num_boost_round=10).model_to_string())
    assert forests[0] == forests[1]


def test_cvr_windows_gather_the_clicks_against_the_whole_logs_cutoff(log: pl.DataFrame) -> None:
    cfg = load_config("cvr")
    w = windows_for(FrameBatches(log, batch_rows=2000), cfg)
    assert w.clicks is not None and w.clicks.height == int(log["click"].fill_null(0).sum())
    assert w.cutoff == log["event_time"].max()
    split, info = split_for(log, cfg)
    assert w.split.test.equals(split.test) and w.info == info
