"""FeatureSpec: what the model sees, saved as JSON; the contract between training and serving.

The spec names every input column of the model, in order, with what was learned on the training
window (vocabularies, segment list, segment lifts). This module is only that contract and its
JSON: serving reads a spec with it and never imports polars. Learning a spec from logs is
`features.spec_fit` (polars).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal

Kind = Literal["category", "numeric", "hour", "weekday", "segment", "segment_lift"]
# Lifts are multiples of this (a power of two): a sum of a few of them is exact in float64 in
# any order, so the batch (polars) and online (Python) sums are bit-identical.
LIFT_QUANTUM: Final = 1.0 / 4096
SPEC_VERSION: Final = 1
LiftCell = tuple[str, str, float]  # (key, segment, lift)

CATEGORY_SOURCES: Final = (
    "channel",
    "exchange",
    "publisher",
    "placement_id",
    "slot_size",  # derived from slot_width x slot_height
    "slot_visibility",
    "slot_format",
    "device_type",
    "os",
    "browser",
    "country",
    "region",
    "city",
    "advertiser_id",
    "campaign_id",
    "creative_id",
    "auction_type",
)
NUMERIC_SOURCES: Final = (
    "floor_price",
    "user_imps_24h",
    "user_clicks_24h",
    "user_imps_7d",
    "user_clicks_7d",
    "user_secs_since_last_imp",
)


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Kind
    source: str
    vocab: tuple[str, ...] = ()
    # segment_lift: (key, segment, ln rate ratio) cells learned on the training window
    lifts: tuple[LiftCell, ...] = ()

    def index(self) -> dict[str, int]:
        """Vocabulary value -> dense code; code 0 is the unseen bucket."""
        return {v: i + 1 for i, v in enumerate(self.vocab)}

    def lift_table(self) -> dict[str, dict[str, float]]:
        """key -> segment -> lift, for the online encoder."""
        table: dict[str, dict[str, float]] = {}
        for key, seg, lift in self.lifts:
            table.setdefault(key, {})[seg] = lift
        return table


@dataclass(frozen=True)
class FeatureSpec:
    features: tuple[Feature, ...]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "category"]

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": SPEC_VERSION,
                "params": self.params,
                "features": [
                    {"name": f.name, "kind": f.kind, "source": f.source, "vocab": list(f.vocab)}
                    | ({"lifts": [list(c) for c in f.lifts]} if f.lifts else {})
                    for f in self.features
                ],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        data = json.loads(text)
        if data.get("version") != SPEC_VERSION:
            raise ValueError(f"feature spec version {data.get('version')!r} is not {SPEC_VERSION}")
        feats = tuple(
            Feature(
                f["name"],
                f["kind"],
                f["source"],
                tuple(f.get("vocab", ())),
                tuple((str(k), str(s), float(v)) for k, s, v in f.get("lifts", ())),
            )
            for f in data["features"]
        )
        return cls(features=feats, params=data.get("params", {}))
