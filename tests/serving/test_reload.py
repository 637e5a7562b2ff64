"""Hot reload, refusal of a broken version, an unreachable registry, and several workers."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import BidoptSettings
from tests.helpers.serving import API_KEY, Server, run_server
from tests.redis_server import redis_server

pytestmark = pytest.mark.integration

IMP = {"event_time": "2025-06-01T14:05:00Z", "channel": "web"}


def client_for(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion(uri: str, name: str) -> str:
    return str(client_for(uri).get_model_version_by_alias(name, "champion").version)


def new_version(uri: str, name: str, source: str | None = None) -> str:
    """Register a new version (same artifacts as the champion unless `source` is given)."""
    c = client_for(uri)
    mv = c.get_model_version_by_alias(name, "champion")
    src = source or c.get_model_version_download_uri(name, mv.version)
    return str(c.create_model_version(name, source=src, run_id=mv.run_id).version)


def promote(uri: str, name: str, version: str) -> None:
    client_for(uri).set_registered_model_alias(name, "champion", version)


def corrupt_copy(uri: str, name: str, dst: Path) -> str:
    """The champion's files with a model.txt that is not a LightGBM model."""
    import mlflow.artifacts

    from features.bundle import find_bundle_dir

    c = client_for(uri)
    mv = c.get_model_version_by_alias(name, "champion")
    src = c.get_model_version_download_uri(name, mv.version)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=src, dst_path=str(dst)))
    (find_bundle_dir(local) / "model.txt").write_text("this is not a model\n")
    return local.as_uri()


def ctr_reload_failures(server: Server) -> float:
    """bidopt_model_reloads_total{model="ctr",outcome="failure"} as /metrics says now."""
    found = re.search(
        r'^bidopt_model_reloads_total\{model="ctr",outcome="failure"\} (\S+)$',
        server.client.get("/metrics").text,
        re.MULTILINE,
    )
    assert found is not None, "no ctr failure counter in /metrics"
    return float(found.group(1))


def ctr_version(server: Server) -> str:
    r = server.client.post("/v1/predict", json={"impressions": [IMP]})
    assert r.status_code == 200, r.text
    return str(r.json()["models"]["ctr"]["version"])


def wait_for(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def store_copy(serving_store: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    uri, _ = serving_store
    dst = tmp_path_factory.mktemp("reload-store") / "mlflow.db"
    shutil.copyfile(uri.removeprefix("sqlite:///"), dst)
    return f"sqlite:///{dst}"


@pytest.fixture(scope="module")
def polled(store_copy: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"BIDOPT_RELOAD_INTERVAL_S": "0.5"}
    with run_server(store_copy, tmp_path_factory.mktemp("polled"), env=env) as server:
        yield server


def test_hot_reload_under_load_drops_nothing(polled: Server, store_copy: str) -> None:
    before = ctr_version(polled)
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(base_url=polled.base_url, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/v1/predict", json={"impressions": [IMP]})
                ok = r.status_code == 200
                seen.append((r.status_code, r.json()["models"]["ctr"]["version"] if ok else None))

    worker = threading.Thread(target=loop)
    worker.start()
    try:
        time.sleep(0.3)
        after = new_version(store_copy, "bidopt-ctr")
        promote(store_copy, "bidopt-ctr", after)
        wait_for(lambda: any(v == after for _, v in seen[-5:]))
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join()
    assert after != before
    assert all(status == 200 for status, _ in seen), {s for s, _ in seen}
    versions = [v for _, v in seen]
    switch = versions.index(after)
    assert set(versions[:switch]) == {before} and set(versions[switch:]) == {after}
    assert polled.client.get("/v1/models").json()["models"]["ctr"]["version"] == after
    assert "serving bidopt-ctr v" + after in polled.log()


def test_corrupt_version_is_refused_and_the_old_one_keeps_serving(
    polled: Server, store_copy: str, tmp_path: Path
) -> None:
    good = ctr_version(polled)
    failed_before = ctr_reload_failures(polled)
    bad = new_version(store_copy, "bidopt-ctr", corrupt_copy(store_copy, "bidopt-ctr", tmp_path))
    promote(store_copy, "bidopt-ctr", bad)
    try:
        r = polled.client.post("/admin/reload", headers={"X-API-Key": API_KEY})
        assert r.status_code == 200
        assert r.json()["changed"] is False
        assert "refused" in r.json()["error"] and "not a LightGBM model" in r.json()["error"]
        assert ctr_version(polled) == good
        status = polled.client.get("/v1/models").json()
        assert status["models"]["ctr"]["version"] == good
        assert "not a LightGBM model" in status["last_reload_error"]
        assert {"name": "bidopt-ctr", "version": bad} in [
            {k: x[k] for k in ("name", "version")} for x in status["refused"]
        ]
        # The refusal by /admin/reload (which retries refused versions), and one by the 0.5 s
        # poll when it saw the promotion first: each counted and logged once
        refusals = polled.log().count("model version refused")
        assert refusals in (1, 2), polled.log()
        assert ctr_reload_failures(polled) - failed_before == refusals
        assert f"still serving v{good}" in polled.log()
        time.sleep(1.2)  # polls meanwhile do not retry (or re-log) the refused version
        assert polled.log().count("model version refused") == refusals
        assert ctr_reload_failures(polled) - failed_before == refusals
    finally:
        promote(store_copy, "bidopt-ctr", good)  # leave the store as found


def test_unreachable_registry_is_reported_and_retried(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "mlflow.db"
    settings = BidoptSettings(
        tracking_uri=f"sqlite:///{missing}", reload_interval_s=1, ledger_dir=tmp_path / "ledger"
    )
    with TestClient(create_app(settings)) as client:
        wait_for(lambda: client.app.state.holder.last_reload_error is not None, 10)  # type: ignore[attr-defined]
        r = client.get("/readyz")
        assert r.status_code == 503
        assert (
            r.json()["reason"]
            == f"registry unreachable: no MLflow store at {missing} (set BIDOPT_TRACKING_URI)"
        )
        r = client.post("/v1/predict", json={"impressions": [IMP]})
        assert r.status_code == 503 and r.json()["detail"].startswith("models not loaded")
        imp = {**IMP, "impression_id": "i1", "floor_price": 0.1, "auction_type": "second"}
        cmp = {"campaign_id": "c", "goal": "cpm", "target": 1.0, "max_bid": 2.0}
        r = client.post(
            "/v1/bid", json={"impressions": [imp], "campaigns": [cmp | {"creative_ids": ["cr"]}]}
        )
        assert r.status_code == 503 and r.json()["detail"].startswith("models not loaded"), r.text
        assert client.post("/admin/reload").status_code == 403  # no key configured
        assert "bidopt_registry_errors_total 1.0" in client.get("/metrics").text
    assert not missing.parent.exists()  # nothing created where the store was expected


def test_two_workers_share_metrics_and_reload(store_copy: str, tmp_path: Path) -> None:
    env = {"BIDOPT_RELOAD_INTERVAL_S": "600"}  # only /admin/reload can move them
    with (
        redis_server(tmp_path) as redis_url,  # several workers share budgets: Redis is required
        run_server(
            store_copy, tmp_path, env=env, args=("--workers", "2", "--redis-url", redis_url)
        ) as server,
    ):
        wait_for(lambda: "bidopt_ready 1.0" in server.client.get("/metrics").text, 60)
        for _ in range(30):
            ctr_version(server)
        text = server.client.get("/metrics").text
        assert 'bidopt_requests_total{endpoint="/v1/predict",status="200"} 30.0' in text
        assert text.count('bidopt_model_version{model="ctr"') == 2  # one series per worker
        after = new_version(store_copy, "bidopt-ctr")
        promote(store_copy, "bidopt-ctr", after)
        r = server.client.post("/admin/reload", headers={"X-API-Key": API_KEY})
        assert r.status_code == 200 and r.json()["changed"] is True
        # the other worker hears about it through the shared marker within about a second
        wait_for(lambda: all(ctr_version(server) == after for _ in range(10)), 10)
