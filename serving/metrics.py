"""Prometheus metrics of the service, single- or multi-process.

With one worker, metrics live in a registry owned by the app (so tests can build several apps in
one process). With several workers, `bidopt serve` sets PROMETHEUS_MULTIPROC_DIR to a fresh
directory before the workers start; each worker then writes its values to files there, and
whichever worker answers GET /metrics aggregates all of them (prometheus-client's multiprocess
mode). Gauges that are per-worker facts (model version, readiness) use the live* modes so a
dead worker's values disappear.
"""

from __future__ import annotations

import math
import os
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
PROBABILITY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
ENDPOINTS: Final = (
    "/v1/predict",
    "/v1/bid",
    "/healthz",
    "/readyz",
    "/v1/models",
    "/metrics",
    "/admin/reload",
    "/v1/events",
    "/v1/campaigns",
    "/v1/win",
    "/openrtb2/bid",
)
OTHER: Final = "other"
PERFORMANCE_GAUGES: Final = {
    "spend": "Spend (account currency)",
    "wins": "Won impressions",
    "clicks": "Clicks",
    "conversions": "Conversions",
    "ecpc": "Spend per click",
    "ecpa": "Spend per conversion",
    "ctr_over_pctr": "Observed clicks over the predicted pCTR of the won impressions",
    "cvr_over_pcvr": "Observed conversions over the predicted pCVR of the clicks",
}
SUMMED: Final = frozenset({"spend", "wins", "clicks", "conversions"})
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST


class HandlingTimes:
    """A cheap rolling p99 of one endpoint's handling time (ms): a ring of recent values,
    sorted every `every` observations (per worker: it is this worker's deadline estimate)."""

    def __init__(self, window: int = 1000, every: int = 50) -> None:
        self._ring: deque[float] = deque(maxlen=window)
        self._every = every
        self._since = 0
        self.p99_ms = 0.0

    def observe(self, seconds: float) -> None:
        self._ring.append(seconds * 1000.0)
        self._since += 1
        if self._since >= self._every:
            self._since = 0
            ordered = sorted(self._ring)
            self.p99_ms = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def fast_observe(child: Histogram) -> Callable[[float], None]:
    """`child.observe` without prometheus_client's per-call checks (label state, exemplar,
    a Python loop over the buckets): a bisect and two increments of the child's own values.
    On a one-impression bid the five metric updates cost a tenth of the request in process.
    It reads the child's private `_sum`, `_buckets` and `_upper_bounds` (the same since
    prometheus-client 0.4; pinned below 1); tests/serving/test_metrics.py holds the output
    to `observe`'s, in single- and multi-process mode."""
    add_sum = child._sum.inc
    add_bucket = [bucket.inc for bucket in child._buckets]
    bounds = list(child._upper_bounds)

    def observe(amount: float) -> None:
        add_sum(amount)
        if not math.isnan(amount):  # observe() puts NaN in no bucket
            add_bucket[bisect_left(bounds, amount)](1)

    return observe


def fast_inc(child: Counter) -> Callable[[], None]:
    """`child.inc()` by one, without the per-call checks (as `fast_observe`)."""
    value = child._value

    def inc() -> None:
        value.inc(1)

    return inc


def multiprocess_dir() -> str | None:
    path = os.environ.get(MULTIPROC_ENV, "").strip()
    return path or None


class Metrics:
    """The service's metric families; one instance per app."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "bidopt_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "bidopt_request_latency_seconds",
            "Time from request start to response start, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Histogram(
            "bidopt_prediction",
            "Served calibrated probabilities, by model (ctr, cvr)",
            ["model"],
            buckets=PROBABILITY_BUCKETS,
            registry=r,
        )
        self.bids = Counter(
            "bidopt_bids",
            "Bid decisions by outcome (bid or a no-bid reason)",
            ["outcome"],
            registry=r,
        )
        self.model_version = Gauge(
            "bidopt_model_version",
            "Registered model version served, by model; one series per worker in multiprocess",
            ["model", "name"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.ready = Gauge(
            "bidopt_ready",
            "1 when both models are loaded (min over workers)",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.reloads = Counter(
            "bidopt_model_reloads",
            "Model reload attempts that changed versions (success) or were refused (failure)",
            ["model", "outcome"],
            registry=r,
        )
        self.registry_errors = Counter(
            "bidopt_registry_errors", "Failed attempts to reach the model registry", registry=r
        )
        self.state_degraded = Gauge(
            "bidopt_state_degraded",
            "1 when Redis is unreachable and this worker bids on local state (max over workers)",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.campaigns_loaded = Gauge(
            "bidopt_campaigns_loaded",
            "Campaigns loaded from the campaigns file",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.campaign_reloads = Counter(
            "bidopt_campaign_reloads",
            "Campaigns-file reloads that were applied (success) or refused (failure)",
            ["outcome"],
            registry=r,
        )
        self.fx_reloads = Counter(
            "bidopt_fx_reloads",
            "FX-file reloads that were applied (success) or refused (failure)",
            ["outcome"],
            registry=r,
        )
        self.events = Counter(
            "bidopt_events",
            "Events received, by type and outcome (accepted, duplicate)",
            ["type", "outcome"],
            registry=r,
        )
        self.openrtb_nobids = Counter(
            "bidopt_openrtb_nobids",
            "OpenRTB requests answered 204, by reason",
            ["reason"],
            registry=r,
        )
        self.ledger_available = Gauge(
            "bidopt_ledger_available",
            "1 when the ledger can be written (else bidding stops: ledger_unavailable)",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.campaign_perf = {
            name: Gauge(
                f"bidopt_campaign_{name}",
                f"{doc}, per campaign, over the rolling window (this worker's ledger)",
                ["campaign"],
                multiprocess_mode="livesum" if name in SUMMED else "liveall",
                registry=r,
            )
            for name, doc in PERFORMANCE_GAUGES.items()
        }
        for outcome in ("success", "failure"):
            self.campaign_reloads.labels(outcome)
            self.fx_reloads.labels(outcome)
        self.state_degraded.set(0)
        self._request_children: dict[tuple[str, int], Callable[[], None]] = {}
        self._bid_children: dict[str, Callable[[], None]] = {}
        self._latency_children = {
            e: fast_observe(self.latency.labels(e)) for e in (*ENDPOINTS, OTHER)
        }
        self.observe_pctr = fast_observe(self.predictions.labels("ctr"))
        self.observe_pcvr = fast_observe(self.predictions.labels("cvr"))
        for model in ("ctr", "cvr"):
            for outcome in ("success", "failure"):
                self.reloads.labels(model, outcome)
        self.ready.set(0)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Label children are cached: `labels()` costs more than the increment itself."""
        key = (endpoint, status)
        inc = self._request_children.get(key)
        if inc is None:
            inc = fast_inc(self.requests.labels(endpoint, str(status)))
            self._request_children[key] = inc
        inc()
        self._latency_children[endpoint](seconds)

    def set_performance(self, campaign_id: str, perf: dict[str, float | int | None]) -> None:
        for name, gauge in self.campaign_perf.items():
            value = perf.get(name)
            gauge.labels(campaign_id).set(math.nan if value is None else float(value))

    def count_bid(self, outcome: str) -> None:
        inc = self._bid_children.get(outcome)
        if inc is None:
            inc = self._bid_children[outcome] = fast_inc(self.bids.labels(outcome))
        inc()

    def set_versions(self, versions: dict[str, tuple[str, str]]) -> None:
        """`{"ctr": (name, version), ...}`: non-numeric versions are reported as -1."""
        for model, (name, version) in versions.items():
            value = float(version) if version.isdigit() else -1.0
            self.model_version.labels(model, name).set(value)

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
