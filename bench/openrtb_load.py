"""OpenRTB speed: /openrtb2/bid req/s against the framework floor, measured in the same run.

    python bench/openrtb_load.py [--tracking-uri URI] [--duration 10] [--rows 100000]

On loopback, both servers pinned to core 0 (taskset) and wrk to core 1, keep-alive, concurrency 8;
wrk alternates between them for --rounds rounds and the ratio is the median over rounds.
The request is the shared banner fixture (../shared/openrtb/banner-site.json, or a built-in copy
when absent) against a campaigns file of four campaigns (one eligible, one blocked by badv, two
targeted elsewhere), so every request runs targeting, creative fit, one model pair, rules and
pricing, and answers a BidResponse with a signed nurl. Bar: at least 30% of the floor's req/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serve_load import (  # noqa: E402
    FLOOR_APP,
    Proc,
    alternating_rounds,
    ensure_store,
    free_port,
    median_run,
    venv_env,
)

BAR = 0.30
QUIET = ("--no-access-log", "--log-level", "warning")
FIXTURE = (
    Path(os.environ.get("BIDOPT_SHARED_OPENRTB", ROOT / ".." / "shared" / "openrtb"))
    / "banner-site.json"
)
BANNER: dict[str, Any] = {
    "id": "bench-1",
    "at": 1,
    "cur": ["USD"],
    "tmax": 120,
    "imp": [{"id": "1", "bidfloor": 0.03, "banner": {"w": 300, "h": 250}}],
    "site": {"domain": "www.foobar.com"},
    "device": {"ip": "123.145.167.10", "devicetype": 2, "os": "macOS"},
    "user": {"id": "u-1"},
    "badv": ["blocked-brand.example"],
}
CAMPAIGNS = """
[[campaigns]]
id = "web"
goal = "cpc"
target = 0.8
max_bid = 10.0
daily_budget = 1000000.0
targeting = { channels = ["web"] }
[[campaigns.creatives]]
id = "web-300"
format = "banner"
width = 300
height = 250
adomain = "shop.example"
[[campaigns.rules]]
when = { segment = "cart_abandoners" }
then = { multiply = 2.0 }

[[campaigns]]
id = "blocked"
goal = "cpm"
target = 5.0
max_bid = 10.0
daily_budget = 1000000.0
[[campaigns.creatives]]
id = "blocked-300"
format = "banner"
width = 300
height = 250
adomain = "blocked-brand.example"

[[campaigns]]
id = "video"
goal = "cpm"
target = 6.0
max_bid = 12.0
daily_budget = 1000000.0
targeting = { channels = ["video", "ctv"] }
creatives = ["v1"]

[[campaigns]]
id = "app"
goal = "cpm"
target = 2.0
max_bid = 5.0
daily_budget = 1000000.0
targeting = { channels = ["app"] }
creatives = ["a1"]
"""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--rows", type=int, default=100_000, help="quickstart rows if no champion")
    ap.add_argument("--rounds", type=int, default=3, help="alternating floor / bidopt wrk runs")
    args = ap.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset"):
        sys.exit("needs wrk and taskset on PATH")
    body = json.loads(FIXTURE.read_text()) if FIXTURE.exists() else BANNER
    work = Path(tempfile.mkdtemp(prefix="bidopt-openrtb-bench-"))
    try:
        uri = ensure_store(args.tracking_uri, args.rows, work)
        env = venv_env(BIDOPT_TRACKING_URI=uri)
        (work / "floor_app.py").write_text(FLOOR_APP)
        (work / "campaigns.toml").write_text(CAMPAIGNS)
        floor_port, port = free_port(), free_port()
        floor = Proc(
            [sys.executable, "-m", "uvicorn", "floor_app:app", "--port", str(floor_port), *QUIET],
            env, work, work / "floor.log", "0",
        )  # fmt: skip
        campaigns = ("--campaigns", str(work / "campaigns.toml"))
        srv = Proc(
            [sys.executable, "-m", "serving.cli", "serve", "--port", str(port), *campaigns],
            env, work, work / "bidopt.log", "0",
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/openrtb2/bid"
        try:
            floor.wait_ok(f"http://127.0.0.1:{floor_port}/", "POST", {})
            srv.wait_ok(f"http://127.0.0.1:{port}/readyz")
            r = httpx.post(url, json=body, timeout=5)
            assert r.status_code == 200, (r.status_code, r.headers, r.text)
            print(f"sample bid: {r.json()['seatbid'][0]['bid'][0]}", flush=True)
            time.sleep(0.5)
            rounds = alternating_rounds(
                f"http://127.0.0.1:{floor_port}/", url, body, args.rounds, args.duration, work,
                "/openrtb2/bid",
            )  # fmt: skip
        finally:
            floor.stop()
            srv.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results = {
        "floor": median_run([f for f, _ in rounds]),
        "openrtb": median_run([b for _, b in rounds]),
    }
    print("\nHTTP, concurrency 8, both servers on core 0, wrk on core 1 (median of the rounds)")
    print(f"{'server':<10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    for name, r in results.items():
        print(
            f"{name:<10}{r['rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['non2xx']:>10.0f}"
        )
    ratio = statistics.median(b["rps"] / f["rps"] for f, b in rounds)
    verdict = "ok" if ratio >= BAR else "MISSED"
    print(f"\n/openrtb2/bid vs FastAPI floor (median ratio): {ratio:.2f}   bar >= {BAR}  {verdict}")


if __name__ == "__main__":
    main()
