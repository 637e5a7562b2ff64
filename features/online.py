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
from features.transforms import MISSING, as_utc, segment_lift, slot_size


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
        self._lifts: list[tuple[int, str, dict[str, dict[str, float]]]] = []
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
            elif f.kind == "segment_lift":
                self._lifts.append((i, f.source, f.lift_table()))
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
        for i, src, table in self._lifts:
            row[i] = segment_lift(get(src), table, segments)
        return row

    def encode(self, req: Mapping[str, Any]) -> np.ndarray:
        return np.asarray(self.encode_list(req), dtype=np.float64)


class PairEncoder:
    """Two specs applied to one request in one pass (the pCTR and pCVR models' specs share
    their sources and differ only in vocabularies and segment lists): each field is read and
    normalised once, then looked up in each spec. Rows equal each encoder's `encode_list`
    (tests/features/test_parity.py); this halves the encoding cost of the serving hot path."""

    def __init__(self, first: OnlineEncoder, second: OnlineEncoder) -> None:
        self.widths = (first.width, second.width)
        cats: dict[str, list[tuple[int, int, dict[str, int]]]] = {}
        nums: dict[str, list[tuple[int, int]]] = {}
        segments: dict[str, list[tuple[int, int]]] = {}
        self._hour: list[tuple[int, int]] = []
        self._weekday: list[tuple[int, int]] = []
        self._lifts = [
            (k, i, src, t) for k, e in enumerate((first, second)) for i, src, t in e._lifts
        ]
        for k, enc in enumerate((first, second)):
            for i, src, index in enc._cats:
                cats.setdefault(src, []).append((k, i, index))
            for i, src in enc._nums:
                nums.setdefault(src, []).append((k, i))
            self._hour += [(k, i) for i in enc._hour]
            self._weekday += [(k, i) for i in enc._weekday]
            for seg, j in enc._segments.items():
                segments.setdefault(seg, []).append((k, j))
        self._cats = list(cats.items())
        self._nums = list(nums.items())
        self._segments = segments

    def encode_lists(self, req: Mapping[str, Any]) -> tuple[list[float], list[float]]:
        rows = ([0.0] * self.widths[0], [0.0] * self.widths[1])
        get = req.get
        size = slot_size(get("slot_width"), get("slot_height"))
        for src, targets in self._cats:
            value = size if src == "slot_size" else get(src)
            if value is None:
                for k, i, _ in targets:
                    rows[k][i] = MISSING
            else:
                key = value if type(value) is str else str(value)
                for k, i, index in targets:
                    rows[k][i] = float(index.get(key, 0))
        for src, places in self._nums:
            value = get(src)
            x = MISSING if value is None else float(value)
            for k, i in places:
                rows[k][i] = x
        if self._hour or self._weekday:
            ts: datetime | None = get("event_time")
            utc = None if ts is None else as_utc(ts)
            hour = MISSING if utc is None else float(utc.hour)
            weekday = MISSING if utc is None else float(utc.weekday())
            for k, i in self._hour:
                rows[k][i] = hour
            for k, i in self._weekday:
                rows[k][i] = weekday
        segments = get("user_segments")
        if segments:
            for s in segments:
                places = self._segments.get(s)
                if places is not None:
                    for k, j in places:
                        rows[k][j] = 1.0
        for k, i, src, table in self._lifts:
            rows[k][i] = segment_lift(get(src), table, segments)
        return rows


__all__ = ["MISSING", "OnlineEncoder", "PairEncoder"]
