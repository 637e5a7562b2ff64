"""Compaction of the ledger, one process at a time: closed segments to Parquet, then folded into
the snapshot, then their `.seg` files removed.

It runs as its own process (`bidopt ledger compact`, which an operator may also run from cron),
which the service starts every `ledger_compact_s`: reading and folding months of records must
not share a GIL with the request path. Every worker starts one; a non-blocking lock on
`.compact.lock` in the ledger directory lets one through and the others exit at once, so
workers still share no lock on the write path.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from features.ledger_store import CompactResult, compact
from serving.state.snapshot import FoldResult, fold

log = logging.getLogger("bidopt.ledger")

LOCK: Final = ".compact.lock"


class CompactionBusy(RuntimeError):
    """Another process holds the compaction lock."""


@dataclass
class Report:
    compacted: CompactResult
    folded: FoldResult

    def line(self) -> str:
        c, f = self.compacted, self.folded
        torn = f", {c.torn_bytes} torn bytes skipped" if c.torn_bytes else ""
        return (
            f"compacted {len(c.compacted)} segments ({c.records} records, {c.parts} Parquet "
            f"parts{torn}); snapshot: {len(f.folded)} segments folded in, {f.events} events in "
            f"all, {f.dropped} .seg files removed, {f.seconds:.2f} s"
        )


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(directory / LOCK, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CompactionBusy(f"another compaction of {directory} is running") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def run_compaction(directory: Path) -> Report:
    """Compact and fold (see the module); FileNotFoundError if there is no ledger there,
    CompactionBusy if another process is at it."""
    if not directory.is_dir():
        raise FileNotFoundError(f"no ledger directory at {directory}")
    with _locked(directory):
        return Report(compact(directory), fold(directory))


async def compaction_loop(directory: Path, interval_s: float) -> None:
    """Every `interval_s`, `bidopt ledger compact` in a child process; never dies."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "serving.cli",
                "ledger",
                "compact",
                "--ledger",
                str(directory),
                "--quiet-if-busy",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                out, _ = await child.communicate()
            except asyncio.CancelledError:  # shutting down: compaction is safe to cut anywhere
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
                raise
        except OSError as exc:
            log.error("could not start the ledger compaction: %s", exc)
            continue
        text = out.decode(errors="replace").strip()
        if child.returncode != 0:
            log.error("ledger compaction failed (exit %s): %s", child.returncode, text[-2000:])
        elif text:
            log.info("ledger compaction: %s", text)
