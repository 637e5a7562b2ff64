"""The feature spec as a JSON contract: what training writes is what serving reads."""

from __future__ import annotations

import json

import pytest

from features.spec import SPEC_VERSION, Feature, FeatureSpec

SPEC = FeatureSpec(
    features=(
        Feature("channel", "category", "channel", ("web", "app")),
        Feature("floor_price", "numeric", "floor_price"),
        Feature("hour", "hour", "event_time"),
        Feature("weekday", "weekday", "event_time"),
        Feature("seg_s1", "segment", "user_segments", ("s1",)),
        Feature("seglift_campaign_id", "segment_lift", "campaign_id", (), (("c1", "s1", 0.25),)),
    ),
    params={"min_count": 5, "lift_key": "campaign_id"},
)


def test_json_round_trip_keeps_every_field() -> None:
    back = FeatureSpec.from_json(SPEC.to_json())
    assert back == SPEC
    assert back.names == SPEC.names
    assert back.categorical == ["channel"]
    assert back.features[-1].lift_table() == {"c1": {"s1": 0.25}}
    assert back.features[0].index() == {"web": 1, "app": 2}  # code 0: the unseen bucket


def test_other_version_is_refused_naming_it() -> None:
    data = json.loads(SPEC.to_json())
    data["version"] = SPEC_VERSION + 1
    with pytest.raises(ValueError, match=f"version {SPEC_VERSION + 1} is not {SPEC_VERSION}"):
        FeatureSpec.from_json(json.dumps(data))
