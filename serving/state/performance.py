"""Real performance per campaign, from what the ledger records: spend, wins, clicks,
conversions, eCPC and eCPA against the target, and observed CTR (CVR) over the predicted pCTR
(pCVR) of the same won impressions, over a rolling window.

The last ratio is the operator's view of calibration drift: a model going stale shows as
clicks that no longer match what it predicted for the impressions we bought. Predictions are
those of the bid decisions (kept by impression id, bounded), outcomes those of the accepted
events; both arrive through the ledger's path, and start-up rebuilds them from the ledger.
Counts are kept in hourly buckets so the window slides without keeping events.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, Final

WINDOW_S: Final = 24 * 3600
BUCKET_S: Final = 3600
MAX_PREDICTIONS: Final = 1_000_000
# spend, wins, clicks, conversions, value, predicted clicks (of wins), predicted conversions
FIELDS: Final = ("spend", "wins", "clicks", "conversions", "value", "pred_clicks", "pred_conv")


class Performance:
    def __init__(self, window_s: float = WINDOW_S, max_predictions: int = MAX_PREDICTIONS) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        self._predicted: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max = max_predictions
        self._buckets: dict[str, dict[int, list[float]]] = {}

    def note_bid(self, impression_id: str, pctr: float | None, pcvr: float | None) -> None:
        """A bid's predictions, to compare with what its impression then does."""
        p = self._predicted
        p[impression_id] = (pctr if pctr is not None else math.nan, pcvr or math.nan)
        if len(p) > self._max:
            p.popitem(last=False)

    def on_events(self, records: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            for r in records:
                slot = self._slot(r["cid"], r["t"] / 1e6)
                pctr, pcvr = self._predicted.get(r["imp"], (math.nan, math.nan))
                kind = r["type"]
                if kind == "win":
                    slot[0] += r.get("amount") or 0.0
                    slot[1] += 1
                    if not math.isnan(pctr):
                        slot[5] += pctr
                elif kind == "click":
                    slot[2] += 1
                    if not math.isnan(pcvr):
                        slot[6] += pcvr
                else:
                    slot[3] += 1
                    slot[4] += r.get("value") or 0.0

    def export_state(self) -> dict[str, Any]:
        """The predictions kept and the hourly buckets, for the ledger's snapshot (NaN, a
        prediction the decision did not have, becomes null)."""

        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        with self._lock:
            return {
                "predicted": [[k, num(a), num(b)] for k, (a, b) in self._predicted.items()],
                "buckets": {c: [[b, *v] for b, v in bs.items()] for c, bs in self._buckets.items()},
            }

    def adopt(self, other: Performance) -> None:
        """Take `other`'s predictions and buckets (see InMemoryStore.adopt)."""
        with self._lock:
            self._predicted, self._buckets = other._predicted, other._buckets

    def import_state(self, state: dict[str, Any]) -> None:
        def num(x: float | None) -> float:
            return math.nan if x is None else float(x)

        with self._lock:
            for k, a, b in state["predicted"]:
                self.note_bid(str(k), num(a), num(b))
            for c, bs in state["buckets"].items():
                buckets = self._buckets.setdefault(str(c), {})
                for b, *values in bs:
                    buckets[int(b)] = [float(v) for v in values]

    def _slot(self, campaign_id: str, t: float) -> list[float]:
        buckets = self._buckets.setdefault(campaign_id, {})
        return buckets.setdefault(int(t // BUCKET_S), [0.0] * len(FIELDS))

    def status(self, campaign_id: str, now: float, target: float, goal: str) -> dict[str, Any]:
        first = int((now - self.window_s) // BUCKET_S) + 1
        totals = [0.0] * len(FIELDS)
        with self._lock:
            buckets = self._buckets.get(campaign_id, {})
            for old in [b for b in buckets if b < first - 1]:
                del buckets[old]  # slid out of the window
            for b, values in buckets.items():
                if b >= first:
                    totals = [a + v for a, v in zip(totals, values, strict=True)]
        spend, wins, clicks, conv, value, pred_clicks, pred_conv = totals
        return {
            "window_hours": self.window_s / 3600,
            "spend": spend,
            "wins": int(wins),
            "clicks": int(clicks),
            "conversions": int(conv),
            "conversion_value": value,
            "ecpc": spend / clicks if clicks else None,
            "ecpa": spend / conv if conv else None,
            "target": target,
            "goal": goal,
            "ctr": clicks / wins if wins else None,
            "ctr_over_pctr": clicks / pred_clicks if pred_clicks > 0 else None,
            "cvr_over_pcvr": conv / pred_conv if pred_conv > 0 else None,
        }
