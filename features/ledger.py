"""The ledger's record format: what the service writes about every decision and outcome, and
how anything reads it back.

The ledger is the truth from which budgets, counters and training logs are derived, so its
format belongs to `features` (the one package every other may import): serving writes it,
`features.ledger_logs` turns it into the canonical impression log, and nothing needs serving's
code to read it.

A segment file is a sequence of records, each `[u32 length][u32 crc32][payload]` (little
endian) with a JSON payload (orjson). Length-prefixed records with a checksum append in one
`write`, survive a SIGKILL at any byte (a torn last record is detected by its length or its
checksum and skipped with a warning, never a crash at start), and read back without a schema
registry; JSON keeps them readable with `jq` after stripping the 8-byte headers, and closed
segments are compacted to Parquet for the ecosystem (`features.ledger_store`, which also owns
the directory's layout and reads it back whole).

Record kinds (`k`):
- "d", a decision: time `t` (epoch µs), request and impression ids, the request fields the
  models saw (`req`, `features.schema.REQUEST_FIELDS`, IPs already anonymised), model versions,
  pCTR, pCVR, the campaign, creative, price, auction type, floor, rule and propensity, or the
  no-bid reason with the sample rate it was kept at (`w`, to re-weight by 1 / w);
- "e", an accepted event: its id, type (win, click, conversion), impression, campaign, user,
  price or value, and for a win the spend it booked (`amount`, account currency) under the
  campaign-local `day` (and `total` when the campaign has a flight budget).
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

log = logging.getLogger("bidopt.ledger")

HEADER: Final = struct.Struct("<II")
MAX_RECORD_BYTES: Final = 16 << 20  # a length beyond this is a torn or corrupt header
SEGMENT_SUFFIX: Final = ".seg"
DECISION: Final = "d"
EVENT: Final = "e"


def frame(record: dict[str, Any]) -> bytes:
    """One record, framed. Times may be datetimes (orjson writes ISO-8601, naive ones as UTC)."""
    payload = orjson.dumps(record, option=orjson.OPT_NAIVE_UTC)
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass
class ReadStats:
    """What reading a segment found: records read, and a torn or corrupt tail (bytes skipped)."""

    records: int = 0
    torn_bytes: int = 0
    torn_at: int | None = None


def read_segment(path: Path, stats: ReadStats | None = None) -> Iterator[dict[str, Any]]:
    """The records of one segment, in order. A torn or corrupt record ends the segment: the
    rest of the file is reported (warning, `stats`) and skipped; a SIGKILL mid-write leaves
    exactly that."""
    stats = stats if stats is not None else ReadStats()
    data = path.read_bytes()
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < HEADER.size:
            break
        length, crc = HEADER.unpack_from(data, pos)
        start = pos + HEADER.size
        if length > MAX_RECORD_BYTES or start + length > end:
            break
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            break
        try:
            record = orjson.loads(payload)
        except orjson.JSONDecodeError:
            break
        stats.records += 1
        pos = start + length
        yield record
    if pos < end:
        stats.torn_bytes, stats.torn_at = end - pos, pos
        log.warning(
            "ledger segment %s: %d bytes at offset %d are a torn or corrupt record; skipped",
            path.name,
            end - pos,
            pos,
        )
