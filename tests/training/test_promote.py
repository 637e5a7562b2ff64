"""The promotion gate, pure and against a real registry."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tests.helpers.training import fast_config
from training import pipeline
from training.promote import PromoteError, gate, promote

WORSE = ("num_boost_round=1", "learning_rate=0.001")


def test_gate_rules():
    champ = {"logloss": 0.060, "ece_rel": 0.05}
    assert gate({"logloss": 0.059, "ece_rel": 0.05}, champ, 0.1)[0]
    assert gate({"logloss": 0.060, "ece_rel": 0.1}, champ, 0.1)[0]  # ties pass
    ok, reason = gate({"logloss": 0.061, "ece_rel": 0.01}, champ, 0.1)
    assert not ok and "logloss" in reason
    ok, reason = gate({"logloss": 0.050, "ece_rel": 0.2}, champ, 0.1)
    assert not ok and "ece_rel" in reason
    ok, reason = gate({"logloss": 0.050}, champ, 0.1)
    assert not ok and "undefined" in reason


def test_promote_without_challenger(mlflow_uri):
    with pytest.raises(PromoteError, match="no challenger"):
        promote("ctr")


def test_first_promoted_worse_refused_equal_promoted(mlflow_uri, small_data, tmp_path):
    frame, fp = small_data
    client = MlflowClient(mlflow_uri)

    def champion() -> str:
        return str(client.get_model_version_by_alias("bidopt-ctr", "champion").version)

    pipeline.train(frame, fp, fast_config("ctr"), workdir=tmp_path)
    first = promote("ctr")
    assert first.promoted and first.reason.startswith("first version") and champion() == "1"

    pipeline.train(frame, fp, fast_config("ctr", *WORSE), workdir=tmp_path)
    # no frame given: the data are re-created from the source recorded in the challenger's run
    refused = promote("ctr", max_ece_rel=10.0)
    assert not refused.promoted and "logloss" in refused.reason
    assert refused.challenger["logloss"] > refused.champion["logloss"]
    assert refused.notes == []  # re-created data hash equal to the run's
    assert champion() == "1"

    pipeline.train(frame, fp, fast_config("ctr"), workdir=tmp_path)  # same as v1: equal logloss
    strict = promote("ctr", max_ece_rel=0.0, frame=frame)
    assert not strict.promoted and "ece_rel" in strict.reason
    accepted = promote("ctr", max_ece_rel=10.0, frame=frame)
    assert accepted.promoted, accepted.reason
    assert accepted.challenger["logloss"] == pytest.approx(accepted.champion["logloss"], abs=1e-12)
    assert champion() == "3"
    again = promote("ctr", frame=frame)
    assert not again.promoted and "already the champion" in again.reason
