"""`bidopt train --dask`: a real LocalCluster of 2 workers, the real CLI, a real SQLite store.

The cluster is started once for the module (in this process, so the test can find a worker's
PID and kill it); the CLI subprocesses reach it by its tcp:// address.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient

from tests.helpers.cli import bidopt_command

pytestmark = pytest.mark.integration

ROWS, PART_ROWS, SEED = 80_000, 40_000, 3
FAST = ["--set", "num_boost_round=80", "--set", "num_threads=1"]


@pytest.fixture(scope="module")
def cluster():
    from training.cluster import connect

    with connect("local:2") as c:
        yield c


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> tuple[Path, Path]:
    """The same synthetic log as a date-partitioned dataset and as one file (file order)."""
    from features.synth_parts import write_dataset

    root = tmp_path_factory.mktemp("dask-logs")
    summary = write_dataset(root / "ds", ROWS, seed=SEED, part_rows=PART_ROWS)
    single = root / "all.parquet"
    pl.concat([pl.read_parquet(f) for f in sorted(summary.files)]).write_parquet(single)
    return root / "ds", single


def _cli(args: list, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [*bidopt_command(), *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_dask_model_matches_the_local_path(tmp_path, store, cluster, logs):
    from training.config import load_config
    from training.pipeline import DataSource, load_data, train

    uri, env = store
    ds, single = logs
    proc = _cli(
        ["train", "ctr", "--logs", ds, "--dask", cluster.info.scheduler, *FAST], tmp_path, env
    )
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    assert "registered bidopt-ctr version 1" in " ".join(out.split())

    logs_, fp = load_data(DataSource(kind="logs", path=str(ds)))  # the same folder, locally
    cfg = load_config("ctr", None, [s for s in FAST if s != "--set"])
    local = train(logs_, fp, cfg, register=False)

    client = MlflowClient(uri, registry_uri=uri)
    version = client.get_model_version("bidopt-ctr", "1")
    run = client.get_run(version.run_id)
    # the same windows as the local path, and a test logloss within 0.5% of it
    for k in ("rows_train", "rows_valid", "rows_test", "positives_test"):
        assert int(run.data.params[f"data.split_{k}"]) == local.split_info[k], k
    dask_ll, local_ll = run.data.metrics["logloss"], local.metrics["logloss"]
    assert abs(dask_ll / local_ll - 1) <= 0.005, (dask_ll, local_ll)
    # the run records the engine and the cluster
    assert run.data.params["engine"] == "dask"
    assert run.data.params["dask.workers"] == "2"
    assert int(run.data.params["dask.threads"]) >= 2
    assert int(run.data.params["dask.memory_bytes"]) > 0
    assert run.data.tags["bidopt.engine"] == "dask"
    # the registered bundle is the local path's format: it loads and scores like any other
    from training.tracking import connect, load_bundle

    connect(uri)
    bundle = load_bundle("models:/bidopt-ctr/1")
    assert bundle.spec.names == local.bundle.spec.names
    p = bundle.predict_frame(pl.read_parquet(single).head(200), 1)
    assert p.shape == (200,) and np.all((p > 0) & (p < 1))


def test_bad_address_and_missing_logs_are_one_line(mlflow_uri):
    from typer.testing import CliRunner

    from bidopt_cli import app

    for args, needle in (
        (["--dask", "localhost:8786"], "expected a scheduler address"),
        (["--dask", "local:0"], "local:N needs"),
        (["--dask", "local:2"], "--dask needs --logs"),
        (["--dask", "local:2", "--source", "ipinyou"], "reads canonical Parquet"),
        (["--dask", "tcp://127.0.0.1:9", "--logs", "x"], "no Dask scheduler answered"),
    ):
        result = CliRunner().invoke(app, ["train", "ctr", *args, "--set", "connect_timeout_s=2"])
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and needle in lines[0], result.stderr


def test_fits_sharing_a_cluster_wait_for_the_lock(cluster):
    from distributed import Lock

    from training.cluster import FIT_LOCK, ClusterError, guarded_fit

    with cluster.client.as_current():
        held = Lock(FIT_LOCK)
    assert held.acquire(timeout=5)
    try:
        with pytest.raises(ClusterError, match="another LightGBM fit holds the cluster"):
            guarded_fit(cluster, lambda: 1, timeout_s=5, pause_grace_s=5, lock_timeout_s=0.5)
    finally:
        held.release()
    assert guarded_fit(cluster, lambda: 7, timeout_s=5, pause_grace_s=5, lock_timeout_s=5) == 7


def test_a_fit_past_its_time_bound_is_abandoned(cluster):
    from training.cluster import ClusterError, guarded_fit

    start = time.monotonic()
    with pytest.raises(ClusterError, match="did not finish within 1 s"):
        guarded_fit(cluster, lambda: time.sleep(30), timeout_s=1, pause_grace_s=5, lock_timeout_s=5)
    assert time.monotonic() - start < 10


def test_stopping_point_is_lightgbm_early_stopping():
    """The post-hoc cut equals `lgb.early_stopping` on the same validation rows."""
    from training.dask_train import stopping_point, valid_curve

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6000, 4))
    y = (rng.random(6000) < 1 / (1 + np.exp(-x[:, 0]))).astype(float)
    xt, yt, xv, yv = x[:3000], y[:3000], x[3000:], y[3000:]
    params = {"objective": "binary", "verbosity": -1, "learning_rate": 0.3, "num_threads": 1}
    full = lgb.train(params, lgb.Dataset(xt, yt), num_boost_round=200)
    curve, raw = valid_curve(full, xv, yv)
    np.testing.assert_allclose(raw, full.predict(xv, raw_score=True), rtol=0, atol=1e-9)
    stopped = lgb.train(
        params,
        lgb.Dataset(xt, yt),
        num_boost_round=200,
        valid_sets=[lgb.Dataset(xv, yv)],
        callbacks=[lgb.early_stopping(10, verbose=False)],
    )
    assert stopped.best_iteration < 200  # the check means something: it did stop early
    assert stopping_point(curve, 10) == stopped.best_iteration


def _fitters(cluster) -> dict:
    from training.dask_train import DaskFitter
    from training.fit import fit_booster

    return {"local": fit_booster, "dask": DaskFitter(cluster, _dask_settings())}


def _dask_settings() -> dict:
    from training.config import load_config

    return load_config("ctr").section("dask")


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_fitter_contract(engine, cluster, small_logs):
    """Every engine (`pipeline.Fitter`: the local fit and the Dask one) returns the forest cut
    at its best iteration, the validation scores of that forest, the spec's feature names; and
    weights count."""
    from features.batch import encode_matrix
    from features.spec_fit import fit_spec
    from training.config import load_config
    from training.splits import LABEL, make_split

    split, _ = make_split(small_logs.head(15_000), "ctr")
    spec = fit_spec(split.train, label=LABEL)
    xt, xv = encode_matrix(split.train, spec), encode_matrix(split.valid, spec)
    yt = split.train.get_column(LABEL).cast(pl.Float64).to_numpy()
    yv = split.valid.get_column(LABEL).cast(pl.Float64).to_numpy()
    config = load_config("ctr", None, ["num_boost_round=40", "num_threads=1"]).lightgbm
    # positives weighted down tenfold: a fit that ignored weights would predict their rate
    w = np.where(yt == 1, 0.1, 1.0)
    res = _fitters(cluster)[engine](xt, yt, xv, yv, spec, config, weight=w)
    assert 1 <= res.best_iteration <= 40
    assert res.booster.num_trees() == res.best_iteration
    assert res.booster.feature_name() == spec.names
    np.testing.assert_allclose(res.valid_pred, res.booster.predict(xv), rtol=0, atol=1e-9)
    assert len(res.valid_logloss) >= res.best_iteration
    assert res.valid_pred.mean() < yv.mean() / 4, (res.valid_pred.mean(), yv.mean())


def test_a_partition_quarantines_its_bad_rows(tmp_path, small_logs):
    """Each partition is validated by ingest's rules on its worker: bad rows are counted and
    written with their reason, never dropped silently (rows_in = used + quarantined)."""
    from training.dask_data import clean_part

    part = small_logs.head(50).with_columns(
        bid_price=pl.when(pl.int_range(pl.len()) == 7).then(-1.0).otherwise(pl.col("bid_price"))
    )
    frame, stats = clean_part(
        part.to_pandas(use_pyarrow_extension_array=True), 3, "ctr", str(tmp_path)
    )
    assert (stats["rows_in"], stats["rows_used"], stats["rows_quarantined"]) == (50, 49, 1)
    bad = pl.read_csv(tmp_path / "part-00003.quarantine.csv")
    assert bad.height == 1 and bad["row_number"][0] == 8 and "bid_price" in bad["reason"][0]
    assert frame.height == part.filter(pl.col("won").fill_null(True)).height - 1


# last in the module: it kills one of the module cluster's workers
def test_worker_killed_mid_fit_is_one_line_and_registers_nothing(tmp_path, store, cluster, logs):
    uri, env = store
    ds, _ = logs
    slow = ["--set", "num_boost_round=200000", "--set", "learning_rate=0.001"]
    pids = cluster.worker_pids()
    half = ds / "date=*" / "part-00000.parquet"  # a glob: one of the two parts, fewer rows
    proc = _cli(
        ["train", "ctr", "--logs", half, "--dask", cluster.info.scheduler, *slow], tmp_path, env
    )
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        busy = cluster.client.processing()
        for worker, keys in busy.items():
            if any("_train_part" in str(k) for k in keys) and worker in pids:
                victim = worker
                break
        time.sleep(0.05)
    assert victim is not None, "the fit never started: " + "".join(proc.communicate(timeout=60))
    os.kill(pids[victim], signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert "error:" in lines[0] and "LightGBM fit" in lines[0], lines[0]
    assert MlflowClient(uri, registry_uri=uri).search_model_versions("name='bidopt-ctr'") == []
    cluster.client.wait_for_workers(2, timeout=60)  # the nanny brings the killed worker back
