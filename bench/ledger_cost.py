"""What the ledger costs a bid: /v1/bid's handler with and without decision logging, in process.

    python bench/ledger_cost.py [--tracking-uri URI] [--blocks 40] [--per-block 300]

The handler (`serving.api.scoring.bid`) of a running app (lifespan entered: models loaded and
proven, ledger writer thread running, flushing every `ledger_flush_ms`, 20 ms by default) is
called directly on a validated one-impression body, in alternating blocks: A with the real
`Ledger.log_decision` (which serialises and frames the decision), B with it replaced by a no-op.
The writer thread runs meanwhile in the same process, so its share of the GIL is in A's time
too. Printed: µs per impression for each, the difference (median of the paired blocks), and the
bar (at most 5 µs). Also what framing one record costs alone (orjson + crc32, hot), measured on
the records the run wrote: the floor of the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serve_ab import example_body  # noqa: E402
from serve_load import ensure_store  # noqa: E402

BAR_US = 5.0


async def run(uri: str, blocks: int, per_block: int, work: Path) -> None:
    from starlette.requests import Request

    from features.ledger import frame
    from features.ledger_store import read_ledger
    from serving.api.schemas import V1BidRequest
    from serving.api.scoring import bid
    from serving.app import create_app
    from serving.settings import BidoptSettings

    app = create_app(
        BidoptSettings(tracking_uri=uri, ledger_dir=work / "ledger", nobid_sample_rate=1.0)
    )
    body = V1BidRequest.model_validate(example_body(uri))
    async with app.router.lifespan_context(app):
        holder = app.state.holder
        while holder.current is None:
            await asyncio.sleep(0.2)
        request = Request({"type": "http", "app": app, "headers": [], "method": "POST"})
        ledger = app.state.service.ledger
        real = ledger.log_decision

        def noop(*args: object) -> None:
            return None

        async def block() -> float:
            start = time.perf_counter()
            for _ in range(per_block):
                await bid(body, request)
            return (time.perf_counter() - start) / per_block * 1e6

        for _ in range(3):  # warm-up
            await block()
        on, off = [], []
        for i in range(blocks):
            order = (True, False) if i % 2 == 0 else (False, True)
            for logging in order:
                ledger.log_decision = real if logging else noop  # type: ignore[method-assign]
                (on if logging else off).append(await block())
        ledger.log_decision = real  # type: ignore[method-assign]
        await asyncio.sleep(0.5)  # the last flush
    diffs = [a - b for a, b in zip(on, off, strict=True)]
    records = list(read_ledger(work / "ledger"))
    started = time.perf_counter()
    for r in records:
        frame(r)
    writer_us = (time.perf_counter() - started) / max(len(records), 1) * 1e6
    print(f"{len(records):,} decisions in the ledger ({blocks * per_block:,} logged)")
    print(
        f"/v1/bid handler, one impression: with logging {statistics.median(on):.1f} µs, without "
        f"{statistics.median(off):.1f} µs (medians of {blocks} blocks of {per_block})"
    )
    added = statistics.median(diffs)
    verdict = "ok" if added <= BAR_US else "MISSED"
    print(
        f"added per impression (median of paired blocks): {added:.2f} µs, bar <= {BAR_US} {verdict}"
    )
    print(f"framing one decision record alone: {writer_us:.2f} µs (orjson + crc32)")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--blocks", type=int, default=40)
    ap.add_argument("--per-block", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bidopt-ledger-cost-") as tmp:
        work = Path(tmp)
        uri = ensure_store(args.tracking_uri, args.rows, work)
        asyncio.run(run(uri, args.blocks, args.per_block, work))


if __name__ == "__main__":
    main()
