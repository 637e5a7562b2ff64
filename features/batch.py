"""The feature spec applied to a polars DataFrame: training, evaluation and replay.

Every expression here mirrors one function of `transforms.py`; the parity test holds them to it.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from features.spec import Feature, FeatureSpec
from features.transforms import MISSING, UNSEEN_CODE


def with_derived(df: pl.DataFrame) -> pl.DataFrame:
    """Add the derived source columns (slot_size) that the spec refers to."""
    size = pl.format("{}x{}", pl.col("slot_width"), pl.col("slot_height"))
    ok = pl.col("slot_width").is_not_null() & pl.col("slot_height").is_not_null()
    return df.with_columns(slot_size=pl.when(ok).then(size).otherwise(None))


def _expr(f: Feature) -> pl.Expr:
    col = pl.col(f.source)
    if f.kind == "category":
        codes = col.cast(pl.String).replace_strict(
            f.index(), default=UNSEEN_CODE, return_dtype=pl.Float64
        )
        out = pl.when(col.is_null()).then(MISSING).otherwise(codes)
    elif f.kind == "numeric":
        out = col.cast(pl.Float64).fill_null(MISSING)
    elif f.kind == "hour":
        out = col.dt.convert_time_zone("UTC").dt.hour().cast(pl.Float64).fill_null(MISSING)
    elif f.kind == "weekday":
        # polars counts Monday as 1; transforms.weekday_of counts it as 0 (datetime.weekday)
        wd = col.dt.convert_time_zone("UTC").dt.weekday().cast(pl.Float64) - 1.0
        out = wd.fill_null(MISSING)
    elif f.kind == "segment":
        out = col.list.contains(f.vocab[0]).cast(pl.Float64).fill_null(0.0)
    else:  # pragma: no cover - the spec's Literal makes this unreachable
        raise ValueError(f"unknown feature kind {f.kind!r} for {f.name}")
    return out.alias(f.name)


def encode_frame(df: pl.DataFrame, spec: FeatureSpec) -> pl.DataFrame:
    """One float64 column per spec feature, in spec order."""
    missing = {"slot_width", "slot_height"} - set(df.columns)
    if missing:
        raise ValueError(f"cannot encode: missing columns {sorted(missing)}")
    src = with_derived(df)
    absent = sorted({f.source for f in spec.features} - set(src.columns))
    if absent:
        raise ValueError(f"cannot encode: missing columns {absent}")
    return src.select([_expr(f) for f in spec.features])


def encode_matrix(df: pl.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """C-contiguous float64 matrix, the layout LightGBM reads without a copy."""
    # polars writes row-major directly: several times faster than transposing its column layout
    return np.ascontiguousarray(encode_frame(df, spec).to_numpy(order="c"), dtype=np.float64)
