"""`bidopt score` through the real CLI on a partitioned log, against the service's predictor."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from features.ingest import load_logs
from features.synth_parts import write_dataset
from tests.helpers.cli import bidopt_command, clean_env


@pytest.mark.integration
def test_score_writes_the_services_probabilities_for_every_row(
    tmp_path: Path, trained_store: tuple[str, Path]
) -> None:
    from serving.models.predictor import LoadedModel, Predictor
    from serving.models.registry import ModelRef
    from training import tracking
    from training.records import request_examples

    uri, workdir = trained_store
    logs = tmp_path / "logs"
    write_dataset(logs, 4000, seed=21, days=3, part_rows=1500)
    bad = next(logs.glob("date=*/part-00001.parquet"))
    frame = pl.read_parquet(bad)
    frame.with_columns(bid_price=pl.when(pl.int_range(pl.len()) == 3).then(-1.0).otherwise(
        "bid_price"
    )).write_parquet(bad)  # fmt: skip
    out = tmp_path / "scored"
    cmd = [*bidopt_command(), "score", "--logs", str(logs), "--out", str(out),
           "--cvr-model", "models:/bidopt-cvr@champion"]  # fmt: skip
    env = clean_env(BIDOPT_TRACKING_URI=uri)
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "scored 3,999 rows (1 quarantined)" in proc.stdout
    scored = pl.read_parquet(sorted(out.glob("part-*.parquet")))
    assert scored.columns == ["request_id", "impression_id", "pctr", "pcvr"]
    files = sorted(logs.glob("date=*/*.parquet"))
    rows = pl.concat([load_logs(f, quarantine_path=tmp_path / "q").frame for f in files])
    assert scored.height == rows.height == 3999
    assert scored["request_id"].to_list() == rows["request_id"].to_list()  # log order, every row

    tracking.connect(uri)
    pair = []
    for target in ("ctr", "cvr"):
        name = tracking.MODEL_NAMES[target]
        bundle = tracking.load_bundle(f"models:/{name}@champion")
        pair.append(LoadedModel.build(ModelRef(name, "champion", "1", None), bundle))
    predictor = Predictor.build(*pair)
    sample = rows.gather(np.linspace(0, rows.height - 1, 60).astype(int))
    wanted = scored.filter(pl.col("request_id").is_in(sample["request_id"].implode()))
    reqs = request_examples(sample, sample.height)  # as a JSON body gives them, parsed:
    reqs = [r | {"event_time": datetime.fromisoformat(r["event_time"])} for r in reqs]
    one = [predictor.encode(r) for r in reqs]  # the single-request path of /v1/predict
    pctr, pcvr = predictor.score_rows([a for a, _ in one], [b for _, b in one])
    np.testing.assert_allclose(wanted["pctr"].to_numpy(), pctr, rtol=1e-12, atol=0)
    np.testing.assert_allclose(wanted["pcvr"].to_numpy(), pcvr, rtol=1e-12, atol=0)
    assert len(set(np.round(pctr, 6))) > 10  # the rows differ: a constant would prove nothing

    from typer.testing import CliRunner

    from bidopt_cli import app

    again = CliRunner().invoke(app, [str(a) for a in cmd[len(bidopt_command()) :]])
    assert again.exit_code == 2 and "give a new or empty folder" in again.output  # before models
