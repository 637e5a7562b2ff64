"""Predictor and bidder in process, on two tiny bundles (no MLflow, no HTTP)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from features.bundle import ModelBundle
from features.calibrator import Calibrator
from serving import bidder
from serving.api.schemas import BidImpression, Campaign
from serving.models.predictor import BATCH_MIN_ROWS, LoadedModel, Predictor, example_requests
from serving.models.registry import ModelRef, VersionRefused


def loaded(target: str, bundle: ModelBundle, version: str = "1") -> LoadedModel:
    return LoadedModel.build(ModelRef(f"bidopt-{target}", "champion", version, None), bundle)


@pytest.fixture(scope="module")
def bundles(tiny_bundles: dict[str, Path]) -> dict[str, ModelBundle]:
    return {k: ModelBundle.load(v) for k, v in tiny_bundles.items()}


@pytest.fixture(scope="module")
def predictor(bundles: dict[str, ModelBundle]) -> Predictor:
    return Predictor.build(loaded("ctr", bundles["ctr"]), loaded("cvr", bundles["cvr"]))


@pytest.fixture(scope="module")
def requests(bundles: dict[str, ModelBundle]) -> list[dict[str, Any]]:
    return example_requests(bundles["ctr"].meta, "ctr") * 4  # 20 rows: the matrix path


def test_single_row_and_matrix_paths_agree(predictor: Predictor, requests: list) -> None:
    assert len(requests) >= BATCH_MIN_ROWS
    batch_ctr, batch_cvr = predictor.predict(requests)
    one = [predictor.predict([r]) for r in requests]
    assert [o[0][0] for o in one] == pytest.approx(batch_ctr, abs=1e-12)
    assert [o[1][0] for o in one] == pytest.approx(batch_cvr, abs=1e-12)
    assert all(0.0 <= p <= 1.0 for p in batch_ctr + batch_cvr)


def test_predictions_match_the_bundle_batch_path(
    predictor: Predictor, bundles: dict[str, ModelBundle], requests: list
) -> None:
    """Online encoder + fast path + transform_one == the bundle's own matrix scoring."""
    import numpy as np

    x = np.asarray([predictor.ctr.encoder.encode_list(r) for r in requests])
    expected = bundles["ctr"].predict_matrix(x)
    got = [predictor.ctr.score_one(row) for row in x.tolist()]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_patching_a_slot_equals_encoding_again(predictor: Predictor, requests: list) -> None:
    model = predictor.ctr
    vocab = {f.source: f.vocab for f in model.bundle.spec.features if f.kind == "category"}
    lift = model.encoder.column_index["seglift_campaign_id"]
    lifted = [r for r in requests if r.get("user_segments")]
    assert lifted, "the examples should carry DMP segments"
    moved = 0
    for req in lifted:
        for campaign in [*vocab["campaign_id"][:3], "never-seen", None]:
            changes = {"campaign_id": campaign, "creative_id": "cr-unknown", "advertiser_id": None}
            base = model.encoder.encode_list(req)
            patched = model.patch(base, changes, req.get("user_segments"))
            direct = model.encoder.encode_list({**req, **changes})
            assert patched == pytest.approx(direct, nan_ok=True)
            moved += patched[lift] != base[lift]
    assert moved, "the segment lift should follow the patched campaign"


def test_smoke_check_refuses_out_of_range_probabilities(bundles: dict[str, ModelBundle]) -> None:
    broken = Calibrator.from_json(
        json.dumps({"method": "isotonic", "x_knots": [0, 1], "y_knots": [1.5, 1.5]})
    )
    bad = dataclasses.replace(bundles["cvr"], calibrator=broken)
    with pytest.raises(
        VersionRefused, match=r"bidopt-cvr v7: smoke check failed .* not finite in \[0, 1\]"
    ):
        Predictor.build(loaded("ctr", bundles["ctr"]), loaded("cvr", bad, "7"))


def test_smoke_check_needs_an_input_example(bundles: dict[str, ModelBundle]) -> None:
    bare = dataclasses.replace(bundles["ctr"], meta={"name": "bidopt-ctr"})
    with pytest.raises(VersionRefused, match=r"bidopt-ctr v2: meta\.json has no input_example"):
        Predictor.build(loaded("ctr", bare, "2"), loaded("cvr", bundles["cvr"]))


def imp(**over: Any) -> BidImpression:
    base = {
        "impression_id": "i1",
        "event_time": "2025-06-01T14:05:00Z",
        "channel": "web",
        "floor_price": 0.0,
        "auction_type": "second",
    }
    return BidImpression.model_validate({**base, **over})


def camp(**over: Any) -> Campaign:
    base = {
        "campaign_id": "c1",
        "goal": "cpc",
        "target": 2.0,
        "max_bid": 1000.0,
        "creative_ids": ["a"],
    }
    return Campaign.model_validate({**base, **over})


def decide(predictor: Predictor, imps: list, camps: list) -> list[dict[str, Any]]:
    return bidder.decide(predictor, imps, bidder.plan(camps))


@pytest.mark.parametrize(
    ("goal", "extra", "value"),
    [
        ("cpc", {}, lambda ctr, cvr: ctr * 2.0 * 1000),
        ("cpa", {}, lambda ctr, cvr: ctr * cvr * 2.0 * 1000),
        ("roas", {"value_per_conversion": 50.0}, lambda ctr, cvr: ctr * cvr * 50.0 / 2.0 * 1000),
        ("cpm", {}, lambda ctr, cvr: 2.0),
    ],
)
def test_value_bidding_per_goal(predictor: Predictor, goal: str, extra: dict, value: Any) -> None:
    [r] = decide(predictor, [imp()], [camp(goal=goal, **extra)])
    assert r["reason"] is None and r["bid"] is True
    assert r["expected_value"] == pytest.approx(value(r["pctr"], r["pcvr"]))
    assert r["price"] == pytest.approx(r["expected_value"])
    assert (r["campaign_id"], r["creative_id"]) == ("c1", "a")


def test_max_bid_caps_and_floor_refuses(predictor: Predictor) -> None:
    [r] = decide(predictor, [imp()], [camp(goal="cpm", target=5.0, max_bid=3.0)])
    assert r["price"] == 3.0 and r["expected_value"] == 5.0
    [r] = decide(predictor, [imp(floor_price=4.0)], [camp(goal="cpm", target=5.0, max_bid=3.0)])
    assert (r["bid"], r["price"], r["reason"]) == (False, None, "below_floor")


def test_not_eligible_and_best_campaign(predictor: Predictor) -> None:
    only_app = camp(campaign_id="app", goal="cpm", target=9.0, channels=["app"])
    [r] = decide(predictor, [imp()], [only_app])
    assert (r["bid"], r["reason"], r["pctr"]) == (False, "not_eligible", None)
    cheap = camp(campaign_id="cheap", goal="cpm", target=1.0)
    rich = camp(campaign_id="rich", goal="cpm", target=4.0)
    results = decide(
        predictor, [imp(), imp(impression_id="i2", channel="app")], [cheap, rich, only_app]
    )
    assert [r["campaign_id"] for r in results] == ["rich", "app"]


def test_creative_with_the_highest_value_wins(predictor: Predictor, requests: list) -> None:
    vocab = next(f.vocab for f in predictor.ctr.bundle.spec.features if f.source == "creative_id")
    creatives = [*list(vocab[:8]), "never-seen"]
    [r] = decide(predictor, [imp()], [camp(creative_ids=creatives)])
    singles = [decide(predictor, [imp()], [camp(creative_ids=[c])])[0] for c in creatives]
    best = max(singles, key=lambda s: s["expected_value"])
    assert r["creative_id"] == best["creative_id"]
    assert r["price"] == pytest.approx(best["price"])


def test_batch_bid_equals_one_impression_at_a_time(predictor: Predictor, requests: list) -> None:
    """Past BATCH_MIN_ROWS candidates the bidder encodes column-wise and scores one matrix;
    below it, row by row with patched candidate slots: both give the same decisions, including
    impressions with several candidates, none, or one targeted out."""
    vocab = next(f.vocab for f in predictor.ctr.bundle.spec.features if f.source == "creative_id")
    camps = [
        camp(campaign_id="multi", goal="cpc", target=50.0, creative_ids=[*vocab[:3], "new"]),
        camp(campaign_id="adv", advertiser_id="adv-x", goal="cpc", target=1.5),
        camp(campaign_id="app-only", goal="cpm", target=2.0, channels=["app"]),
    ]
    fields = BidImpression.model_fields
    imps = [
        imp(**{k: v for k, v in r.items() if v is not None and k in fields}, impression_id=f"i{i}")
        for i, r in enumerate(requests)
    ]
    assert len(imps) * 5 >= BATCH_MIN_ROWS and {i.channel for i in imps} >= {"app", "web"}
    batch = decide(predictor, imps, camps)
    singles = [decide(predictor, [i], camps)[0] for i in imps]
    assert [r["impression_id"] for r in batch] == [f"i{i}" for i in range(len(imps))]
    for b, s in zip(batch, singles, strict=True):
        assert b.keys() == s.keys()
        for key, value in b.items():
            if isinstance(value, float):
                assert value == pytest.approx(s[key], rel=1e-12), key
            else:
                assert value == s[key], key
    assert {r["campaign_id"] for r in batch} == {"multi", "app-only"}
