"""The whole service under a Redis kill: two workers (`bidopt serve --workers 2`) share a real
redis-server with an append-only file; wins are posted one by one while Redis is killed with
SIGKILL and started again. Every acknowledged win is in the ledger (each worker writes its own
segments), and once Redis is back its spend equals the sum of the acknowledged prices, with the
retries sent during the outage counted once."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from features.ledger import read_segment
from features.ledger_store import live_segments, read_ledger
from serving.state.store import RedisStore
from tests.helpers.serving import run_server
from tests.redis_server import RedisProcess
from tests.serving.campaign_files import CAMPAIGNS
from tests.serving.test_ledger import win


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    (tmp_path / "redis").mkdir()
    server = RedisProcess(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.mark.integration
def test_two_workers_through_a_redis_kill_keep_every_acknowledged_win_once(
    serving_store: tuple[str, Path], tmp_path: Path, redis: RedisProcess
) -> None:
    uri, _ = serving_store
    campaigns = tmp_path / "campaigns.toml"
    campaigns.write_text(CAMPAIGNS)
    args = ("--campaigns", str(campaigns), "--workers", "2", "--redis-url", redis.url)
    acked: dict[str, float] = {}
    replies: list[dict[str, int]] = []
    env = {"BIDOPT_LEDGER_FLUSH_MS": "20", "BIDOPT_LEDGER_COMPACT_S": "0"}
    with run_server(uri, tmp_path, args=args, env=env) as server:

        def post(event_id: str, price: float) -> dict[str, int]:
            body = {"events": [win(event_id, price)]}
            # a new connection each time, so both workers take some of the wins
            r = server.client.post("/v1/events", json=body, headers={"Connection": "close"})
            assert r.status_code == 200, r.text
            return r.json()  # type: ignore[no-any-return]

        def send(first: int, last: int) -> None:
            for k in range(first, last):
                price = round(1.0 + (k % 7) * 0.5, 2)
                if post(f"w{k}", price)["accepted"] == 1:
                    acked[f"w{k}"] = price

        send(0, 60)
        redis.kill()
        send(60, 120)  # during the outage: acknowledged once the ledger has them
        for k in (3, 65):  # a sender's retries of a win from before and one from during
            replies.append(post(f"w{k}", round(1.0 + (k % 7) * 0.5, 2)))
        redis.start()  # same port, same append-only file
        send(120, 150)
        direct = RedisStore(redis.url)
        day = next(r["day"] for r in read_ledger(tmp_path / "ledger") if r.get("type") == "win")
        deadline = time.monotonic() + 30  # each worker's state loop replays its outage events
        while direct.spend("web-cpm", day) < sum(acked.values()) / 1000 - 1e-9:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        metrics = server.client.get("/metrics").text
    assert len(acked) == 150
    assert direct.spend("web-cpm", day) == pytest.approx(sum(acked.values()) / 1000, abs=1e-9)
    # the ledger holds every acknowledged win; a retry a worker accepted while it could not
    # ask Redis is in its ledger too, and counted once: in Redis by its id, at start-up by claim
    wins = [r for r in read_ledger(tmp_path / "ledger") if r.get("type") == "win"]
    assert {r["id"] for r in wins} == set(acked)
    assert len(wins) - len(acked) == sum(r["accepted"] for r in replies)
    writers = {
        re.sub(r"^\d+-", "", name)
        for name, path in live_segments(tmp_path / "ledger").items()
        if any(r.get("type") == "win" for r in read_segment(path))
    }
    assert len(writers) == 2, f"each worker writes its own segments: wins from {writers}"
    assert "bidopt_ledger_available" in metrics
