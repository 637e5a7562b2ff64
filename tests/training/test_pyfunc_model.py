"""`mlflow models serve` on a registered version answers with the in-process predictions."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cli import clean_env

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow models serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s")


def test_mlflow_models_serve_champion(trained_store):
    uri, workdir = trained_store
    from training import tracking

    tracking.connect(uri)
    bundle = tracking.load_bundle("models:/bidopt-ctr@champion")
    examples = bundle.meta["input_example"]
    from training.pyfunc_model import frame_from_records

    expected = bundle.predict_frame(frame_from_records(examples))
    port = _free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow_bin), "models", "serve", "-m", "models:/bidopt-ctr@champion",
           "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    log = (workdir / f"serve-{port}.log").open("w")
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=clean_env(MLFLOW_TRACKING_URI=uri), stdout=log, stderr=log
    )
    try:
        _wait(f"http://127.0.0.1:{port}/ping", proc)
        body = json.dumps({"dataframe_records": examples}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            answer = json.loads(r.read())
        served = np.asarray(answer["predictions"], dtype=np.float64)
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-12)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
