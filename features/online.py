"""The feature spec applied to one request dict: the serving hot path.

No polars here: a request is encoded with plain dict look-ups into a float64 row, in a few
microseconds. The spec is compiled once per model load into `OnlineEncoder`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from features.spec import FeatureSpec
from features.transforms import MISSING, as_utc, slot_size


class OnlineEncoder:
    """Compiled form of a FeatureSpec for single requests; immutable after construction."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.width = len(spec.features)
        self._cats: list[tuple[int, str, dict[str, int]]] = []
        self._nums: list[tuple[int, str]] = []
        self._hour: list[int] = []
        self._weekday: list[int] = []
        self._segments: dict[str, int] = {}
        for i, f in enumerate(spec.features):
            if f.kind == "category":
                self._cats.append((i, f.source, f.index()))
            elif f.kind == "numeric":
                self._nums.append((i, f.source))
            elif f.kind == "hour":
                self._hour.append(i)
            elif f.kind == "weekday":
                self._weekday.append(i)
            elif f.kind == "segment":
                self._segments[f.vocab[0]] = i
        self.column_index = {f.name: i for i, f in enumerate(spec.features)}

    def encode_list(self, req: Mapping[str, Any]) -> list[float]:
        """Encode one request; absent fields count as missing, as a null column would.

        `category_code` and `numeric` are inlined (the hot path calls them dozens of times per
        request); tests/features/test_parity.py holds this loop to those definitions."""
        row = [0.0] * self.width
        get = req.get
        size = slot_size(get("slot_width"), get("slot_height"))
        for i, src, index in self._cats:
            value = size if src == "slot_size" else get(src)
            if value is None:
                row[i] = MISSING
            else:
                row[i] = float(index.get(value if type(value) is str else str(value), 0))
        for i, src in self._nums:
            value = get(src)
            row[i] = MISSING if value is None else float(value)
        ts: datetime | None = get("event_time")
        if self._hour or self._weekday:
            utc = None if ts is None else as_utc(ts)
            for i in self._hour:
                row[i] = MISSING if utc is None else float(utc.hour)
            for i in self._weekday:
                row[i] = MISSING if utc is None else float(utc.weekday())
        segments = get("user_segments")
        if segments:
            for s in segments:
                j = self._segments.get(s)
                if j is not None:
                    row[j] = 1.0
        return row

    def encode(self, req: Mapping[str, Any]) -> np.ndarray:
        return np.asarray(self.encode_list(req), dtype=np.float64)


__all__ = ["MISSING", "OnlineEncoder"]
