"""The real `bidopt` CLI against a real temp MLflow store (subprocesses)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.helpers.cli import bidopt_command

pytestmark = pytest.mark.integration

FAST = ["--set", "num_boost_round=150", "--set", "num_threads=1"]
WORSE = ["--set", "num_boost_round=1", "--set", "learning_rate=0.001"]


def bidopt(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*bidopt_command(), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _champion(uri: str, name: str) -> str:
    return str(
        MlflowClient(uri, registry_uri=uri).get_model_version_by_alias(name, "champion").version
    )


def test_synth_train_promote(tmp_path, store):
    uri, env = store
    logs = tmp_path / "logs.parquet"
    _ok(bidopt(["synth", "--rows", 40_000, "--seed", 5, "--out", logs], tmp_path, env))
    out = _ok(bidopt(["train", "ctr", "--logs", logs, *FAST], tmp_path, env))
    assert "registered bidopt-ctr version 1" in " ".join(out.split())
    assert "oracle_gap" in out
    out = _ok(bidopt(["train", "cvr", "--logs", logs, *FAST], tmp_path, env))
    assert "registered bidopt-cvr version 1" in " ".join(out.split())
    assert "promoted" in _ok(bidopt(["promote", "ctr"], tmp_path, env))
    assert "promoted" in _ok(bidopt(["promote", "cvr"], tmp_path, env))
    assert _champion(uri, "bidopt-ctr") == "1" and _champion(uri, "bidopt-cvr") == "1"

    _ok(bidopt(["train", "ctr", "--logs", logs, *WORSE], tmp_path, env))
    refused = bidopt(["promote", "ctr", "--max-ece-rel", "10"], tmp_path, env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "refused" in refused.stderr and "logloss" in refused.stderr
    assert "champion v1" in refused.stdout and "challenger v2" in refused.stdout
    assert "Traceback" not in refused.stderr
    assert _champion(uri, "bidopt-ctr") == "1"
    # the artifacts stay beside the store, not in the working directory
    assert not (tmp_path / "mlartifacts").exists() and not (tmp_path / "mlruns").exists()


def _one_line(stderr: str, needle: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], stderr


def test_bad_input_is_one_line_exit_2(tmp_path, store):
    """Through the installed script; the other cases run in-process below (same code)."""
    _, env = store
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b\n1,2\n")
    for args, needle in [
        (["train", "ctr", "--rows", 1000, "--set", "num_trees=5"], "unknown key 'num_trees'"),
        (["train", "ctr", "--logs", bad_csv], "missing required columns"),
    ]:
        proc = bidopt(args, tmp_path, env)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        _one_line(proc.stderr, needle)


def test_bad_input_in_process(tmp_path, mlflow_uri):
    from typer.testing import CliRunner

    from bidopt_cli import app

    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[lightgbm]\nnum_leaves = 'many'\n")
    cases = [
        (["train", "cvr", "--rows", 1000, "--set", "learning_rate=fast"], "learning_rate"),
        (["train", "cvr", "--rows", 1000, "--set", "cvr.delay=fsiw"], "cvr.delay must be one"),
        (["quickstart", "--days", 0], "--days must be positive"),
        (["train", "ctr", "--logs", tmp_path / "missing.parquet"], "no such file"),
        (["train", "ctr", "--config", tmp_path / "none.toml"], "cannot read"),
        (["train", "ctr", "--config", bad_toml], "lightgbm.num_leaves"),
        (["promote", "ctr"], "no challenger"),
        (["promote", "cvr", "--logs", tmp_path / "missing.csv"], "no such file"),
        (["quickstart", "--rows", 0], "positive"),
    ]
    runner = CliRunner()
    for args, needle in cases:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 2, (args, result.output)
        _one_line(result.stderr, needle)


def test_quickstart_store(trained_store):
    uri, workdir = trained_store
    client = MlflowClient(uri, registry_uri=uri)
    for name in ("bidopt-ctr", "bidopt-cvr"):
        champion = client.get_model_version_by_alias(name, "champion")
        challenger = client.get_model_version_by_alias(name, "challenger")
        assert champion.version == challenger.version
    out = " ".join((workdir / "quickstart.out").read_text().split())
    assert "oracle_gap" in out and "bidopt serve" in out and "mlflow ui --backend-store-uri" in out
    assert (workdir / "mlruns" / "artifacts" / "bidopt").is_dir()
    assert not (workdir / "mlartifacts").exists()
