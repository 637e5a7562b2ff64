"""Request dicts <-> canonical log frames, for the pyfunc model and the bundle's input example.

Kept apart from pyfunc_model (which imports mlflow on import) so that training can build input
examples without paying for MLflow, and so both directions live side by side.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import polars as pl

from features.schema import REQUEST_FIELDS, SCHEMA, conform


def _missing(value: object) -> bool:
    """None, NaN and pandas' NaT: what a DataFrame cell holds for an absent field."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ == "NaTType"


def _time(value: object) -> datetime:
    if isinstance(value, str):
        ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    elif isinstance(value, datetime):
        ts = value
    elif hasattr(value, "to_pydatetime"):
        ts = value.to_pydatetime()  # pandas / numpy timestamps
    else:
        raise ValueError(f"event_time: cannot read {value!r} as a timestamp")
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _value(name: str, value: object) -> Any:
    if name == "user_segments":
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(value, str):
            return [value]
        return [str(s) for s in value]  # type: ignore[attr-defined]
    if _missing(value):
        return None
    if name == "event_time":
        return _time(value)
    dtype = SCHEMA[name]
    if dtype.is_integer():
        return int(value)  # type: ignore[call-overload]
    if dtype.is_float():
        return float(value)  # type: ignore[arg-type]
    return str(value)


def frame_from_records(records: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Request dicts -> canonical frame, so pyfunc scoring reuses the batch encoder exactly."""
    rows = list(records)
    cols: dict[str, list[Any]] = {name: [] for name in REQUEST_FIELDS}
    for i, row in enumerate(rows):
        for name in REQUEST_FIELDS:
            value = row.get(name)
            try:
                cols[name].append(_value(name, value))
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"row {i}: field {name}: cannot read {value!r}") from None
    schema = {name: SCHEMA[name] for name in REQUEST_FIELDS}
    df = pl.DataFrame(cols, schema=schema)
    return conform(df.with_columns(pl.lit("-").alias("impression_id"), pl.lit(0).alias("click")))


def request_examples(df: pl.DataFrame, n: int = 5) -> list[dict[str, Any]]:
    """The first `n` rows as JSON-ready request dicts (event_time as ISO-8601 text)."""
    out = []
    for row in df.head(n).select(REQUEST_FIELDS).iter_rows(named=True):
        ts = row["event_time"]
        row["event_time"] = ts.isoformat() if ts is not None else None
        out.append(row)
    return out
