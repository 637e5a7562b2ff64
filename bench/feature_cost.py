"""What /v1/bid's per-request features cost, and whether the rest of the service kept its speed.

    python bench/feature_cost.py --base c094bd9 [--tracking-uri URI] [--pairs 40]
                                 [--per-block 200]

bench/serve_ab.py compares the whole service with an older commit's. Since c094bd9 the service
does more per request because issues require it, so that A/B mixes two questions: what do the
features cost, and did the code that moved (the restructure) keep its speed? This answers each
on its own, with the whole ASGI app in process (the lane, validation, scoring, the response;
no HTTP), on a one-impression /v1/bid body from the champion's input example.

1. Each feature's cost, in one process of this tree: alternating blocks with the feature on,
   then off (the order swapped every pair), so both saw the same host, heap and caches:
   - `decision record`: the ledger record of every bid and the performance window
     (`Service.log_decisions`; off = a no-op), issues 13 and 14;
   - `body deadline`: the body read within a size bound and a time bound (`BodyReader.read`,
     issue 12's 413 and 408; off = one plain `receive()`);
   - `time check`: event_time converted to UTC and held to 1970-2200 (issue 12's calendar-end
     500s; off = the same request model without that validator).
2. The house: this tree with all three off against `--base`, each in its own process with the
   same models, blocks alternated between the two; then this tree as it is against `--base`.

Printed: µs per request added by each feature (median of the paired differences) and its ratio;
the pairwise median ratio (and quartiles) of each two-process comparison. These machines are
shared and their speed drifts: only the paired figures mean anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ("decision record", "body deadline", "time check")


# -- the worker: one app in process, one tree --------------------------------------------


def worker(tree: str, uri: str, body_path: str) -> None:
    """Answers lines `N OFF` on stdin (OFF: comma-separated feature numbers, or -) with the µs
    per request of N requests; `ready` once the models are loaded."""
    sys.path.insert(0, tree)
    from serving.app import create_app
    from serving.settings import BidoptSettings

    os.chdir(tempfile.mkdtemp(prefix="bidopt-feature-cost-"))
    options: dict[str, Any] = {"tracking_uri": uri}
    if "ledger_dir" in BidoptSettings.model_fields:
        options["ledger_dir"] = Path.cwd() / "ledger"
    app = create_app(BidoptSettings(**options))
    body = Path(body_path).read_bytes()
    asyncio.run(_serve_blocks(app, body, switchable=Path(tree).resolve() == ROOT))


async def _serve_blocks(app: Any, body: bytes, *, switchable: bool) -> None:
    scope = {
        "type": "http", "http_version": "1.1", "method": "POST", "path": "/v1/bid",
        "raw_path": b"/v1/bid", "root_path": "", "scheme": "http", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    async with app.router.lifespan_context(app):
        while getattr(app.state, "holder", None) is None or app.state.holder.current is None:
            await asyncio.sleep(0.1)
        for _ in range(300):  # warm-up; also builds the middleware stack
            await app(dict(scope), receive, send)
        switches = _switches(app) if switchable else []  # another tree: as it is
        loop = asyncio.get_running_loop()
        print("ready", flush=True)
        while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            n, off = line.split()
            wanted = set() if off == "-" else {int(k) for k in off.split(",")}
            if wanted - set(range(len(switches))):
                raise SystemExit(f"no switch for features {sorted(wanted)} in this tree")
            for k, switch in enumerate(switches):
                switch(k in wanted)
            started = time.perf_counter()
            for _ in range(int(n)):
                await app(dict(scope), receive, send)
            spent = (time.perf_counter() - started) / int(n) * 1e6
            if statuses != {200}:
                raise SystemExit(f"/v1/bid answered {sorted(statuses)}")
            await asyncio.sleep(0.005)  # let the ledger writer and the watchdog run
            print(f"{spent:.3f}", flush=True)


def _switches(app: Any) -> list[Any]:
    """One `switch(off: bool)` per FEATURES entry (this tree only)."""
    from datetime import datetime

    from pydantic import Field

    from serving.api import schemas
    from serving.api.scoring import bid
    from serving.lane import Lane, json_endpoint
    from serving.middleware import BodyReader

    service_type = type(app.state.service)
    log_decisions, read = service_type.log_decisions, BodyReader.read

    def no_log(*_: object) -> None:
        return None

    async def plain_read(self: BodyReader, scope: Any, receive: Any) -> bytes:
        return (await receive())["body"]  # type: ignore[no-any-return]

    class UncheckedImpression(schemas.BidImpression):
        event_time: datetime = Field()

    class UncheckedRequest(schemas.V1BidRequest):
        impressions: list[UncheckedImpression] = Field(min_length=1)  # type: ignore[assignment]

    lane = app.middleware_stack
    while not isinstance(lane, Lane):
        lane = lane.app
    checked, unchecked = lane.handlers["/v1/bid"], json_endpoint(UncheckedRequest, bid)

    def records(off: bool) -> None:
        service_type.log_decisions = no_log if off else log_decisions

    def deadline(off: bool) -> None:
        BodyReader.read = plain_read if off else read  # type: ignore[method-assign]

    def time_check(off: bool) -> None:
        lane.handlers = {**lane.handlers, "/v1/bid": unchecked if off else checked}

    return [records, deadline, time_check]


# -- the driver ------------------------------------------------------------------------------


class Worker:
    def __init__(self, tree: Path, uri: str, body: Path) -> None:
        self.tree = tree
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(tree), uri, str(body)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        if self.stdout.readline().strip() != "ready":
            raise SystemExit(f"the worker for {tree} did not start")

    def block(self, n: int, off: tuple[int, ...] = ()) -> float:
        self.stdin.write(f"{n} {','.join(map(str, off)) or '-'}\n")
        self.stdin.flush()
        return float(self.stdout.readline())


def paired(a: Any, b: Any, pairs: int) -> tuple[list[float], list[float]]:
    """`pairs` pairs of blocks, A then B and B then A in turn."""
    xs, ys = [], []
    for i in range(pairs):
        if i % 2 == 0:
            xs.append(a())
            ys.append(b())
        else:
            ys.append(b())
            xs.append(a())
    return xs, ys


def report_ratio(label: str, xs: list[float], ys: list[float]) -> None:
    ratios = [x / y for x, y in zip(xs, ys, strict=True)]
    q = statistics.quantiles(ratios, n=4)
    print(
        f"{label}: {statistics.median(xs):.1f} vs {statistics.median(ys):.1f} µs per request; "
        f"pairwise median {statistics.median(ratios):.3f} (quartiles {q[0]:.3f}-{q[2]:.3f})",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--base", required=True, help="git revision to compare the house against")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--rows", type=int, default=100_000, help="quickstart rows if no champion")
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--per-block", type=int, default=200)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from serve_ab import add_worktree, example_body, remove_worktree
    from serve_load import ensure_store

    work = Path(tempfile.mkdtemp(prefix="bidopt-feature-cost-"))
    base_tree = add_worktree(args.base, work / "base")
    workers: list[Worker] = []
    try:
        uri = ensure_store(args.tracking_uri, args.rows, work)
        body = work / "body.json"
        body.write_text(json.dumps(example_body(uri)))
        head = Worker(ROOT, uri, body)
        workers.append(head)
        n, everything = args.per_block, tuple(range(len(FEATURES)))
        print(f"{args.pairs} pairs of blocks of {n} one-impression /v1/bid requests, in process")
        for k, name in enumerate(FEATURES):
            on, off = paired(lambda: head.block(n), lambda k=k: head.block(n, (k,)), args.pairs)
            added = statistics.median([a - b for a, b in zip(on, off, strict=True)])
            ratio = statistics.median([a / b for a, b in zip(on, off, strict=True)])
            print(f"{name}: adds {added:.1f} µs per request (on / off {ratio:.3f})", flush=True)
        base = Worker(base_tree, uri, body)
        workers.append(base)
        xs, ys = paired(lambda: head.block(n, everything), lambda: base.block(n), args.pairs)
        report_ratio(f"the house: this tree without the three / {args.base}", xs, ys)
        xs, ys = paired(lambda: head.block(n), lambda: base.block(n), args.pairs)
        report_ratio(f"this tree / {args.base}", xs, ys)
    finally:
        for w in workers:
            w.proc.kill()
        remove_worktree(base_tree)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:])
    else:
        main()
