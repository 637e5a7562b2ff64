"""The metrics' fast paths (serving.metrics.fast_observe, fast_inc) write what prometheus_client's
own observe() and inc() write, single- and multi-process: they use its private value objects, so
a prometheus-client upgrade that changes them fails here. Each case runs in a fresh interpreter
(prometheus_client picks its multiprocess mode at import)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# on a bucket bound, between bounds, above the last finite one, negative, infinite, NaN
VALUES = [0.0, 0.0001, 0.00025, 0.0003, 0.001, 0.7, 1.0, 1.5, 250.0, -2.0, math.inf, math.nan]

SCRIPT = """
import json, sys
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from serving.metrics import LATENCY_BUCKETS, fast_inc, fast_observe

registry = CollectorRegistry()
hist = {k: Histogram(k + "_h", "h", ["k"], buckets=LATENCY_BUCKETS, registry=registry)
        for k in ("ref", "fast")}
count = {k: Counter(k + "_c", "c", ["k"], registry=registry) for k in ("ref", "fast")}
observe, inc = fast_observe(hist["fast"].labels("a")), fast_inc(count["fast"].labels("a"))
for v in json.loads(sys.argv[1]):
    hist["ref"].labels("a").observe(v)
    count["ref"].labels("a").inc()
    observe(v)
    inc()
if sys.argv[2] == "multi":
    from prometheus_client import multiprocess
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
lines = generate_latest(registry).decode().splitlines()
print(json.dumps([line for line in lines if not line.startswith("#") and "_created" not in line]))
"""


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_fast_paths_write_what_prometheus_client_writes(tmp_path: Path, mode: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if mode == "multi":
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(VALUES), mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = json.loads(out)
    ref = sorted(line.replace("ref_", "X_") for line in lines if line.startswith("ref_"))
    fast = sorted(line.replace("fast_", "X_") for line in lines if line.startswith("fast_"))
    buckets = [line for line in ref if line.startswith("X_h_bucket")]
    assert len(buckets) == 13 and any(line.startswith("X_c_total") for line in ref)
    assert fast == ref
