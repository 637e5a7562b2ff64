"""An immutable, loaded pair of models (pCTR, pCVR): what one request is scored with.

A `Predictor` is built once per model version, smoke-tested, and then only read. A hot swap
replaces the one reference the app holds, so a request that started on the old pair finishes on
it. Scoring uses no polars or pandas: `OnlineEncoder` turns the request into a list of floats,
the LightGBM single-row fast path scores it, and `Calibrator.transform_one` calibrates it. Many
rows at once are encoded a column at a time and scored by the bundle's compiled forest
(features/forest.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Final

import numpy as np

from bidding.winrate import WinRateModel
from features.bundle import ModelBundle
from features.online import OnlineEncoder, PairEncoder
from features.transforms import category_code, segment_lift
from serving.models.fastpredict import FastPredictor
from serving.models.registry import ModelRef, VersionRefused

# From this many rows on, column-wise encoding and one call of the compiled forest beat a loop
# of single-row calls.
BATCH_MIN_ROWS: Final = 12
# Request fields that a bid changes per candidate (campaign, creative, its advertiser).
PATCHED_SOURCES: Final = ("campaign_id", "creative_id", "advertiser_id")
PARITY_TOLERANCE: Final = 1e-9


@dataclass(frozen=True)
class LoadedModel:
    """One registered model version, ready to score."""

    ref: ModelRef
    bundle: ModelBundle
    encoder: OnlineEncoder
    fast: FastPredictor
    calibrate_one: Callable[[float], float]
    loaded_at: str
    # (column, vocabulary index) of each patched source the spec has
    slots: dict[str, tuple[int, dict[str, int]]] = field(default_factory=dict)
    # (column, lift table) of each segment-lift feature keyed by a patched source
    lift_slots: dict[str, tuple[int, dict[str, dict[str, float]]]] = field(default_factory=dict)
    winrate: WinRateModel | None = None  # optional winrate.json of the bundle (CTR side)

    @classmethod
    def build(
        cls, ref: ModelRef, bundle: ModelBundle, winrate: WinRateModel | None = None
    ) -> LoadedModel:
        try:
            fast = FastPredictor(bundle.booster)
        except Exception as e:
            raise VersionRefused(f"{ref.name} v{ref.version}: {e}") from e
        slots = {
            f.source: (i, f.index())
            for i, f in enumerate(bundle.spec.features)
            if f.kind == "category" and f.source in PATCHED_SOURCES
        }
        lift_slots = {
            f.source: (i, f.lift_table())
            for i, f in enumerate(bundle.spec.features)
            if f.kind == "segment_lift" and f.source in PATCHED_SOURCES
        }
        return cls(
            ref=ref,
            bundle=bundle,
            encoder=OnlineEncoder(bundle.spec),
            fast=fast,
            calibrate_one=bundle.calibrator.transform_one,
            loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
            slots=slots,
            lift_slots=lift_slots,
            winrate=winrate,
        )

    def score_one(self, row: Sequence[float]) -> float:
        return self.calibrate_one(self.fast.predict_one(row))

    def score_matrix(self, x: np.ndarray) -> np.ndarray:
        """Many rows: the bundle's compiled forest (no per-call set-up, unlike Booster.predict)."""
        return self.bundle.predict_matrix(x)

    def patch(
        self,
        row: list[float],
        values: Mapping[str, str | None],
        segments: Sequence[str] | None = None,
    ) -> list[float]:
        """A copy of `row` with the patched sources re-encoded: cheaper than encoding the whole
        request again for every campaign x creative candidate. `segments` are the request's
        (a segment lift under the patched campaign depends on them)."""
        out = list(row)
        for source, value in values.items():
            slot = self.slots.get(source)
            if slot is not None:
                out[slot[0]] = category_code(value, slot[1])
            lift = self.lift_slots.get(source)
            if lift is not None:
                out[lift[0]] = segment_lift(value, lift[1], segments)
        return out

    def info(self) -> dict[str, Any]:
        meta = self.bundle.meta
        return {
            "name": self.ref.name,
            "alias": self.ref.alias,
            "version": self.ref.version,
            "run_id": self.ref.run_id,
            "loaded_at": self.loaded_at,
            "trained_at": str(meta["trained_at"]) if meta.get("trained_at") else None,
        }


@dataclass(frozen=True)
class Predictor:
    ctr: LoadedModel
    cvr: LoadedModel
    pair: PairEncoder | None  # both specs in one pass; None when they are identical

    @classmethod
    def build(
        cls, ctr: LoadedModel, cvr: LoadedModel, fresh: tuple[str, ...] = ("ctr", "cvr")
    ) -> Predictor:
        """The pair, smoke-checked on its `fresh` sides only: a side reused from the pair being
        served is already checked, and its single-row buffers belong to the thread serving
        requests (checking it from the reload thread raced them: wrong scores, a refusal)."""
        shared = ctr.bundle.spec.to_json() == cvr.bundle.spec.to_json()
        pair = None if shared else PairEncoder(ctr.encoder, cvr.encoder)
        predictor = cls(ctr=ctr, cvr=cvr, pair=pair)
        predictor.smoke_check(fresh)
        return predictor

    @property
    def shared_encoding(self) -> bool:
        """Both specs identical: one encoded row serves both models."""
        return self.pair is None

    @cached_property
    def versions(self) -> dict[str, dict[str, str]]:
        """Built once per pair (it is in every answer and ledger record); not to be mutated."""
        return {
            "ctr": {"name": self.ctr.ref.name, "version": self.ctr.ref.version},
            "cvr": {"name": self.cvr.ref.name, "version": self.cvr.ref.version},
        }

    def encode(self, request: Mapping[str, Any]) -> tuple[list[float], list[float]]:
        if self.pair is not None:
            return self.pair.encode_lists(request)
        row = self.ctr.encoder.encode_list(request)
        return row, row

    def score_rows(
        self, ctr_rows: list[list[float]], cvr_rows: list[list[float]]
    ) -> tuple[list[float], list[float]]:
        """Calibrated pCTR and pCVR of a few encoded rows, one at a time (the fast path)."""
        ctr, cvr = self.ctr.score_one, self.cvr.score_one
        return [ctr(r) for r in ctr_rows], [cvr(r) for r in cvr_rows]

    def score_many(self, requests: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
        """Calibrated pCTR and pCVR of many requests: encoded a column at a time into one
        matrix per model, scored by the compiled forest."""
        if self.pair is not None:
            x_ctr, x_cvr = self.pair.encode_many(requests)
        else:
            x_ctr = x_cvr = self.ctr.encoder.encode_many(requests)
        return self.ctr.score_matrix(x_ctr).tolist(), self.cvr.score_matrix(x_cvr).tolist()

    def predict(self, requests: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
        if len(requests) >= BATCH_MIN_ROWS:
            return self.score_many(requests)
        ctr_rows: list[list[float]] = []
        cvr_rows: list[list[float]] = []
        for req in requests:
            a, b = self.encode(req)
            ctr_rows.append(a)
            cvr_rows.append(b)
        return self.score_rows(ctr_rows, cvr_rows)

    def smoke_check(self, sides: tuple[str, ...] = ("ctr", "cvr")) -> None:
        """Each model of `sides` passes `smoke_check_model` (also loads the batch path's
        compiled forest before the first request needs it)."""
        for key in sides:
            model = getattr(self, key)
            smoke_check_model(model, f"{model.ref.name} v{model.ref.version}")


def smoke_check_model(model: LoadedModel, label: str) -> None:
    """Refuse a model that gives non-finite or out-of-range probabilities on its stored input
    examples, or whose single-row or batch path disagrees with Booster.predict."""
    examples = example_requests(model.bundle.meta, label)
    rows = [model.encoder.encode_list(r) for r in examples]
    matrix = np.asarray(rows, dtype=np.float64)
    fast_raw = [model.fast.predict_one(r) for r in rows]
    ref_raw = model.fast.predict_many(matrix).tolist()
    batch_raw = model.bundle.forest.predict(matrix).tolist()  # loads it, once
    for i, (a, b, c) in enumerate(zip(fast_raw, ref_raw, batch_raw, strict=True)):
        if not (
            math.isfinite(a) and abs(a - b) <= PARITY_TOLERANCE and abs(c - b) <= PARITY_TOLERANCE
        ):
            raise VersionRefused(
                f"{label}: smoke check failed on input_example[{i}]: fast path gave {a}, "
                f"batch path {c}, Booster.predict {b}"
            )
        p = model.calibrate_one(a)
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise VersionRefused(
                f"{label}: smoke check failed on input_example[{i}]: "
                f"probability {p} is not finite in [0, 1]"
            )


def example_requests(meta: Mapping[str, Any], label: str) -> list[dict[str, Any]]:
    """meta.json's input_example as request dicts (event_time parsed from ISO-8601)."""
    examples = meta.get("input_example")
    if not isinstance(examples, list) or not examples:
        raise VersionRefused(f"{label}: meta.json has no input_example to smoke-test")
    out = []
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict):
            raise VersionRefused(f"{label}: input_example[{i}] is not an object")
        req = dict(ex)
        ts = req.get("event_time")
        if isinstance(ts, str):
            try:
                req["event_time"] = datetime.fromisoformat(ts)
            except ValueError:
                raise VersionRefused(
                    f"{label}: input_example[{i}].event_time is not ISO-8601: {ts!r}"
                ) from None
        out.append(req)
    return out
