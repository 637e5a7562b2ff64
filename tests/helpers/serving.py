"""What the serving tests share besides fixtures: the live server they start and the tiny
bundles they train.

`run_server` starts the real service (`python -m serving.cli serve`, i.e. uvicorn) as a
subprocess on a free loopback port and waits until /readyz says both models are loaded;
`Server.client` carries the API key the servers run with.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_tiny_bundles(workdir: Path, rows: int = 20_000) -> dict[str, Path]:
    """Two small bundles (ctr, cvr) saved under `workdir/<target>/bundle`, no MLflow."""
    import lightgbm as lgb
    import numpy as np
    import polars as pl

    from features.batch import encode_matrix
    from features.bundle import ModelBundle
    from features.calibrator import Calibrator
    from features.spec_fit import fit_spec
    from features.synth import generate
    from training.pyfunc_model import request_examples

    logs = generate(rows, seed=7, days=3)
    out = {}
    for target, frame, label in (
        ("ctr", logs, "click"),
        ("cvr", logs.filter(pl.col("click") == 1), "conversion"),
    ):
        spec = fit_spec(frame, min_count=5, label=label, lift_key="campaign_id", lift_prior=20.0)
        x = encode_matrix(frame, spec)
        y = frame.get_column(label).fill_null(0).to_numpy().astype(np.float64)
        if y.sum() == 0:  # a tiny sample may have no conversion: keep the model trainable
            y[: max(1, len(y) // 20)] = 1.0
        params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1}
        data = lgb.Dataset(x, y, feature_name=spec.names, categorical_feature=spec.categorical)
        booster = lgb.train(params, data, num_boost_round=40)
        booster = lgb.Booster(model_str=booster.model_to_string())
        calibrator = Calibrator("isotonic").fit(booster.predict(x), y)
        meta = {
            "name": f"bidopt-{target}",
            "target": target,
            "trained_at": "2025-01-01T00:00:00+00:00",
            "metrics": {},
            "params": params,
            "input_example": request_examples(frame, 5),
        }
        out[target] = ModelBundle(booster, spec, calibrator, meta).save(workdir / target / "bundle")
    return out


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
        self.proc = proc
        self.base_url = base_url
        self.log_path = log_path
        # the servers here run with API_KEY: every write carries it unless a test says otherwise
        self.client = httpx.Client(base_url=base_url, timeout=30.0, headers={"X-API-Key": API_KEY})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_server(
    tracking_uri: str,
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    wait_ready: bool = True,
    timeout: float = 90.0,
) -> Iterator[Server]:
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("BIDOPT_", "PROMETHEUS_"))}
    full_env.update(
        {
            "BIDOPT_TRACKING_URI": tracking_uri,
            "BIDOPT_API_KEY": API_KEY,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
    )
    cmd = [sys.executable, "-m", "serving.cli", "serve", "--port", str(port), *args]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=workdir, env=full_env, stdout=log_file, stderr=log_file)
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + timeout
        want = "/readyz" if wait_ready else "/healthz"
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{server.log()}")
            try:
                if server.client.get(want).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready after {timeout}s:\n{server.log()}")
            time.sleep(0.2)
        yield server
    finally:
        server.client.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
