"""Redis killed (SIGKILL) and started again mid-load: events booked during the outage are
replayed into Redis once, spend while degraded never falls back to 0, and a flight total does
not expire. A real redis-server with an append-only file, as README's deployment note asks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.state.budgets import BudgetKeeper, day_key
from serving.state.campaigns import CampaignBook
from serving.state.events import apply_records
from serving.state.store import TOTAL, InMemoryStore, RedisStore, ResilientStore
from tests.redis_server import RedisProcess
from tests.serving.campaign_files import CAMPAIGNS

DAY = "2026-12-01"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


def book(store: ResilientStore, event_id: str, amount: float) -> bool:
    """What /v1/events does per event: claim the id, then book it (here without the ledger)."""
    if not store.claim_event(event_id):
        return False
    record = {"type": "win", "cid": "c1", "day": DAY, "amount": amount, "total": True,
              "uid": "u1", "t": 1, "id": event_id}  # fmt: skip
    apply_records([record], store)
    return True


def test_a_redis_kill_and_return_loses_nothing_and_counts_nothing_twice(
    redis: RedisProcess,
) -> None:
    store = ResilientStore(RedisStore(redis.url, timeout_s=0.5), InMemoryStore(), retry_s=0.2)
    acked = 0.0
    for k in range(50):
        assert book(store, f"e{k}", 0.01)
        acked += 0.01
    before = store.spend("c1", DAY)
    assert before == pytest.approx(acked) and not store.degraded
    redis.kill()
    for k in range(50, 80):  # during the outage
        assert book(store, f"e{k}", 0.02)
        acked += 0.02
    assert store.degraded
    assert store.spend("c1", DAY) == pytest.approx(acked)  # last shared value + booked since
    assert book(store, "e3", 0.01)  # a sender's retry of an event Redis already counted
    assert store.unsynced == 31
    redis.start()  # same port, same append-only file
    deadline = time.monotonic() + 5
    while True:  # a pooled connection from before the kill may fail once: retried after retry_s
        time.sleep(0.25)
        shared = store.spend("c1", DAY)  # the first call reaching Redis replays the outage
        if not store.degraded or time.monotonic() > deadline:
            break
    assert not store.degraded and store.unsynced == 0
    assert shared == pytest.approx(acked, abs=1e-9)  # e3 counted once, not twice
    assert (store.resynced_events, store.resync_duplicates) == (30, 1)
    direct = RedisStore(redis.url)
    assert direct.spend("c1", DAY) == pytest.approx(acked, abs=1e-9)
    assert direct.spend("c1", TOTAL) == pytest.approx(acked, abs=1e-9)
    assert direct._r.ttl(f"{direct._p}spend:{TOTAL}") == -1  # a flight total never expires
    assert not book(store, "e60", 0.02)  # an outage event's id is known to Redis now


def test_while_degraded_each_worker_spends_at_most_its_share(
    redis: RedisProcess, tmp_path: Path
) -> None:
    campaigns = tmp_path / "campaigns.toml"
    campaigns.write_text(CAMPAIGNS)
    book_ = CampaignBook(campaigns)
    store = ResilientStore(RedisStore(redis.url, timeout_s=0.5), InMemoryStore(), retry_s=60)
    keeper = BudgetKeeper(store, book_, pacing_interval_s=60, workers=2)
    now = time.time()
    day = day_key(book_.campaigns["web-cpm"], now)
    small = day_key(book_.campaigns["small-budget"], now)
    store.add_spend("web-cpm", day, 400.0)  # of a daily budget of 1000
    store.add_spend("small-budget", small, 0.03)  # already over its 0.02
    keeper.refresh(now=now)
    assert keeper.states["small-budget"].budget_left < 0
    redis.kill()
    store.add_spend("web-cpm", day, 100.0)  # this worker, during the outage
    keeper.refresh(now=now)
    assert store.degraded
    # (1000 - 400) / 2 workers - 100 booked here since: 200 left for this worker, not 600
    assert keeper.states["web-cpm"].budget_left == pytest.approx(200.0)
    assert keeper.states["small-budget"].budget_left < 0  # over budget stays over: never 0


def win_record(event_id: str, amount: float) -> dict[str, object]:
    return {"type": "win", "cid": "c1", "day": DAY, "amount": amount, "total": True,
            "uid": "u1", "t": 1, "id": event_id}  # fmt: skip


def wait_synced(store: ResilientStore) -> None:
    deadline = time.monotonic() + 10
    while store.degraded or store.unsynced:
        store.spend("c1", DAY)
        if time.monotonic() > deadline:
            raise AssertionError(f"still degraded with {store.unsynced} unsynced events")
        time.sleep(0.1)


def test_a_claim_that_reached_redis_and_a_booking_that_did_not_are_booked_once(
    redis: RedisProcess,
) -> None:
    """The two faults between claim and booking: Redis killed in between (the booking must be
    replayed although its claim is Redis's), and a batch claimed during the outage whose last
    event turns out a duplicate (it must not take the others' spend with it)."""
    store = ResilientStore(RedisStore(redis.url, timeout_s=0.5), InMemoryStore(), retry_s=0.2)
    assert book(store, "old", 1.0)
    assert store.claim_event("a")  # claimed in Redis, then Redis dies before the booking
    redis.kill()
    apply_records([win_record("a", 2.0)], store)
    claims = [store.claim_event(i) for i in ("b", "c", "old")]  # one batch, during the outage
    assert claims == [True, True, True]  # "old" is unknown to local state: Redis will say
    apply_records([win_record("b", 4.0), win_record("c", 8.0), win_record("old", 1.0)], store)
    redis.start()
    time.sleep(0.3)
    wait_synced(store)
    assert RedisStore(redis.url).spend("c1", DAY) == pytest.approx(15.0)  # 1 + 2 + 4 + 8
    assert (store.resynced_events, store.resync_duplicates) == (3, 1)


def test_a_timeout_after_redis_applied_the_booking_does_not_count_it_twice(
    redis: RedisProcess,
) -> None:
    """DEBUG SLEEP stalls Redis past the client's timeout, then Redis runs the booking it had
    received. The client, not knowing, books it locally and replays it on return: the id
    marked applied stops the replay."""
    store = ResilientStore(RedisStore(redis.url, timeout_s=0.05), InMemoryStore(), retry_s=0.5)
    assert book(store, "first", 1.0)  # (the booking script is loaded now)
    admin = RedisStore(redis.url, timeout_s=2.0)
    assert store.claim_event("slow")
    stall = threading.Thread(target=admin._r.execute_command, args=("DEBUG", "SLEEP", "0.4"))
    stall.start()
    time.sleep(0.1)
    apply_records([win_record("slow", 2.0)], store)  # times out; Redis applies it after 0.4 s
    stall.join()
    assert store.degraded and store.unsynced == 1
    time.sleep(0.6)
    wait_synced(store)
    assert admin.spend("c1", DAY) == pytest.approx(3.0)  # not 5: counted once
    assert (store.resynced_events, store.resync_duplicates) == (0, 1)
