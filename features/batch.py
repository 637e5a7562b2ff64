"""The feature spec applied to a polars DataFrame: training, evaluation and replay.

Every expression here mirrors one function of `transforms.py`; the parity test holds them to it.
"""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl

from features.spec import Feature, FeatureSpec, fit_lifts
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
    elif f.kind == "segment_lift":
        out = pl.col(f"_lift_{f.name}")  # computed by _lift_column (a join, not an expression)
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
    lifts = [f for f in spec.features if f.kind == "segment_lift"]
    if lifts:
        src = src.with_columns(_lift_column(src, f).alias(f"_lift_{f.name}") for f in lifts)
    return src.select([_expr(f) for f in spec.features])


def _lift_column(df: pl.DataFrame, f: Feature) -> pl.Series:
    """Summed lift of each row's segments under its key (transforms.segment_lift): NaN without
    a key, 0 for an unknown key, segment or an empty list. Lifts are multiples of a power of
    two, so this sum equals the online one bit for bit whatever the order."""
    table = pl.DataFrame(
        {
            "_k": [k for k, _, _ in f.lifts],
            "_s": [s for _, s, _ in f.lifts],
            "_v": [v for _, _, v in f.lifts],
        },
        schema={"_k": pl.String, "_s": pl.String, "_v": pl.Float64},
    )
    rows = df.select(
        pl.col(f.source).cast(pl.String).alias("_k"),
        pl.col("user_segments").cast(pl.List(pl.String)).alias("_s"),
    ).with_row_index("_r")
    # an empty or null list explodes to one null segment, so every _r comes back, in order
    summed = (
        rows.explode("_s", empty_as_null=True, keep_nulls=True)
        .join(table, on=["_k", "_s"], how="left", maintain_order="left")
        .group_by("_r", maintain_order=True)
        .agg(pl.col("_k").first(), pl.col("_v").fill_null(0.0).sum())
    )
    return summed.select(
        pl.when(pl.col("_k").is_null()).then(MISSING).otherwise(pl.col("_v"))
    ).to_series()


def out_of_fold_lifts(
    train: pl.DataFrame, spec: FeatureSpec, label: str, folds: int = 5
) -> dict[int, np.ndarray]:
    """Column index -> the lift column for the training rows, each time block encoded with
    lifts fitted on the other blocks: a row never sees its own label (which the in-sample lift
    would leak, worst in the small cells)."""
    out: dict[int, np.ndarray] = {}
    prior = float(spec.params.get("lift_prior", 200.0))
    src = with_derived(train)
    bounds = np.linspace(0, src.height, folds + 1).astype(int)
    for i, f in enumerate(spec.features):
        if f.kind != "segment_lift":
            continue
        parts = []
        for lo, hi in itertools.pairwise(bounds.tolist()):
            rest = pl.concat([src[:lo], src[hi:]])
            fold = Feature(f.name, f.kind, f.source, (), fit_lifts(rest, f.source, label, prior))
            parts.append(_lift_column(src[lo:hi], fold).to_numpy())
        out[i] = np.concatenate(parts)
    return out


def encode_matrix(df: pl.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """C-contiguous float64 matrix, the layout LightGBM reads without a copy."""
    # polars writes row-major directly: several times faster than transposing its column layout
    return np.ascontiguousarray(encode_frame(df, spec).to_numpy(order="c"), dtype=np.float64)
