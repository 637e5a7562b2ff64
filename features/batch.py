"""The feature spec applied to a polars DataFrame: training, evaluation and replay.

Every expression here mirrors one function of `transforms.py`; the parity test holds them to it.
"""

from __future__ import annotations

from collections.abc import Mapping

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
    else:  # segments and lifts are filled by encode_matrix (an explode, a join)
        raise ValueError(f"feature kind {f.kind!r} of {f.name} is not a column expression")
    return out.alias(f.name)


def _source(df: pl.DataFrame, spec: FeatureSpec) -> pl.DataFrame:
    missing = {"slot_width", "slot_height"} - set(df.columns)
    if missing:
        raise ValueError(f"cannot encode: missing columns {sorted(missing)}")
    src = with_derived(df)
    absent = sorted({f.source for f in spec.features} - set(src.columns))
    if absent:
        raise ValueError(f"cannot encode: missing columns {absent}")
    return src


def lift_column(df: pl.DataFrame, f: Feature) -> np.ndarray:
    """Summed lift of each row's segments under its key (transforms.segment_lift): NaN without
    a key, 0 for an unknown key, segment or an empty list. Lifts are multiples of a power of
    two, so this sum equals the online one bit for bit whatever the order: the matched cells
    are summed per row with a bincount, no ordered group-by."""
    table = pl.DataFrame(
        {
            "_k": [k for k, _, _ in f.lifts],
            "_s": [s for _, s, _ in f.lifts],
            "_v": [v for _, _, v in f.lifts],
        },
        schema={"_k": pl.String, "_s": pl.String, "_v": pl.Float64},
    )
    keys = df.get_column(f.source).cast(pl.String)
    matched = (
        pl.DataFrame({"_k": keys, "_s": df.get_column("user_segments").cast(pl.List(pl.String))})
        .with_row_index("_r")
        .explode("_s")
        .join(table, on=["_k", "_s"], how="inner")
    )
    rows = matched.get_column("_r").to_numpy()
    weights = matched.get_column("_v").to_numpy()
    # (float64 even with no match at all: an empty bincount comes back as integers)
    out = np.bincount(rows, weights=weights, minlength=df.height).astype(np.float64, copy=False)
    out[keys.is_null().to_numpy()] = MISSING
    return out


def _set_segments(x: np.ndarray, df: pl.DataFrame, columns: dict[str, int]) -> None:
    """x[row, columns[segment]] = 1 for each listed segment of each row, 0 elsewhere.

    One explode of the lists instead of one `list.contains` scan per segment feature (50 of
    them by default: most of the batch encoding time before)."""
    x[:, _span(list(columns.values()))] = 0.0
    pairs = (
        df.select(pl.col("user_segments").cast(pl.List(pl.String)).alias("_s"))
        .with_row_index("_r")
        .explode("_s")
        .select(
            "_r",
            pl.col("_s").replace_strict(columns, default=None, return_dtype=pl.Int64).alias("_c"),
        )
        .drop_nulls("_c")
    )
    x[pairs.get_column("_r").to_numpy(), pairs.get_column("_c").to_numpy()] = 1.0


def _span(columns: list[int]) -> slice | list[int]:
    """A slice when the columns are consecutive (a block copy, not a fancy-indexed one)."""
    if columns and columns == list(range(columns[0], columns[-1] + 1)):
        return slice(columns[0], columns[-1] + 1)
    return columns


def encode_matrix(
    df: pl.DataFrame, spec: FeatureSpec, *, given: Mapping[int, np.ndarray] | None = None
) -> np.ndarray:
    """C-contiguous float64 matrix in spec order, the layout LightGBM reads without a copy.

    `given` supplies whole columns by index (training's out-of-fold segment lifts), which are
    then not computed here."""
    src = _source(df, spec)
    given = given or {}
    x = np.empty((df.height, len(spec.features)), dtype=np.float64)
    plain = [
        i
        for i, f in enumerate(spec.features)
        if f.kind not in ("segment", "segment_lift") and i not in given
    ]
    if plain:
        # polars writes row-major directly: several times faster than transposing its columns
        frame = src.select([_expr(spec.features[i]) for i in plain])
        x[:, _span(plain)] = frame.to_numpy(order="c")
    segments = {
        f.vocab[0]: i for i, f in enumerate(spec.features) if f.kind == "segment" and i not in given
    }
    if segments:
        _set_segments(x, src, segments)
    for i, f in enumerate(spec.features):
        if i in given:
            x[:, i] = given[i]
        elif f.kind == "segment_lift":
            x[:, i] = lift_column(src, f)
    return x
