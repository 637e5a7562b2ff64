"""From the ledger to training data: decisions joined with their wins, clicks and conversions
into the canonical impression log (`features.schema`), so the service's own traffic becomes one
more log source for `bidopt train`.

One row per bid decision (an auction we took part in): the request fields the models saw, our
bid, and the outcome by impression id (and campaign, for wins). Lost auctions stay as rows with
`won = false` and our bid: the right-censored observations a win-rate model needs for
first-price shading. A click is an outcome of a won impression; a conversion counts only inside
the attribution window after its click (`attribution_days`), as in training. User counters are
then computed as of each impression by the one definition every log gets
(`features.profiles.add_user_counters`). Rows break the schema's rules only if the ledger was
written by something else than this service: they are quarantined with the reason, as ingest
does, and the counts balance: bid decisions in = rows out + rows quarantined. Sampled no-bid
decisions are counted apart (they are not auctions we took part in), and events that match no
decision are counted and kept aside.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from features.ledger import DECISION, EVENT, ReadStats
from features.ledger_store import read_ledger
from features.profiles import COUNTER_COLUMNS, add_user_counters
from features.schema import REQUEST_FIELDS, SCHEMA, conform
from features.validation import validate

_FROM_REQUEST = tuple(f for f in REQUEST_FIELDS if f not in COUNTER_COLUMNS)


@dataclass
class BuildResult:
    frame: pl.DataFrame
    decisions_in: int  # bid decisions in the time range
    rows_out: int
    rows_quarantined: int
    reasons: dict[str, int]
    quarantined: pl.DataFrame
    nobid_decisions: int  # sampled no-bids (each carries its sample rate): not rows
    events_matched: int
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    conversions_outside_window: int = 0
    ledger: ReadStats = field(default_factory=ReadStats)


def _when(value: Any) -> datetime | None:
    if isinstance(value, str):
        t = datetime.fromisoformat(value)
        return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
    return None


def _us(t: int) -> datetime:
    return datetime.fromtimestamp(t / 1_000_000, UTC)


def build_logs(
    directory: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    attribution_days: float = 7.0,
) -> BuildResult:
    stats = ReadStats()
    decisions: list[Mapping[str, Any]] = []
    events: list[Mapping[str, Any]] = []
    nobids = 0
    lo = int(since.timestamp() * 1e6) if since else None
    hi = int(until.timestamp() * 1e6) if until else None
    for r in read_ledger(directory, stats):
        if r.get("k") == DECISION:
            if (lo is not None and r["t"] < lo) or (hi is not None and r["t"] >= hi):
                continue
            if r["out"].get("bid"):
                decisions.append(r)
            else:
                nobids += 1
        elif r.get("k") == EVENT:
            events.append(r)
    rows, matched, unmatched, late = _join(decisions, events, timedelta(days=attribution_days))
    frame, quarantined, reasons = _to_log(rows)
    return BuildResult(
        frame=frame,
        decisions_in=len(decisions),
        rows_out=frame.height,
        rows_quarantined=quarantined.height,
        reasons=reasons,
        quarantined=quarantined,
        nobid_decisions=nobids,
        events_matched=matched,
        unmatched=unmatched,
        conversions_outside_window=late,
        ledger=stats,
    )


def _join(
    decisions: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    window: timedelta,
) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]], int]:
    wins: dict[tuple[str, str], Mapping[str, Any]] = {}
    clicks: dict[str, Mapping[str, Any]] = {}
    conversions: dict[str, list[Mapping[str, Any]]] = {}
    events = list(events)
    for e in events:
        kind = e["type"]
        if kind == "win":
            wins.setdefault((e["imp"], e["cid"]), e)
        elif kind == "click":
            clicks.setdefault(e["imp"], e)
        else:
            conversions.setdefault(e["imp"], []).append(e)
    used: set[int] = set()
    rows = []
    late = 0
    for d in decisions:
        req, out = d["req"], d["out"]
        imp = str(out["impression_id"])
        row = {name: req.get(name) for name in _FROM_REQUEST}
        row["event_time"] = _when(req.get("event_time")) or _us(d["t"])
        row.update(
            request_id=req.get("request_id"),
            impression_id=imp,
            user_id=req.get("user_id"),
            campaign_id=out.get("campaign_id"),
            creative_id=out.get("creative_id"),
            bid_price=out.get("price"),
        )
        win = wins.get((imp, str(out.get("campaign_id"))))
        click = clicks.get(imp) if win is not None else None
        row["won"] = win is not None
        row["paying_price"] = win.get("price") if win is not None else None
        row["click"] = int(click is not None)
        row["click_time"] = _us(click["t"]) if click is not None else None
        row["conversion"] = 0
        row["conversion_value"] = None
        row["conversion_time"] = None
        for e in (win, click):
            if e is not None:
                used.add(id(e))
        if click is not None:
            for conv in sorted(conversions.get(imp, ()), key=lambda c: c["t"]):
                used.add(id(conv))
                t = _us(conv["t"])
                if row["click_time"] <= t <= row["click_time"] + window:
                    row.update(conversion=1, conversion_value=conv.get("value"), conversion_time=t)
                    break
                late += 1
        rows.append(row)
    # a second win or click for the same impression, or an event for no decision: kept aside
    unmatched = [dict(e) for e in events if id(e) not in used]
    return rows, len(used), unmatched, late


def _to_log(rows: list[dict[str, Any]]) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    columns = [c for c in SCHEMA if c not in COUNTER_COLUMNS]
    if not rows:
        empty = conform(pl.DataFrame(schema={c: SCHEMA[c] for c in columns}))
        return empty, pl.DataFrame(), {}
    candidate = pl.DataFrame(
        {c: [r.get(c) for r in rows] for c in columns},
        schema={c: SCHEMA[c] for c in columns},
        strict=False,
    )
    parsed, reason = validate(candidate)
    bad = reason.is_not_null()
    frame = conform(parsed.filter(~bad))
    frame = add_user_counters(frame).select(list(SCHEMA))
    quarantined = candidate.with_row_index("row_number", offset=1).filter(bad)
    quarantined = quarantined.with_columns(reason=reason.filter(bad))
    counts = reason.filter(bad).str.replace(r":.*$", "").value_counts(sort=True)
    return frame, quarantined, dict(counts.iter_rows())
