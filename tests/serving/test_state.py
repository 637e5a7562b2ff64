from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.state.store import InMemoryStore, RedisStore, ResilientStore, make_store
from tests.redis_server import free_port, redis_server

HOUR_US = 3600 * 1_000_000
NOW = 1_800_000_000 * 1_000_000


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path) as url:
        yield url


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "memory":
        yield InMemoryStore(max_users=100)
    else:
        with redis_server(tmp_path) as url:
            yield RedisStore(url, prefix=f"t{free_port()}:")


def test_events_are_counted_once(store) -> None:
    assert store.claim_event("e1") is True
    assert store.claim_event("e1") is False
    assert store.claim_event("e2") is True


def test_spend_accumulates_per_campaign_and_day(store) -> None:
    assert store.add_spend("c1", "2026-11-29", 1.5) == pytest.approx(1.5)
    assert store.add_spend("c1", "2026-11-29", 2.0) == pytest.approx(3.5)
    store.add_spend("c2", "2026-11-29", 9.0)
    assert store.spend("c1", "2026-11-29") == pytest.approx(3.5)
    assert store.spend("c1", "2026-11-30") == 0.0


def test_pacing_state_round_trips(store) -> None:
    assert store.get_pacing("c1") is None
    store.put_pacing("c1", {"lam": 0.5, "integral": 1.25})
    assert store.get_pacing("c1") == {"lam": 0.5, "integral": 1.25}


def test_profile_counters_use_the_shared_definition(store) -> None:
    store.set_segments("u1", ["s1", "s2"])
    for k, hours_ago in enumerate([1, 5, 30, 200]):  # 200 h is outside 7 days
        store.record_impression("u1", "c1" if k % 2 else "c2", NOW - hours_ago * HOUR_US, f"i{k}")
    store.record_click("u1", "c1", NOW - 2 * HOUR_US, "k1")
    store.record_impression("u1", "c1", NOW + HOUR_US, "future")  # not before now: not counted
    p = store.profile("u1", NOW)
    assert p.segments == ("s1", "s2")
    assert p.counters == {
        "user_imps_24h": 2,
        "user_clicks_24h": 1,
        "user_imps_7d": 3,
        "user_clicks_7d": 1,
        "user_secs_since_last_imp": 3600.0,
    }
    assert p.campaign_imps == {"c2": (1, 2), "c1": (1, 1)}
    assert p.campaign_clicks == {"c1": (1, 1)}
    empty = store.profile("nobody", NOW)
    assert empty.segments == () and empty.counters["user_imps_7d"] == 0


def test_memory_is_bounded() -> None:
    s = InMemoryStore(max_users=3, max_events=3)
    for u in range(10):
        s.set_segments(f"u{u}", ["x"])
        s.claim_event(f"e{u}")
    assert s.profile("u0", NOW).segments == ()  # evicted
    assert s.profile("u9", NOW).segments == ("x",)


def test_shared_spend_across_two_clients(redis_url: str) -> None:
    a, b = RedisStore(redis_url), RedisStore(redis_url)
    for _ in range(50):
        a.add_spend("c", "d", 1.0)
        b.add_spend("c", "d", 1.0)
    assert a.spend("c", "d") == pytest.approx(100.0)


def test_unreachable_redis_falls_back_to_local_state(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        store = ResilientStore(RedisStore(url), InMemoryStore(), retry_s=0.0)
        assert store.add_spend("c", "d", 2.0) == pytest.approx(2.0)
        assert store.backend == "redis"
    # the server is gone now: bidding goes on with local state, and says so
    assert store.add_spend("c", "d", 1.0) == pytest.approx(1.0)
    assert store.degraded and store.backend == "memory (redis unreachable)"
    assert store.last_error
    assert store.claim_event("e") is True and store.claim_event("e") is False


def test_make_store_picks_the_backend() -> None:
    assert make_store(None).backend == "memory"
    assert isinstance(make_store("redis://127.0.0.1:1/0"), ResilientStore)
