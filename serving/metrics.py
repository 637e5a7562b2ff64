"""Prometheus metrics of the service, single- or multi-process.

With one worker, metrics live in a registry owned by the app (so tests can build several apps in
one process). With several workers, `bidopt serve` sets PROMETHEUS_MULTIPROC_DIR to a fresh
directory before the workers start; each worker then writes its values to files there, and
whichever worker answers GET /metrics aggregates all of them (prometheus-client's multiprocess
mode). Gauges that are per-worker facts (model version, readiness) use the live* modes so a
dead worker's values disappear.
"""

from __future__ import annotations

import os
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
)
OTHER: Final = "other"
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST


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
        self._request_children: dict[tuple[str, int], Counter] = {}
        self._bid_children: dict[str, Counter] = {}
        self._latency_children = {e: self.latency.labels(e) for e in (*ENDPOINTS, OTHER)}
        self.pctr = self.predictions.labels("ctr")
        self.pcvr = self.predictions.labels("cvr")
        for model in ("ctr", "cvr"):
            for outcome in ("success", "failure"):
                self.reloads.labels(model, outcome)
        self.ready.set(0)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Label children are cached: `labels()` costs more than the increment itself."""
        key = (endpoint, status)
        child = self._request_children.get(key)
        if child is None:
            child = self.requests.labels(endpoint, str(status))
            self._request_children[key] = child
        child.inc()
        self._latency_children[endpoint].observe(seconds)

    def count_bid(self, outcome: str) -> None:
        child = self._bid_children.get(outcome)
        if child is None:
            child = self._bid_children[outcome] = self.bids.labels(outcome)
        child.inc()

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
