"""One feature definition, two executors: batch (polars) and online (one dict) agree exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.batch import encode_matrix
from features.online import OnlineEncoder, PairEncoder
from features.schema import CHANNELS, SCHEMA, conform
from features.spec import LIFT_QUANTUM, Feature, FeatureSpec
from features.spec_fit import fit_spec

WORDS = ["a", "b", "c", "web", "app", "x.com", "other", "", "ünï", "300"]
SEGMENTS = ["s1", "s2", "s3", "s4"]


def _row_strategy() -> st.SearchStrategy[dict]:
    maybe_word = st.one_of(st.none(), st.sampled_from(WORDS), st.text(max_size=4))
    maybe_num = st.one_of(
        st.none(), st.floats(min_value=0, max_value=1e6, allow_nan=False), st.integers(0, 500)
    )
    return st.fixed_dictionaries(
        {
            "event_time": st.one_of(
                st.none(),
                st.datetimes(
                    min_value=datetime(2000, 1, 1),
                    max_value=datetime(2100, 1, 1),
                    timezones=st.just(UTC),
                ),
            ),
            "impression_id": st.just("i"),
            "channel": st.one_of(st.none(), st.sampled_from(CHANNELS), st.sampled_from(WORDS)),
            "publisher": maybe_word,
            "creative_id": maybe_word,
            "os": maybe_word,
            "slot_width": st.one_of(st.none(), st.integers(0, 2000)),
            "slot_height": st.one_of(st.none(), st.integers(0, 2000)),
            "user_segments": st.one_of(
                st.none(), st.lists(st.sampled_from([*SEGMENTS, "s9"]), max_size=5)
            ),
            "floor_price": maybe_num,
            "user_imps_24h": st.one_of(st.none(), st.integers(0, 10_000)),
            "user_secs_since_last_imp": maybe_num,
            "click": st.just(0),
        }
    )


def _spec() -> FeatureSpec:
    cats = [
        Feature(src, "category", src, tuple(WORDS[:5]))
        for src in ("channel", "publisher", "creative_id", "os")
    ]
    cats.append(Feature("slot_size", "category", "slot_size", ("300x250", "0x0", "728x90")))
    nums = [
        Feature(src, "numeric", src)
        for src in ("floor_price", "user_imps_24h", "user_secs_since_last_imp")
    ]
    time = [Feature("hour", "hour", "event_time"), Feature("weekday", "weekday", "event_time")]
    segs = [Feature(f"seg_{s}", "segment", "user_segments", (s,)) for s in SEGMENTS]
    return FeatureSpec(features=(*cats, *nums, *time, *segs, _lift(1)))


def _lift(sign: int) -> Feature:
    """A segment lift under creative_id: quantized cells, negative ones, an unknown segment."""
    cells = [
        (w, s, sign * (1 + 3 * i - 5 * j) * LIFT_QUANTUM * 97)
        for i, w in enumerate(WORDS[:6])
        for j, s in enumerate([*SEGMENTS, "s9"])
        if (i + j) % 3
    ]
    return Feature("seglift_creative_id", "segment_lift", "creative_id", (), tuple(cells))


def _frame(rows: list[dict]) -> pl.DataFrame:
    cols = {k: [r.get(k) for r in rows] for k in rows[0]}
    schema = {k: SCHEMA[k] for k in cols}
    return conform(pl.DataFrame(cols, schema=schema))


def _assert_same(batch: np.ndarray, online: np.ndarray) -> None:
    assert batch.dtype == online.dtype == np.float64
    np.testing.assert_array_equal(batch, online)  # NaN == NaN here; values bit-equal


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row_strategy(), min_size=1, max_size=20))
def test_batch_and_online_encodings_are_identical(rows: list[dict]) -> None:
    spec = _spec()
    enc = OnlineEncoder(spec)
    batch = encode_matrix(_frame(rows), spec)
    online = np.vstack([enc.encode(r) for r in rows])
    _assert_same(batch, online)


def _other_spec() -> FeatureSpec:
    """A second spec over the same sources, as the pCVR model's: other vocabularies, fewer
    segments, a missing source and a different column order."""
    feats = list(_spec().features)
    cats = [
        Feature(f.name, f.kind, f.source, tuple(reversed(WORDS[2:7])))
        for f in feats
        if f.kind == "category" and f.source not in ("os", "slot_size")
    ]
    cats.append(Feature("slot_size", "category", "slot_size", ("728x90",)))
    rest = [f for f in feats if f.kind in ("numeric", "hour", "weekday")]
    segs = [Feature(f"seg_{s}", "segment", "user_segments", (s,)) for s in SEGMENTS[::2]]
    return FeatureSpec(features=(_lift(-1), *rest[::-1], *cats, *segs))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row_strategy(), min_size=1, max_size=20))
def test_pair_encoder_equals_each_encoder(rows: list[dict]) -> None:
    first, second = OnlineEncoder(_spec()), OnlineEncoder(_other_spec())
    pair = PairEncoder(first, second)
    for r in rows:
        a, b = pair.encode_lists(r)
        _assert_same(np.asarray(a), first.encode(r))
        _assert_same(np.asarray(b), second.encode(r))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row_strategy(), min_size=0, max_size=30))
def test_column_wise_encoding_equals_row_by_row(rows: list[dict]) -> None:
    """encode_many (the batch path of /v1/bid and /v1/predict) stacks what encode gives."""
    first, second = OnlineEncoder(_spec()), OnlineEncoder(_other_spec())
    a, b = PairEncoder(first, second).encode_many(rows)
    assert a.shape == (len(rows), first.width) and b.shape == (len(rows), second.width)
    assert a.flags.c_contiguous and b.flags.c_contiguous
    if rows:
        _assert_same(a, np.vstack([first.encode(r) for r in rows]))
        _assert_same(b, np.vstack([second.encode(r) for r in rows]))
    _assert_same(first.encode_many(rows), a)


def test_unseen_and_missing_categories_have_distinct_codes() -> None:
    spec = _spec()
    enc = OnlineEncoder(spec)
    i = enc.column_index["publisher"]
    assert enc.encode({"publisher": "never-seen"})[i] == 0.0
    assert np.isnan(enc.encode({"publisher": None})[i])
    assert enc.encode({"publisher": WORDS[1]})[i] == 2.0


def test_parity_on_fitted_spec_over_synthetic_like_rows() -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    rng = np.random.default_rng(0)
    rows = [
        {
            "event_time": t0 + timedelta(minutes=int(m)),
            "impression_id": f"i{k}",
            "channel": CHANNELS[k % 6],
            "publisher": f"p{rng.integers(0, 30)}",
            "creative_id": f"c{rng.integers(0, 5)}",
            "slot_width": 300,
            "slot_height": 250 if k % 3 else None,
            "user_segments": [f"s{j}" for j in rng.integers(0, 8, size=k % 4)],
            "floor_price": float(rng.gamma(2.0, 10.0)),
            "click": int(rng.random() < 0.1),
        }
        for k, m in enumerate(rng.integers(0, 60 * 24 * 7, size=2000))
    ]
    df = _frame(rows)
    spec = fit_spec(df, min_count=5, label="click", lift_key="creative_id", lift_prior=5.0)
    assert "seg_s1" in spec.names and "seglift_creative_id" in spec.names
    assert len(spec.features[-1].lifts) > 3
    enc = OnlineEncoder(spec)
    _assert_same(encode_matrix(df, spec), np.vstack([enc.encode(r) for r in rows]))
    assert FeatureSpec.from_json(spec.to_json()) == spec
