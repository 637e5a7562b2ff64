"""Training against a real SQLite MLflow store: run contents, registration, pyfunc parity."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from features.bundle import BUNDLE_FILES
from tests.helpers.training import fast_config
from training import pipeline, tracking
from training.pyfunc_model import frame_from_records, request_examples
from training.splits import make_split


def test_connect_creates_store_folder(tmp_path: Path):
    uri = f"sqlite:///{tmp_path}/deep/mlruns/mlflow.db"
    previous = mlflow.get_tracking_uri()
    try:
        assert tracking.connect(uri) == uri
        assert (tmp_path / "deep" / "mlruns").is_dir()
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture
def trained_ctr(mlflow_uri, small_data, tmp_path):
    frame, fp = small_data
    outcome = pipeline.train(frame, fp, fast_config("ctr"), workdir=tmp_path)
    return outcome


def test_run_holds_params_metrics_fingerprint_plots(trained_ctr, mlflow_uri, tmp_path):
    v = trained_ctr.version
    assert (v.name, v.version) == ("bidopt-ctr", "1")
    client = MlflowClient(mlflow_uri)
    assert str(client.get_model_version_by_alias("bidopt-ctr", "challenger").version) == "1"
    run = client.get_run(v.run_id)
    metrics, params = run.data.metrics, run.data.params
    for name in ("auc", "logloss", "ne", "ece", "ece_rel", "calibration_ratio", "logloss_web",
                 "oracle_logloss", "oracle_auc", "oracle_gap"):  # fmt: skip
        assert name in metrics, name
    assert params["lightgbm.min_data_per_group"] == "500"
    assert params["calibration.chosen"] in ("isotonic", "platt", "identity")
    assert params["data.source"] == "synth" and params["data.kind"] == "synth"
    assert len(params["data.content_sha256"]) == 64
    assert int(params["data.split_rows_test"]) > 0
    assert params["data.event_time_min"] < params["data.event_time_max"]
    assert "version.lightgbm" in params and "git_commit" in params
    artifacts = {a.path for a in client.list_artifacts(v.run_id, "plots")}
    assert artifacts == {"plots/calibration_curve.png", "plots/feature_importance.png"}
    bundle_files = {Path(a.path).name for a in client.list_artifacts(v.run_id, "bundle")}
    assert bundle_files == set(BUNDLE_FILES)
    # artifacts live beside the store in tmp_path, not in ./mlartifacts
    location = client.get_experiment(run.info.experiment_id).artifact_location
    assert location.startswith(Path(tmp_path / "mlruns").resolve().as_uri())


def test_pyfunc_predictions_equal_bundle(trained_ctr, small_logs):
    split, _ = make_split(small_logs, "ctr")
    rows = split.test.head(300)
    model = mlflow.pyfunc.load_model("models:/bidopt-ctr@challenger")
    import pandas as pd

    served = np.asarray(model.predict(pd.DataFrame(request_examples(rows, 300))))
    local = trained_ctr.bundle.predict_frame(rows)
    np.testing.assert_allclose(served, local, rtol=0, atol=1e-12)
    # the bundle as downloaded from the registry is the same model
    loaded = tracking.load_bundle("models:/bidopt-ctr@challenger")
    np.testing.assert_allclose(loaded.predict_frame(rows), local, rtol=0, atol=1e-12)
    meta = loaded.meta
    assert meta["target"] == "ctr" and meta["name"] == "bidopt-ctr"
    assert "trained_at" in meta and meta["metrics"]["logloss"] > 0
    example = meta["input_example"]
    assert len(example) == 5 and isinstance(example[0]["event_time"], str)
    np.testing.assert_allclose(
        loaded.predict_frame(frame_from_records(example)),
        trained_ctr.bundle.predict_frame(rows.head(5)),
        rtol=0,
        atol=1e-12,
    )
