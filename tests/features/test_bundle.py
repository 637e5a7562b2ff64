from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from features.batch import encode_matrix
from features.bundle import MODEL_FILE, BundleError, ModelBundle
from features.calibrator import Calibrator
from features.online import OnlineEncoder
from features.schema import CHANNELS, SCHEMA, conform
from features.spec import fit_spec


def _logs(n: int = 3000) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    channel = rng.integers(0, 6, n)
    click = (rng.random(n) < 0.02 + 0.05 * (channel == 5)).astype(np.int8)
    data = {
        "event_time": [t0 + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 86400, n))],
        "impression_id": [f"i{i}" for i in range(n)],
        "channel": [CHANNELS[c] for c in channel],
        "publisher": [f"p{k}" for k in rng.integers(0, 40, n)],
        "slot_width": np.full(n, 300, dtype=np.int32),
        "slot_height": np.full(n, 250, dtype=np.int32),
        "floor_price": rng.gamma(2, 5, n),
        "click": click,
    }
    return conform(pl.DataFrame(data, schema_overrides={k: SCHEMA[k] for k in data}))


def _bundle() -> tuple[ModelBundle, pl.DataFrame]:
    df = _logs()
    spec = fit_spec(df, min_count=5)
    x = encode_matrix(df, spec)
    cats = [spec.names.index(c) for c in spec.categorical]
    ds = lgb.Dataset(x, df["click"].to_numpy(), categorical_feature=cats, feature_name=spec.names)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7}, ds, 20)
    raw = booster.predict(x)
    cal = Calibrator("platt").fit(raw, df["click"].to_numpy())
    return ModelBundle(booster, spec, cal, {"name": "test"}), df


def test_save_load_round_trip_predicts_the_same(tmp_path: Path) -> None:
    bundle, df = _bundle()
    loaded = ModelBundle.load(bundle.save(tmp_path / "b"))
    np.testing.assert_array_equal(bundle.predict_frame(df), loaded.predict_frame(df))
    assert loaded.meta == {"name": "test"}
    # the online encoder feeds the same model to the same answer
    enc = OnlineEncoder(loaded.spec)
    row = df.row(7, named=True)
    one = loaded.predict_matrix(enc.encode(row).reshape(1, -1))
    assert one[0] == pytest.approx(loaded.predict_frame(df[7:8])[0], abs=1e-15)


def test_load_names_the_broken_file(tmp_path: Path) -> None:
    bundle, _ = _bundle()
    d = bundle.save(tmp_path / "b")
    (d / MODEL_FILE).write_text("not a model")
    with pytest.raises(BundleError, match=MODEL_FILE):
        ModelBundle.load(d)
    (d / MODEL_FILE).unlink()
    with pytest.raises(BundleError, match="cannot read"):
        ModelBundle.load(d)
