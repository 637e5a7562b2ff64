"""FeatureSpec: what the model sees, fitted on the training window only, saved as JSON.

The spec is the contract between training and serving: it names every input column of the
model, in order, with what was learned (vocabularies, segment list). Fitting on the training
window only keeps validation and test honest about unseen categories.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import polars as pl

Kind = Literal["category", "numeric", "hour", "weekday", "segment"]
SPEC_VERSION: Final = 1

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

    def index(self) -> dict[str, int]:
        """Vocabulary value -> dense code; code 0 is the unseen bucket."""
        return {v: i + 1 for i, v in enumerate(self.vocab)}


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
            Feature(f["name"], f["kind"], f["source"], tuple(f.get("vocab", ())))
            for f in data["features"]
        )
        return cls(features=feats, params=data.get("params", {}))


def _vocab(values: pl.Series, min_count: int, max_size: int) -> tuple[str, ...]:
    counts = (
        values.drop_nulls()
        .cast(pl.String)
        .value_counts(name="n")
        .filter(pl.col("n") >= min_count)
        .sort(["n", values.name], descending=[True, False])
        .head(max_size)
    )
    return tuple(counts.get_column(values.name).to_list())


def fit_spec(
    train: pl.DataFrame,
    *,
    min_count: int = 20,
    max_vocab: int = 5000,
    max_segments: int = 64,
) -> FeatureSpec:
    """Learn vocabularies and the segment list from the training window.

    Rare values (fewer than `min_count` rows) share the unseen bucket: they carry no reliable
    signal, and dense codes keep the forest small and single-row prediction fast.
    """
    if train.height == 0:
        raise ValueError("cannot fit a feature spec on an empty training window")
    from features.batch import with_derived  # local: batch imports this module

    df = with_derived(train)
    feats: list[Feature] = []
    for src in CATEGORY_SOURCES:
        vocab = _vocab(df.get_column(src), min_count, max_vocab)
        feats.append(Feature(src, "category", src, vocab))
    feats.extend(Feature(src, "numeric", src) for src in NUMERIC_SOURCES)
    feats.append(Feature("hour", "hour", "event_time"))
    feats.append(Feature("weekday", "weekday", "event_time"))
    segs = _vocab(df.get_column("user_segments").explode().alias("seg"), min_count, max_segments)
    feats.extend(Feature(f"seg_{s}", "segment", "user_segments", (s,)) for s in segs)
    params = {"min_count": min_count, "max_vocab": max_vocab, "max_segments": max_segments}
    return FeatureSpec(features=tuple(feats), params=params)
