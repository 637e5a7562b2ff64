"""Money under real faults, counted: what the senders saw acknowledged, what the ledger holds,
and what the service's state (or Redis) says, for three faults against a running service.

  sigkill   one worker, wins posted one by one, the server killed with SIGKILL mid-load, then
            restarted on the same ledger; the sender retries what it never saw acknowledged
  redis     `--workers 2` on a real redis-server (append-only file), wins posted on fresh
            connections (both workers take some); Redis killed with SIGKILL after a third and
            started again after two thirds; retries of already-acknowledged ids sent during the
            outage; Redis's spend read once the workers have replayed their outage events
  disk      the ledger on a 256 KiB tmpfs (root only): batches of 20 wins until the disk is full

    .venv/bin/python bench/ledger_faults.py [--store sqlite:///.../mlflow.db] [--wins 300]

Without --store, `bidopt quickstart --rows 40000` trains one in the work directory first.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.ledger_store import read_ledger  # noqa: E402
from serving.state.store import RedisStore  # noqa: E402
from tests.helpers.serving import Server, run_server  # noqa: E402
from tests.redis_server import RedisProcess  # noqa: E402
from tests.serving.campaign_files import CAMPAIGNS  # noqa: E402

ENV = {"BIDOPT_LEDGER_FLUSH_MS": "50", "BIDOPT_LEDGER_COMPACT_S": "0"}


def win(event_id: str, price: float) -> dict[str, object]:
    return {"event_id": event_id, "type": "win", "impression_id": f"imp-{event_id}",
            "campaign_id": "web-cpm", "price": price}  # fmt: skip


def price_of(k: int) -> float:
    return round(1.0 + (k % 7) * 0.5, 2)


def spend_today(server: Server) -> float:
    status = server.client.get("/v1/campaigns").json()
    return float(next(c["spend_today"] for c in status["campaigns"] if c["id"] == "web-cpm"))


def ledger_wins(directory: Path) -> dict[str, float]:
    return {r["id"]: r["price"] for r in read_ledger(directory) if r.get("type") == "win"}


def line(name: str, acked: dict[str, float], kept: dict[str, float], state: float) -> None:
    same = set(acked) == set(kept)
    print(f"{name:8s} acknowledged {len(acked):5d} wins, {sum(acked.values()) / 1000:9.4f} | "
          f"ledger {len(kept):5d}, {sum(kept.values()) / 1000:9.4f} (same ids: {same}) | "
          f"state {state:9.4f}")  # fmt: skip


def sigkill(uri: str, work: Path) -> None:
    args = ("--campaigns", str(work / "campaigns.toml"))
    acked: dict[str, float] = {}
    in_flight: list[str] = []
    with run_server(uri, work, args=args, env=ENV) as server:
        killer = subprocess.Popen(["sh", "-c", f"sleep 2; kill -9 {server.proc.pid}"])
        k = 0
        while True:
            try:
                r = server.client.post("/v1/events", json={"events": [win(f"w{k}", price_of(k))]})
            except httpx.TransportError:
                in_flight.append(f"w{k}")
                break
            if r.status_code == 200 and r.json()["accepted"] == 1:
                acked[f"w{k}"] = price_of(k)
            k += 1
        killer.wait()
        assert server.proc.wait(timeout=10) == -signal.SIGKILL
    with run_server(uri, work, args=args, env=ENV) as again:
        for event_id in in_flight:
            r = again.client.post("/v1/events", json={"events": [win(event_id, price_of(k))]})
            if r.status_code == 200:
                acked[event_id] = price_of(k)
        state = spend_today(again)
    line("sigkill", acked, ledger_wins(work / "ledger"), state)


def redis_kill(uri: str, work: Path, wins: int) -> None:
    (work / "redis").mkdir()
    redis = RedisProcess(work / "redis")
    redis.start()
    args = ("--campaigns", str(work / "campaigns.toml"), "--workers", "2", "--redis-url", redis.url)
    acked: dict[str, float] = {}
    accepted_retries = 0
    try:
        with run_server(uri, work, args=args, env=ENV) as server:
            for k in range(wins):
                if k == wins // 3:
                    redis.kill()
                if k == 2 * wins // 3:
                    for j in (1, wins // 3 + 1):  # retries of ids acknowledged before and during
                        body = {"events": [win(f"w{j}", price_of(j))]}
                        r = server.client.post("/v1/events", json=body)
                        accepted_retries += r.json()["accepted"]
                    redis.start()
                body = {"events": [win(f"w{k}", price_of(k))]}
                r = server.client.post("/v1/events", json=body, headers={"Connection": "close"})
                if r.status_code == 200 and r.json()["accepted"] == 1:
                    acked[f"w{k}"] = price_of(k)
            kept = ledger_wins(work / "ledger")
            day = next(r["day"] for r in read_ledger(work / "ledger") if r.get("type") == "win")
            direct = RedisStore(redis.url, timeout_s=1.0)
            deadline = time.monotonic() + 60
            while direct.spend("web-cpm", day) < sum(acked.values()) / 1000 - 1e-9:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            state = direct.spend("web-cpm", day)
        print(f"redis    ({accepted_retries} retries of known ids accepted by a worker that could "
              "not ask Redis: in its ledger, counted once)")  # fmt: skip
        line("redis", acked, kept, state)
    finally:
        redis.stop()


def disk_full(uri: str, work: Path) -> None:
    small = work / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
                             capture_output=True, check=False)  # fmt: skip
    if os.geteuid() != 0 or mounted.returncode != 0:
        print("disk     skipped: needs root to mount a small tmpfs")
        return
    acked: dict[str, float] = {}
    refused = 0
    try:
        env = {**ENV, "BIDOPT_LEDGER_DIR": str(small)}
        args = ("--campaigns", str(work / "campaigns.toml"))
        with run_server(uri, work, args=args, env=env) as server:
            for k in range(3000):
                batch = [win(f"f{k}-{j}", 2.0) for j in range(20)]
                r = server.client.post("/v1/events", json={"events": batch})
                if r.status_code == 200:
                    acked.update({e["event_id"]: 2.0 for e in batch})
                else:
                    refused += 1
                    if refused >= 3:
                        break
            state = spend_today(server)
        print(f"disk     ({refused} batches refused with 503 once full)")
        line("disk", acked, ledger_wins(small), state)
    finally:
        subprocess.run(["umount", str(small)], check=False, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=None)
    ap.add_argument("--wins", type=int, default=300)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bidopt-faults-"))
    uri = args.store
    if uri is None:
        cmd = [sys.executable, str(ROOT / "bidopt_cli.py"), "quickstart", "--rows", "40000"]
        subprocess.run(cmd, cwd=base, check=True, capture_output=True)
        uri = f"sqlite:///{base / 'mlruns' / 'mlflow.db'}"
    for name, run in (("sigkill", lambda w: sigkill(uri, w)),
                      ("redis", lambda w: redis_kill(uri, w, args.wins)),
                      ("disk", lambda w: disk_full(uri, w))):  # fmt: skip
        work = base / name
        work.mkdir()
        (work / "campaigns.toml").write_text(CAMPAIGNS)
        run(work)


if __name__ == "__main__":
    main()
