"""Serving speed: /v1/bid against its references, all measured in the same run.

    python bench/serve_load.py [--tracking-uri URI] [--duration 10] [--rows 100000]

On loopback, each server is pinned to core 0 (taskset) and wrk to core 1, keep-alive,
concurrency 8, one impression and one campaign per request. References:
  - floor:   a constant-reply FastAPI endpoint under the same uvicorn settings (framework floor)
  - mlflow:  `mlflow models serve -m models:/bidopt-ctr@champion --env-manager local`
  - bare `Booster.predict` on one row, in process
In process: time per impression for encode + both models + bid (p50), and a batch of 100.
Also worker RSS, and `--workers 2` against one worker (2 cores only: reported, no bar).
The p99 bar is checked as measured and scaled to the host the issue's bars were set on (see
ISSUE_FLOOR_RPS).

Models: the champions of the store at --tracking-uri (default: the project rule); when it has
none, `bidopt quickstart --rows N` is run first in a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.redis_server import redis_server  # noqa: E402  (a real redis-server for --workers 2)

# The issue set its bars on a host where the framework floor served about 8,000 req/s. At
# concurrency 8 (a closed loop) p99 is about 2.1-2.7 x 8 / req/s for the floor and for bidopt
# alike (Little's law times the event loop's batching), so it scales with the host's speed: the
# p99 bar is also checked on p99 x (floor req/s in the same round / ISSUE_FLOOR_RPS), the median
# over rounds, as every other comparison here is made against the same round's baseline.
ISSUE_FLOOR_RPS = 8000.0

BARS = {
    "vs_mlflow": 10.0,
    "vs_floor": 0.40,
    "p99_ms": 5.0,
    "per_imp_p50_us": 60.0,
    "batch100_ms": 3.0,
    "rss_mb": 600.0,
}

FLOOR_APP = """
from fastapi import FastAPI
app = FastAPI()

@app.post("/")
async def constant() -> dict:
    return {"ok": True}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def venv_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONWARNINGS"] = "ignore"
    env.update(extra)
    return env


def ensure_store(uri: str | None, rows: int, work: Path) -> str:
    from features.store_uri import default_tracking_uri
    from serving.models.registry import Registry, RegistryUnavailable

    uri = uri or default_tracking_uri()
    try:
        reg = Registry(uri)
        reg.resolve("bidopt-ctr", "champion")
        reg.resolve("bidopt-cvr", "champion")
        return uri
    except RegistryUnavailable as e:
        print(f"no champions at {uri} ({e}); running quickstart --rows {rows} ...", flush=True)
    cmd = [sys.executable, "-m", "bidopt_cli", "quickstart", "--rows", str(rows), "--seed", "7"]
    env = venv_env()
    env.pop("BIDOPT_TRACKING_URI", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    subprocess.run(cmd, cwd=work, env=env, check=True, capture_output=True)
    return f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"


def bid_body(example: dict[str, Any], n: int = 1) -> dict[str, Any]:
    imp = {k: v for k, v in example.items() if v is not None}
    imp.update(impression_id="imp-1", floor_price=0.0, auction_type="first")
    imp.pop("campaign_id", None)
    imp.pop("creative_id", None)
    campaign = {
        "campaign_id": str(example.get("campaign_id") or "c-1"),
        "goal": "cpa",
        "target": 30.0,
        "max_bid": 20.0,
        "creative_ids": [str(example.get("creative_id") or "cr-1")],
    }
    return {
        "impressions": [dict(imp, impression_id=f"imp-{i}") for i in range(n)],
        "campaigns": [campaign],
    }


def alternating_rounds(
    floor_url: str, url: str, body: Any, rounds: int, duration: int, work: Path, name: str
) -> list[tuple[dict[str, float], dict[str, float]]]:
    """wrk against the floor, then against `url`, `rounds` times over: on a shared host a ratio
    is only fair between runs that saw the same neighbours (compare by the median round)."""
    out = []
    for i in range(rounds):
        f = wrk(floor_url, body, duration, work)
        b = wrk(url, body, duration, work)
        out.append((f, b))
        print(
            f"  round {i + 1}: floor {f['rps']:.0f} req/s, {name} {b['rps']:.0f} req/s "
            f"(p99 {b['p99_ms']:.2f} ms; floor's {f['p99_ms']:.2f}): {b['rps'] / f['rps']:.2f}",
            flush=True,
        )
    return out


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The round with the median req/s (its latencies belong to it)."""
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def in_process(uri: str) -> dict[str, Any]:
    import numpy as np

    from serving import bidder
    from serving.api.schemas import V1BidRequest
    from serving.models.predictor import LoadedModel, Predictor, example_requests
    from serving.models.registry import Registry

    reg = Registry(uri)
    models = {}
    for key in ("ctr", "cvr"):
        ref = reg.resolve(f"bidopt-{key}", "champion")
        models[key] = LoadedModel.build(ref, reg.load(ref))
    predictor = Predictor.build(models["ctr"], models["cvr"])
    example = example_requests(models["ctr"].bundle.meta, "ctr")[0]
    body = bid_body(json.loads(json.dumps(example, default=str)))
    one = V1BidRequest.model_validate(body)
    hundred = V1BidRequest.model_validate(
        bid_body(json.loads(json.dumps(example, default=str)), 100)
    )

    def timed(fn: Any, reps: int) -> list[float]:
        for _ in range(min(200, reps)):
            fn()
        out = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return out

    req = one.impressions[0].__dict__
    row = predictor.ctr.encoder.encode_list(req)
    x = np.asarray([row])
    booster = predictor.ctr.bundle.booster
    # Interleaved rounds, so that the whole decision and the bare Booster.predict reference
    # see the same neighbours on this shared host; the ratio is the median over rounds.
    per_imp: list[float] = []
    bare: list[float] = []
    ratios = []
    for _ in range(5):
        a = timed(
            lambda: bidder.decide(predictor, one.impressions, bidder.plan(one.campaigns)), 1000
        )
        b = timed(lambda: booster.predict(x, num_threads=1), 400)
        per_imp += a
        bare += b
        ratios.append(statistics.median(a) / statistics.median(b))
    batch = timed(
        lambda: bidder.decide(predictor, hundred.impressions, bidder.plan(hundred.campaigns)), 200
    )
    encode = timed(lambda: predictor.encode(req), 5000)
    fast = timed(lambda: predictor.ctr.fast.predict_one(row), 5000)
    trees = booster.num_trees()
    return {
        "per_imp_p50_us": statistics.median(per_imp) * 1e6,
        "per_imp_p99_us": pct(per_imp, 0.99) * 1e6,
        "per_imp_vs_booster": statistics.median(ratios),
        "batch100_ms": statistics.median(batch) * 1e3,
        "encode_p50_us": statistics.median(encode) * 1e6,
        "fast_ctr_p50_us": statistics.median(fast) * 1e6,
        "booster_predict_p50_us": statistics.median(bare) * 1e6,
        "ctr_trees": trees,
        "features": booster.num_feature(),
        "body": body,
        "mlflow_record": json.loads(json.dumps(example, default=str)),
    }


class Proc:
    def __init__(
        self, cmd: list[str], env: dict[str, str], cwd: Path, log: Path, cpus: str
    ) -> None:
        self.log = log
        with open(log, "wb") as fh:
            self.p = subprocess.Popen(
                ["taskset", "-c", cpus, *cmd],
                env=env,
                cwd=cwd,
                stdout=fh,
                stderr=fh,
                start_new_session=True,
            )

    def wait_ok(
        self, url: str, method: str = "GET", body: Any = None, timeout: float = 120
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()[-3000:]}")
            try:
                r = httpx.request(method, url, json=body, timeout=5)
                if r.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{url} not OK after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def rss_mb(self) -> dict[int, float]:
        """RSS of each python process in this server's process group (the workers)."""
        out = {}
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                pid = int(status.parent.name)
                if os.getpgid(pid) != self.p.pid:
                    continue
                text = status.read_text()
            except (OSError, ValueError):
                continue
            m = re.search(r"VmRSS:\s+(\d+) kB", text)
            if m:
                out[pid] = int(m.group(1)) / 1024
        return out

    def stop(self) -> None:
        try:
            os.killpg(self.p.pid, 15)
            self.p.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, 9)


def wrk(
    url: str, body: Any, duration: int, work: Path, cpus: str = "1", conns: int = 8
) -> dict[str, float]:
    script = work / "post.lua"
    payload = json.dumps(body).replace("\\", "\\\\").replace("'", "\\'")
    script.write_text(
        "wrk.method = 'POST'\n"
        f"wrk.body = '{payload}'\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
    )
    base = ["taskset", "-c", cpus, "wrk", "-t1", f"-c{conns}", "--latency", "-s", str(script), url]
    subprocess.run([*base[:5], "-d2s", *base[5:]], capture_output=True, check=True)  # warm-up
    out = subprocess.run(
        [*base[:5], f"-d{duration}s", *base[5:]], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {}
    for q in ("50", "99"):
        m = re.search(rf"\s{q}%\s+([\d.]+)(us|ms|s)\b", out)
        if m:
            scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
            lat[q] = float(m.group(1)) * scale
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": rps,
        "p50_ms": lat.get("50", float("nan")),
        "p99_ms": lat.get("99", float("nan")),
        "non2xx": float(errors.group(1)) if errors else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--rows", type=int, default=100_000, help="quickstart rows if no champion")
    ap.add_argument("--skip-mlflow", action="store_true")
    ap.add_argument("--rounds", type=int, default=3, help="alternating floor / bidopt wrk runs")
    args = ap.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset"):
        sys.exit("needs wrk and taskset on PATH")

    work = Path(tempfile.mkdtemp(prefix="bidopt-bench-"))
    try:
        uri = ensure_store(args.tracking_uri, args.rows, work)
        print(f"store: {uri}", flush=True)
        ip = in_process(uri)
        body, record = ip.pop("body"), ip.pop("mlflow_record")
        print(
            f"in process: model {ip['ctr_trees']} trees x {ip['features']} features; "
            f"encode {ip['encode_p50_us']:.1f} µs, fast ctr {ip['fast_ctr_p50_us']:.1f} µs, "
            f"Booster.predict {ip['booster_predict_p50_us']:.1f} µs (p50)",
            flush=True,
        )
        results: dict[str, dict[str, float]] = {}
        rss: dict[str, list[float]] = {}
        env = venv_env(BIDOPT_TRACKING_URI=uri)

        # The framework floor and one bidopt worker run side by side on core 0 and wrk
        # alternates between them, round after round: the host is shared, so a ratio is only
        # fair between runs that saw the same neighbours. The ratio is the median over rounds.
        (work / "floor_app.py").write_text(FLOOR_APP)
        floor_port, bid_port = free_port(), free_port()
        floor = Proc(
            [
                sys.executable, "-m", "uvicorn", "floor_app:app", "--port", str(floor_port),
                "--no-access-log", "--no-proxy-headers", "--no-server-header",
                "--log-level", "warning",
            ],
            env, work, work / "floor.log", "0",
        )  # fmt: skip
        one = Proc(
            [sys.executable, "-m", "serving.cli", "serve", "--port", str(bid_port)],
            env, work, work / "bidopt1.log", "0",
        )  # fmt: skip
        try:
            floor.wait_ok(f"http://127.0.0.1:{floor_port}/", "POST", {})
            one.wait_ok(f"http://127.0.0.1:{bid_port}/v1/bid", "POST", body)
            r = httpx.post(f"http://127.0.0.1:{bid_port}/v1/bid", json=body, timeout=5).json()
            assert r["bids"][0]["bid"] in (True, False), r
            rounds = alternating_rounds(
                f"http://127.0.0.1:{floor_port}/", f"http://127.0.0.1:{bid_port}/v1/bid", body,
                args.rounds, args.duration, work, "/v1/bid",
            )  # fmt: skip
            rss["w1"] = sorted(one.rss_mb().values())
        finally:
            floor.stop()
            one.stop()
        results["floor"] = median_run([f for f, _ in rounds])
        results["bidopt_w1"] = median_run([b for _, b in rounds])
        floor_ratio = statistics.median(b["rps"] / f["rps"] for f, b in rounds)
        p99_scaled = statistics.median(b["p99_ms"] * f["rps"] / ISSUE_FLOOR_RPS for f, b in rounds)
        p99_vs_floor = statistics.median(b["p99_ms"] / f["p99_ms"] for f, b in rounds)

        # two workers (sharing budgets through Redis) on both cores
        for workers in (2,):
            port = free_port()
            cpus = "0,1"
            redis_ctx = redis_server(work)
            redis_url = redis_ctx.__enter__()
            extra = ["--redis-url", redis_url] if redis_url else []
            srv = Proc(
                [
                    sys.executable,
                    "-m",
                    "serving.cli",
                    "serve",
                    "--port",
                    str(port),
                    "--workers",
                    str(workers),
                    *extra,
                ],
                env,
                work,
                work / f"bidopt{workers}.log",
                cpus,
            )
            try:
                srv.wait_ok(f"http://127.0.0.1:{port}/v1/bid", "POST", body)
                time.sleep(3)  # let every worker finish loading
                r = httpx.post(f"http://127.0.0.1:{port}/v1/bid", json=body, timeout=5).json()
                assert r["bids"][0]["bid"] in (True, False), r
                results[f"bidopt_w{workers}"] = wrk(
                    f"http://127.0.0.1:{port}/v1/bid", body, args.duration, work
                )
                rss[f"w{workers}"] = sorted(srv.rss_mb().values())
            finally:
                srv.stop()
                redis_ctx.__exit__(None, None, None)

        # mlflow models serve of the same pCTR model
        if not args.skip_mlflow:
            port = free_port()
            ml = Proc(
                [
                    "mlflow",
                    "models",
                    "serve",
                    "-m",
                    "models:/bidopt-ctr@champion",
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                ],
                venv_env(MLFLOW_TRACKING_URI=uri),
                work,
                work / "mlflow.log",
                "0",
            )
            mbody = {"dataframe_records": [record]}
            try:
                ml.wait_ok(f"http://127.0.0.1:{port}/invocations", "POST", mbody, timeout=180)
                results["mlflow"] = wrk(
                    f"http://127.0.0.1:{port}/invocations", mbody, args.duration, work
                )
            finally:
                ml.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        "\nHTTP, concurrency 8, server on core 0, wrk on core 1 (w2: server on both cores); "
        "floor and bidopt_w1: the median of the alternating rounds"
    )
    print(f"{'server':<14}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    for name, r in results.items():
        print(
            f"{name:<14}{r['rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['non2xx']:>10.0f}"
        )
    b = results["bidopt_w1"]
    checks = []
    if "mlflow" in results:
        checks.append(
            (
                "/v1/bid vs mlflow models serve",
                b["rps"] / results["mlflow"]["rps"],
                BARS["vs_mlflow"],
                ">=",
            )
        )
    checks += [
        ("/v1/bid vs FastAPI floor", floor_ratio, BARS["vs_floor"], ">="),
        ("/v1/bid p99 latency (ms)", b["p99_ms"], BARS["p99_ms"], "<="),
        ("  p99 at a floor of 8,000 req/s", p99_scaled, BARS["p99_ms"], "<="),
        ("per impression p50 (µs)", ip["per_imp_p50_us"], BARS["per_imp_p50_us"], "<="),
        ("batch of 100 p50 (ms)", ip["batch100_ms"], BARS["batch100_ms"], "<="),
        ("worker RSS, 1 worker (MB)", max(rss["w1"]), BARS["rss_mb"], "<="),
    ]
    print("\nbars")
    for label, value, bar, op in checks:
        ok = value >= bar if op == ">=" else value <= bar
        print(f"  {label:<32}{value:>10.2f}   bar {op} {bar:<8} {'ok' if ok else 'MISSED'}")
    print(
        f"\np99: {p99_vs_floor:.2f}x the floor's p99 in the same rounds; scaled to the issue's "
        f"host (floor {ISSUE_FLOOR_RPS:,.0f} req/s): p99 x this round's floor req/s / "
        f"{ISSUE_FLOOR_RPS:,.0f}, median over rounds"
    )
    print(
        f"--workers 2 vs 1: {results['bidopt_w2']['rps'] / b['rps']:.2f}x req/s "
        f"(RSS per process, MB: w1 {rss['w1']}, w2 {[round(x) for x in rss['w2']]})"
    )
    print(
        f"in process: per impression p50 {ip['per_imp_p50_us']:.1f} µs, "
        f"p99 {ip['per_imp_p99_us']:.1f} µs; "
        f"bare Booster.predict one row {ip['booster_predict_p50_us']:.1f} µs; the whole decision "
        f"(encode, both models, bid) = {ip['per_imp_vs_booster']:.2f}x one bare Booster.predict"
    )


if __name__ == "__main__":
    main()
