"""THE feature definitions, as pure functions on scalars.

`batch.py` (polars, training) and `online.py` (one request, serving) both follow these
definitions; `tests/features/test_parity.py` proves they give identical vectors. Numeric features
stay untransformed on purpose: trees are invariant to monotone transforms, and skipping `log1p`
keeps batch and online bit-identical (polars and libm need not agree on the last ulp).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

MISSING = math.nan
UNSEEN_CODE = 0.0  # category values not in the fitted vocabulary share one bucket


def category_code(value: object, index: Mapping[str, int]) -> float:
    """Dense integer code of a category: 1.. for the vocabulary, 0 for unseen, NaN for missing."""
    if value is None:
        return MISSING
    return float(index.get(str(value), 0))


def numeric(value: object) -> float:
    """A number as float64; missing stays NaN so LightGBM routes it as missing."""
    if value is None:
        return MISSING
    return float(value)  # type: ignore[arg-type]


def as_utc(ts: datetime) -> datetime:
    """Naive timestamps are taken as UTC, the unit of every stored log."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def hour_of(ts: datetime | None) -> float:
    return MISSING if ts is None else float(as_utc(ts).hour)


def weekday_of(ts: datetime | None) -> float:
    """Monday = 0, as datetime.weekday()."""
    return MISSING if ts is None else float(as_utc(ts).weekday())


def slot_size(width: object, height: object) -> str | None:
    """`300x250`: the size is one category, since width and height only matter together."""
    if width is None or height is None:
        return None
    return f"{int(width)}x{int(height)}"  # type: ignore[call-overload]


def segment_lift(
    key: object, table: Mapping[str, Mapping[str, float]], segments: Iterable[str] | None
) -> float:
    """Summed lift of the request's segments under its key: NaN without a key, 0 for an unknown
    key or segment (the lifts are multiples of spec.LIFT_QUANTUM: exact sums in any order)."""
    if key is None:
        return MISSING
    cells = table.get(key if type(key) is str else str(key))
    total = 0.0
    if cells and segments:
        for s in segments:
            total += cells.get(s, 0.0)
    return total


def segment_flag(segments: Iterable[str] | None, segment: str) -> float:
    if segments is None:
        return 0.0
    return 1.0 if segment in segments else 0.0
